"""tools/depth_encoder_study.py (issue 17) on a few tiny rendered scenes: trains a variant,
writes its JSON (resumable: a second call skips it), fits a time budget, runs the test-time
solver sweep, and generates the markdown tables from the JSON."""
import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tool():
    spec = importlib.util.spec_from_file_location(
        "depth_encoder_study_tool", os.path.join(ROOT, "tools", "depth_encoder_study.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_every_variant_names_a_config_and_builds_its_overrides():
    from odedet.config_check import load_config

    tool = _tool()
    for name, (config, overrides, factor, label) in tool.VARIANTS.items():
        cfg = load_config(os.path.join(ROOT, config), list(overrides))
        assert cfg.MODEL.META_ARCHITECTURE == "DepthEstimator" and factor and label, name


def test_study_trains_writes_json_skips_done_runs_and_tabulates(tmp_path, tiny_scenes,
                                                                one_torch_thread, capsys):
    tool = _tool()
    tool.SWEEP = tool.SWEEP[:1]  # euler step 1
    train, val = tiny_scenes
    results = tmp_path / "results"
    common = ["--iters", "3", "--seed", "3", "--results-dir", str(results),
              "--output-dir", str(tmp_path / "out"),
              "SOLVER.WARMUP_ITERS", "1", "SOLVER.IMS_PER_BATCH", "2",
              "DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{val}',)"]
    tool.main(["--variants", "ode_vgg16,vgg16", "--sweep", *common[:8], *common[8:]])
    runs = {p.name: json.loads(p.read_text()) for p in results.iterdir()}
    assert set(runs) == {"ode_vgg16__it3__s3.json", "vgg16__it3__s3.json"}
    ode = runs["ode_vgg16__it3__s3.json"]
    assert ode["iters"] == 3 and ode["seed"] == 3 and 0 < ode["metrics"]["AbsRel"] < 10
    assert ode["nfe_per_image"] == 10  # 5 ODE levels x midpoint (2 f-evals), one step
    assert ode["params"] <= runs["vgg16__it3__s3.json"]["params"]
    assert [s["solver"] for s in ode["solver_sweep"]] == ["config", "euler step 1"]
    assert ode["solver_sweep"][1]["nfe_per_image"] == 5
    assert "solver_sweep" not in runs["vgg16__it3__s3.json"]  # no ODE blocks, no sweep
    assert ode["machine_start"]["cpu"] and "load_avg" in ode["machine_end"]

    # The sweep of the saved checkpoint alone, on the first 2 held-out scenes.
    tool.main(["--variants", "ode_vgg16", "--sweep-checkpoint", "--max-images", "2", *common])
    swept = json.loads((results / "sweep_ode_vgg16__it3__s3__n2.json").read_text())
    assert swept["kind"] == "sweep" and swept["images"] == 2
    assert [s["solver"] for s in swept["solver_sweep"]] == ["config", "euler step 1"]
    assert swept["solver_sweep"][0]["nfe_per_image"] == 10

    capsys.readouterr()
    tool.main(["--variants", "vgg16", *common])  # done already: skipped
    assert "skip vgg16" in capsys.readouterr().out

    # A budget far below the schedule's need stops early with the cosine schedule refitted.
    tool.main(["--variants", "ode_resnet18", "--budget-min", "0.0001",
               *[c if c != "3" else "50" for c in common[:2]], *common[2:]])
    budgeted = json.loads((results / "ode_resnet18__it50__b0.0001min__s3.json").read_text())
    assert budgeted["recipe_iters"] == 50 and budgeted["iters"] < 50

    capsys.readouterr()
    tool.main(["--table", "--results-dir", str(results)])
    table = capsys.readouterr().out
    assert "3-iteration schedule" in table and "0.0001-minute training budget" in table
    assert "Test-time solver sweep: `ode_vgg16`" in table
    assert table.count("| ODE-VGG-16") == 1  # the checkpoint sweep is not a run row
    assert "checkpoint, first 2 held-out scenes" in table


def test_write_doc_replaces_only_the_generated_block(tmp_path):
    tool = _tool()
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Title\nintro\n{tool.BEGIN}\nold\n{tool.END}\noutro\n")
    tool.write_doc(str(doc), "| new |")
    text = doc.read_text()
    assert text.startswith("# Title\nintro\n") and text.endswith(f"{tool.END}\noutro\n")
    assert "| new |" in text and "old" not in text


def test_paired_runs_start_together_on_separate_cores_and_are_tabulated(
        tmp_path, tiny_scenes, one_torch_thread, monkeypatch, capsys):
    """--paired starts one child per variant at once, each pinned to its own core with one
    thread and told its partner; the children's JSONs record it and paired_table compares
    them seed by seed. (The children run in this process here: the tiny datasets are registered
    only in it.)"""
    from odedet.benchmarks.depth_encoder import load_runs, paired_table

    tool = _tool()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    started = []

    class _Child:
        def __init__(self, cmd, env, core):
            started.append((cmd, env, core))
            self.cmd, self.pid = cmd, 1000 + len(started)

        def wait(self):  # run the child's command line in this process
            assert self.cmd[1] == os.path.abspath(tool.__file__)
            return tool.main(self.cmd[2:]) or 0

    monkeypatch.setattr(tool, "start_child", _Child)
    train, val = tiny_scenes
    results = tmp_path / "paired"
    argv = ["--paired", "--variants", "vgg16,ode_vgg16", "--iters", "2", "--results-dir",
            str(results), "--output-dir", str(tmp_path / "out"), "SOLVER.WARMUP_ITERS", "1",
            "SOLVER.IMS_PER_BATCH", "2", "DATASETS.TRAIN", f"('{train}',)",
            "DATASETS.TEST", f"('{val}',)"]
    for seed in ("3", "4"):
        started.clear()
        assert tool.main(["--seed", seed, *argv]) == 0
        assert len(started) == 2  # both started before either was waited for
        assert {c[c.index("--variants") + 1] for c, _, _ in started} == {"vgg16", "ode_vgg16"}
        assert all(e["OMP_NUM_THREADS"] == "1" for _, e, _ in started)
        assert [core for _, _, core in started] == [0, 1]
    runs = {(r["variant"], r["seed"]): r for r in load_runs(str(results))}
    assert set(runs) == {(v, s) for v in ("vgg16", "ode_vgg16") for s in (3, 4)}
    assert runs[("vgg16", 3)]["paired_with"] == "ode_vgg16"
    assert runs[("ode_vgg16", 4)]["paired_with"] == "vgg16"

    capsys.readouterr()
    assert tool.main(["--seed", "3", *argv]) == 0  # both done: nothing started
    assert "skip vgg16" in capsys.readouterr().out

    table = paired_table(list(runs.values()))
    assert "Paired: `ode_vgg16` vs `vgg16`" in table  # the reference (no ODE blocks) first
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in lines[1:]] == ["| 3", "| 4", "| mean"]
    a = [runs[("vgg16", s)]["metrics"]["AbsRel"] for s in (3, 4)]
    assert f"| mean | {sum(a) / 2:.4f} |" in table
    assert paired_table([runs[("vgg16", 3)]]) == ""  # no partner: no table
    assert sorted(p.name for p in results.iterdir())[:2] == [
        "ode_vgg16__it2__s3__vs_vgg16.json", "ode_vgg16__it2__s4__vs_vgg16.json"]
    # a run whose partner was paired with a third variant is not a pair
    other = dict(runs[("ode_vgg16", 3)], variant="ode_x", paired_with="vgg16")
    assert "ode_x" not in paired_table([runs[("vgg16", 3)], other])


def test_start_child_pins_the_child_to_its_core(tmp_path):
    import sys

    tool = _tool()
    core = max(os.sched_getaffinity(0))
    out = tmp_path / "affinity.txt"
    child = tool.start_child([sys.executable, "-c", "import os, sys; open(sys.argv[1], 'w')"
                              ".write(str(sorted(os.sched_getaffinity(0))))", str(out)],
                             dict(os.environ), core)
    assert child.wait() == 0
    assert out.read_text() == f"[{core}]"

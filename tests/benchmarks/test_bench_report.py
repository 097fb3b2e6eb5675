"""tools/report.py: a study's results are published as a small committed JSON, and the report,
its figures and a README's generated block regenerate from those files alone (any clone)."""
import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tool(monkeypatch, root):
    spec = importlib.util.spec_from_file_location("report_tool", os.path.join(ROOT, "tools/report.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(tool, "ROOT", str(root))
    return tool


def test_report_publishes_a_study_and_regenerates_from_committed_results(tmp_path, monkeypatch):
    tool = _tool(monkeypatch, tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Results\n<!-- results:start -->\nold\n<!-- results:end -->\nkeep\n")
    (tmp_path / "docs").mkdir()
    bench = tmp_path / "docs/benchmarks.md"
    bench.write_text("# B\n<!-- results:start -->\n<!-- results:end -->\n")
    out = tmp_path / "report"
    assert tool.main(["--out", str(out), "--quick", "--run", "overhead", "--publish",
                      "--update-readme"]) == 0
    committed = json.loads((tmp_path / "docs/results/overhead.json").read_text())
    assert committed["study"] == "overhead" and "cpu" in committed["environment"]
    assert "tools/benchmark.py overhead" in committed["command"]
    assert "load average" in committed["environment"]
    report = (out / "REPORT.md").read_text()
    assert "## Targets" in report and "Solver overhead (fixed grid)" in report
    assert "not measured (tools/benchmark.py memory)" in report  # absent studies say so
    assert "Reproduce: `" in report
    text = readme.read_text()  # the front page: targets and a pointer to the full results
    assert "old" not in text and text.endswith("<!-- results:end -->\nkeep\n")
    assert "| ODE block direct / unrolled stack time |" in text and "docs/benchmarks.md" in text
    full = bench.read_text()
    assert "### Solver overhead" in full and "](figures/overhead.png)" in full
    assert "](output" not in text + full  # nothing links into output/
    png = tmp_path / "docs/figures/overhead.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size < 200_000

    # A fresh clone: no output folder, only the committed files; nothing is run.
    import shutil

    shutil.rmtree(out)
    png.unlink()
    bench.write_text("<!-- results:start -->\n<!-- results:end -->\n")
    assert tool.main(["--out", str(out), "--update-readme"]) == 0
    assert png.is_file() and "### Solver overhead" in bench.read_text()
    assert not (out / "benchmarks").exists()


def test_unpublished_runs_leave_the_committed_files_alone(tmp_path, monkeypatch):
    tool = _tool(monkeypatch, tmp_path)
    out = tmp_path / "report"
    assert tool.main(["--out", str(out), "--quick", "--run", "overhead"]) == 0
    assert not (tmp_path / "docs").exists()  # nothing published
    assert (out / "figures/overhead.png").is_file()
    assert "](figures/overhead.png)" in (out / "REPORT.md").read_text()


def test_report_renders_the_depth_encoder_study_from_its_run_files(tmp_path):
    # Issue 17's study commits one JSON per run under docs/results/depth_encoder/.
    from odedet.benchmarks import report

    src = os.path.join(ROOT, "docs", "results", "depth_encoder")
    runs = sorted(f for f in os.listdir(src) if f.endswith(".json"))
    assert runs, "the committed depth-encoder runs"
    (tmp_path / "depth_encoder").mkdir()
    for f in runs[:2]:
        (tmp_path / "depth_encoder" / f).write_text(open(os.path.join(src, f)).read())
    docs = report.load_results(str(tmp_path))
    assert len(docs["depth_encoder"]["runs"]) == 2
    text = report.render(docs, "figures/")
    assert "## Depth encoder study (issue 17)" in text and "| AbsRel |" in text.replace(
        " AbsRel | delta1", " AbsRel |")
    assert "depth_encoder" not in report.load_results(str(tmp_path / "nothing"))
    assert "Paired runs" not in text

    # --paired runs (docs/results/depth_encoder/paired/) come first, as the target's figures.
    paired = tmp_path / "depth_encoder" / "paired"
    paired.mkdir()
    for v, other, absrel in (("vgg16", "ode_x", 0.12), ("ode_x", "vgg16", 0.11)):
        row = dict(json.loads(open(os.path.join(src, runs[0])).read()), variant=v,
                   paired_with=other, seed=7, nfe_per_image=0 if v == "vgg16" else 5)
        row["metrics"] = dict(row["metrics"], AbsRel=absrel)
        (paired / f"{v}.json").write_text(json.dumps(row))
    text = report.render(report.load_results(str(tmp_path)), "figures/")
    assert text.index("Paired: `ode_x` vs `vgg16`") < text.index("| variant | factor |")
    assert "| 7 | 0.1200 | 0.1100 |" in text


def test_report_shows_the_detector_memory_study_from_its_folder(tmp_path):
    # Issue 12's study keeps points, document and plots in docs/results/detector_memory/: the
    # report reads its targets from the summary and copies its plots into docs/figures.
    from odedet.benchmarks import report
    from odedet.benchmarks.output import table, write_outputs

    folder = tmp_path / "results" / "detector_memory"
    folder.mkdir(parents=True)
    (folder / "detector_memory_curve.png").write_bytes(b"\x89PNG fake")
    rows = [dict(model="ODE-R50-FPN-lean", batch=2, peak_mb=2000.0),
            dict(model="R-101-FPN", batch=2, peak_mb=7000.0)]
    write_outputs(str(folder), "detector_memory", title="Whole-detector training-step memory",
                  tables=[table("Training step", rows)], plots=["detector_memory_curve.png"],
                  extra={"ODE-R50-FPN-lean / R-101-FPN peak": 2000 / 7000,
                         "ODE-R50-FPN-lean / R-50-FPN peak": 0.6,
                         "ODE-R50-FPN-lean peak max/min over steps 1..16": 1.05},
                  env={"cpu": "test cpu", "measured at": "now"})
    docs = report.load_results(str(tmp_path / "results"))
    figs = tmp_path / "figures"
    assert report.draw_figures(docs, str(figs))["detector_memory"] == ["detector_memory_curve.png"]
    assert (figs / "detector_memory_curve.png").read_bytes() == b"\x89PNG fake"
    targets = report.targets_section(docs)
    lines = {line.split(" | ")[0].strip("| "): line for line in targets.splitlines()}
    assert "| 0.286 | met" in lines["lean ODE-R50-FPN / R-101-FPN peak, 2 x 800x1333"]
    assert "| 0.600 | NOT met" in lines["lean ODE-R50-FPN / R-50-FPN peak, 2 x 800x1333"]
    assert "| 1.050 | met" in lines["lean ODE-R50-FPN peak max/min over 1..16 ODE steps"]
    assert "not measured (tools/benchmark.py detector-memory)" in lines[
        "largest batch under 8 GiB, lean ODE-R50-FPN / R-101-FPN"]
    text = report.render(docs, "figures/")
    assert "## Whole-detector training-step memory" in text
    assert "](figures/detector_memory_curve.png)" in text
    assert "](figures/detector_memory_curve.png)" in report.render_headline(docs, "figures/")


def test_report_and_readme_block_show_the_detection_study_table(tmp_path):
    # Issue 13's study writes one JSON per finished run under docs/results/study/: the report
    # and the README's headline block render its per-model table and name the pending runs.
    from odedet.benchmarks import report
    from odedet.benchmarks.study import RUNS, write_run

    folder = tmp_path / "results" / "study"
    base = dict(max_iter=2000, AP=41.5, AP50=70.25, AP75=40.0, APs=20.0, APm=50.0,
                precision=0.8, recall=0.7, F1=0.75, params_m=28.2, bottom_up_params_m=23.5,
                gflops=2.7, train_s=3600.0, s_per_iter=1.8, latency_ms=90.0,
                train_peak_mb=900.0, nfe_per_image=0, per_class=[], environment={"cpu": "test cpu"})
    by_key = {s.key: s for s in RUNS}
    for key, ap in (("r101_fpn_s7", 40.0), ("r101_fpn_s8", 44.0)):
        spec = by_key[key]
        write_run(str(folder), dict(base, key=key, model=spec.model, seed=spec.seed, AP=ap))
    docs = report.load_results(str(tmp_path / "results"))
    assert len(docs["study"]["records"]) == 2
    text = report.render(docs, "figures/")
    assert "## ResNet vs ODE-Net Faster R-CNN study (issue 13)" in text
    row = next(line for line in text.splitlines() if line.startswith("| R-101-FPN"))
    assert "42.0 (40.0-44.0)" in row  # two seeds: mean (min-max)
    assert f"Finished runs: 2/{len(RUNS)}; pending: " in text and "r50_fpn" in text
    assert "ResNet vs ODE-Net Faster R-CNN study" in report.render_headline(docs, "figures/")
    assert "study" not in report.load_results(str(tmp_path / "nothing"))
    # its plot: drawn from the run files into the figures folder, linked from both blocks
    assert report.draw_figures(docs, str(tmp_path / "figures"))["study"] == ["study_ap.png"]
    assert (tmp_path / "figures" / "study_ap.png").read_bytes()[:4] == b"\x89PNG"
    assert "](figures/study_ap.png)" in report.render_headline(docs, "figures/")
    assert "](figures/study_ap.png)" in report.render(docs, "figures/")


def test_published_commands_are_portable():
    # A committed result names the command that reproduces it as a reader on another clone
    # types it: no absolute path of the machine that measured it.
    import sys

    from odedet.benchmarks.report import _portable_command

    cmd = f"{sys.executable} tools/benchmark.py memory --out {ROOT}/output/report/benchmarks/memory"
    assert _portable_command(cmd) == (
        "python tools/benchmark.py memory --out output/report/benchmarks/memory")
    assert _portable_command(None) is None

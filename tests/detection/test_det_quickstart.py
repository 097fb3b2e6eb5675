"""tools/quickstart.py end to end in smoke-test mode: tiny dataset, 2 iterations of the ODE
model and the baseline, evaluation through Trainer.test, visualisations, summary."""
import importlib.util
import json
import math
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _quickstart():
    path = os.path.join(ROOT, "tools", "quickstart.py")
    spec = importlib.util.spec_from_file_location("quickstart", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quickstart_quick_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # main() changes to the repository; restored afterwards
    out = tmp_path / "qs"
    rows = _quickstart().main([
        "--quick", "--baseline", "--max-iter", "2", "--num-vis", "2", "--output-dir", str(out),
        "SOLVER.IMS_PER_BATCH", "2", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
        "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",  # 4x cheaper than 128 px
    ])
    assert list(rows) == ["ODE-ResNet-18-FPN", "ResNet-18-FPN (baseline)"]
    ode, base = rows["ODE-ResNet-18-FPN"], rows["ResNet-18-FPN (baseline)"]
    # solver sampling, one draw per iteration: Euler (1 evaluation of f per ODE block) or
    # midpoint (2), 4 ODE stages, averaged over the 2 iterations
    assert ode["nfe_forward_per_iter"] in (4, 6, 8) and base["nfe_forward_per_iter"] == 0
    for r in rows.values():
        assert r["iters"] == 2 and r["train_s"] > 0 and r["params"] > 1e6
        assert 0 <= r["P"] <= 100 and 0 <= r["R"] <= 100
        assert math.isnan(r["AP"]) or 0 <= r["AP"] <= 100
        assert os.path.isfile(os.path.join(r["output_dir"], "model_final.pth"))
        assert os.path.isfile(os.path.join(r["output_dir"], "metrics.json"))
        assert len([f for f in os.listdir(r["vis_dir"]) if f.endswith(".png")]) == 2
    with open(out / "quickstart_results.json") as f:
        saved = json.load(f)
    assert {k for k in saved if not k.startswith("_")} == set(rows)
    assert "cpu" in saved["_environment"] and "quickstart.py" in saved["_command"]
    printed = capsys.readouterr().out
    assert "ODE-ResNet-18-FPN" in printed and "visualised detections in" in printed
    assert (out / "datasets" / "odedet_shapes" / "generation.json").is_file()


def test_summary_keeps_other_runs_models_and_writes_strict_json(tmp_path):
    """Two quickstarts sharing --output-dir (one model each, e.g. one per core) both keep their
    row; undefined metrics are null, not NaN; a corrupt summary is an error naming the file."""
    qs = _quickstart()
    path = str(tmp_path / "quickstart_results.json")
    qs.write_summary(path, {"A": {"AP": 1.0, "APl": float("nan")}},
                     {"_environment": "e1", "_command": "python tools/quickstart.py --a"})
    qs.write_summary(path, {"B": {"AP": 2.0}},
                     {"_environment": "e2", "_command": "python tools/quickstart.py --b"})
    with open(path) as f:
        text = f.read()
    assert "NaN" not in text
    saved = json.loads(text)
    assert saved["A"] == {"AP": 1.0, "APl": None, "command": "python tools/quickstart.py --a"}
    assert saved["B"]["command"].endswith("--b") and saved["_environment"] == "e2"
    qs.write_summary(path, {"A": {"AP": 3.0}}, {"_environment": "e3", "_command": "c"})
    assert json.load(open(path))["A"]["AP"] == 3.0  # a rerun replaces its own row only
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(SystemExit, match="quickstart_results.json"):
        qs.write_summary(path, {"C": {}}, {"_environment": "", "_command": ""})


@pytest.mark.slow
def test_quickstart_dial_trains_three_models_then_measures_and_reuses_them(tmp_path, monkeypatch):
    """--dial: ODE + ResNet-18 + shallow ResNet, then tools/benchmark.py dial on their
    checkpoints; a second call reuses the finished runs instead of retraining them."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "qs"
    argv = ["--quick", "--dial", "--max-iter", "1", "--num-vis", "0", "--output-dir", str(out),
            "SOLVER.IMS_PER_BATCH", "2", "INPUT.MIN_SIZE_TRAIN", "(64,)",
            "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64"]
    rows = _quickstart().main(argv)
    assert list(rows) == ["ODE-ResNet-18-FPN", "ResNet-18-FPN (baseline)", "ResNet-shallow-FPN"]
    with open(out / "dial" / "dial.json") as f:
        dial = json.load(f)
    models = {r["model"] for r in dial["tables"][0]["rows"]}
    assert models == {"ODE", "ResNet-18-FPN", "ResNet-shallow-FPN"}
    assert (out / "dial" / "dial_ap.png").is_file()
    stamps = {n: os.path.getmtime(os.path.join(r["output_dir"], "model_final.pth"))
              for n, r in rows.items()}
    again = _quickstart().main(argv)
    assert {n: os.path.getmtime(os.path.join(r["output_dir"], "model_final.pth"))
            for n, r in again.items()} == stamps  # nothing retrained
    assert again["ResNet-shallow-FPN"]["params"] == rows["ResNet-shallow-FPN"]["params"]

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
    # midpoint, one step: 2 evaluations of f per ODE block, 4 ODE stages
    assert ode["nfe_forward_per_iter"] == 8 and base["nfe_forward_per_iter"] == 0
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

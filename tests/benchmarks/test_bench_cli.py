"""Each tools/benchmark.py subcommand runs on tiny settings and writes JSON, markdown and PNG."""
import importlib.util
import json
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK_ODE = os.path.join(ROOT, "configs/quickstart/ode_faster_rcnn_R_18_FPN_shapes.yaml")


def _tool():
    spec = importlib.util.spec_from_file_location("bench_tool", os.path.join(ROOT, "tools/benchmark.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(argv, out, name):
    threads = torch.get_num_threads()
    try:
        flags = ["--out", str(out), "--threads", "1"]  # before any trailing KEY VALUE overrides
        assert _tool().main(argv[:1] + flags + argv[1:]) == 0
    finally:
        torch.set_num_threads(threads)
    doc = json.load(open(out / f"{name}.json"))
    assert os.path.getsize(out / f"{name}.md") > 100
    for png in doc["plots"]:
        assert open(out / png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert doc["environment"]["torch threads"] == "1" and doc["environment"]["torchdiffeq"]
    return doc


def test_overhead_quick_ratios_and_equal_evaluations(tmp_path):
    doc = _run(["overhead", "--quick", "--methods", "euler", "rk4"], tmp_path, "overhead")
    rows = doc["tables"][0]["rows"]
    assert {r["variant"] for r in rows} >= {"unrolled", "ode-direct", "ode-adjoint"}
    assert len(rows) == 10 and all(r["ratio_vs_unrolled"] > 0 for r in rows)
    assert any("ode-adjoint / unrolled (rk4, K=2)" in k for k in doc["summary"])


def test_memory_one_point_writes_outputs(tmp_path):
    doc = _run(["memory", "--variants", "ode-adjoint", "--depths", "2", "--models", "--batch", "2",
                "--channels", "8", "--size", "8"], tmp_path, "memory")
    (row,) = doc["tables"][0]["rows"]
    assert row["variant"] == "ode-adjoint" and row["depth"] == 2 and row["peak_mb"] > 0


@pytest.mark.slow
def test_models_quick_on_the_quickstart_ode_detector(tmp_path):
    doc = _run(["models", "--quick", "--size", "64", "--models", "ODE-Q",
                "--model-config", f"ODE-Q={QUICK_ODE}"], tmp_path, "models")
    (row,) = doc["tables"][0]["rows"]
    assert row["params_m"] > row["backbone_params_m"] > 1
    assert row["model_gflops"] > row["backbone_gflops"] > 0 and row["infer_ms"] > 0 and row["train_step_ms"] > 0
    # 4 ODE stages x one midpoint step (2 evaluations); training backprops directly (no adjoint)
    assert row["nfe_infer"] == 8 and (row["nfe_train_fwd"], row["nfe_train_bwd"]) == (8, 0)


def test_tolerance_sweep_on_a_checkpoint(tmp_path):
    from detectron2.modeling import build_model

    from odedet import get_odedet_cfg
    from odedet.data.synthetic_shapes import ShapesParams, register_synthetic_shapes

    params = ShapesParams(num_train=1, num_val=2, image_size=64, min_size=12, max_size=30)
    names = register_synthetic_shapes(str(tmp_path / "data"), params, "benchtol_shapes")
    cfg = get_odedet_cfg()
    cfg.merge_from_file(QUICK_ODE)
    cfg.MODEL.DEVICE = "cpu"
    weights = tmp_path / "model.pth"
    model = build_model(cfg)
    with torch.no_grad():  # zero-initialised dynamics are f = 0: any tolerance then costs the same
        for name, p in model.named_parameters():
            if ".dynamics." in name and not p.any():
                p.normal_(0.0, 1.0)
    torch.save({"model": model.state_dict()}, weights)
    opts = ["DATASETS.TEST", f"('{names[1]}',)", "INPUT.MIN_SIZE_TEST", "64",
            "INPUT.MAX_SIZE_TEST", "64"]
    doc = _run(["tolerance", "--config-file", QUICK_ODE, "--weights", str(weights),
                "--tolerances", "1e-3", "1e-1", "--max-images", "2", *opts], tmp_path / "out",
               "tolerance")
    rows = doc["tables"][0]["rows"]
    assert rows[0]["solver"].startswith("trained: midpoint") and rows[0]["nfe_per_image"] == 8
    tight, loose = rows[1], rows[2]
    assert tight["nfe_per_image"] > loose["nfe_per_image"] > 0  # the knob changes the work done
    assert all("AP50" in r and "F1" in r and r["ms_per_image"] > 0 for r in rows)
    assert "reference AP50" in doc["summary"]

"""``benchmark.py dial --quick``: an (untrained) ODE detector over a solver ladder next to a
ResNet, on a tiny dataset; checks the table, targets block, plots and strict loading. No timing
is asserted (latency is measured, never compared)."""
import json
import os

import pytest
import torch

from odedet.benchmarks.dial import parse_setting, summarize

from test_bench_cli import ROOT, _run  # noqa: E402  (tests/benchmarks is on sys.path)

QUICK = os.path.join(ROOT, "configs/quickstart")
ODE = os.path.join(QUICK, "ode_faster_rcnn_R_18_FPN_shapes.yaml")
SHALLOW = os.path.join(QUICK, "faster_rcnn_R_shallow_FPN_shapes.yaml")


def _save_untrained(config, path, **changes):
    from odedet import get_odedet_cfg
    from odedet.engine.trainer import Trainer

    cfg = get_odedet_cfg()
    cfg.merge_from_file(config)
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    state = model.state_dict()
    for key, value in changes.items():
        state[key] = value
    torch.save({"model": state}, path)
    return path


def test_parse_setting():
    assert parse_setting("euler:1") == dict(method="euler", step_size=1.0)
    assert parse_setting("rk4:2", t_end=1.0) == dict(method="rk4", step_size=0.5)
    assert parse_setting("dopri5:1e-2") == dict(method="dopri5", rtol=1e-2, atol=1e-2, step_size=0.0)
    with pytest.raises(ValueError, match="METHOD:STEPS"):
        parse_setting("rk4")


def test_summarize_targets_and_nearest_resnet():
    rows = [dict(model="ODE", solver="euler:1", AP=70.0, AP50=94.0, nfe_per_image=4, latency_ms=10.0),
            dict(model="ODE", solver="rk4:2", AP=71.0, AP50=94.5, nfe_per_image=32, latency_ms=30.0),
            dict(model="ResNet-18-FPN", solver="-", AP=69.0, AP50=93.0, nfe_per_image=0, latency_ms=11.0),
            dict(model="ResNet-shallow-FPN", solver="-", AP=60.0, AP50=90.0, nfe_per_image=0, latency_ms=8.0)]
    s = summarize(rows)
    assert s["cheapest setting"] == "euler:1" and s["best setting (highest AP)"] == "rk4:2"
    assert s["f-evals best / cheapest (target >= 2)"] == 8.0
    assert s["AP loss cheapest vs best (target <= 2)"] == 1.0
    assert s["cheapest latency / ResNet-18 latency (target <= 1)"] == pytest.approx(10 / 11)
    assert rows[0]["nearest ResNet"] == "ResNet-18-FPN" and rows[1]["nearest ResNet"] == "ResNet-18-FPN"
    assert s["min over dial of AP - nearest-latency ResNet AP (target >= 0)"] == 1.0


@pytest.mark.slow
def test_dial_quick_writes_table_plots_and_loads_strictly(tmp_path, one_torch_thread):
    ode_w = _save_untrained(ODE, tmp_path / "ode.pth")
    shallow_w = _save_untrained(SHALLOW, tmp_path / "shallow.pth")
    out = tmp_path / "out"
    doc = _run(["dial", "--quick", "--config-file", ODE, "--weights", str(ode_w),
                "--baseline", "ResNet-shallow-FPN", SHALLOW, str(shallow_w)], out, "dial")
    rows = doc["tables"][0]["rows"]
    assert [(r["model"], r["solver"]) for r in rows] == [
        ("ODE", "euler:1"), ("ODE", "rk4:1"), ("ODE", "dopri5:1e-1"), ("ResNet-shallow-FPN", "-")]
    # 4 ODE stages: Euler 1 step = 1 f-eval each, RK4 1 step = 4 each; the ResNet has none
    assert rows[0]["nfe_per_image"] == 4 and rows[1]["nfe_per_image"] == 16
    assert rows[3]["nfe_per_image"] == 0
    assert all(r["latency_ms"] > 0 and r["AP"] is not None and "F1" in r for r in rows)
    assert len(doc["plots"]) == 2 and doc["summary"]["cheapest setting"] == "euler:1"
    assert "nearest ResNet" in rows[0]


def test_dial_refuses_weights_with_missing_keys(tmp_path):
    from odedet.engine.checkpoint import CheckpointMismatchError

    # ResNet weights are the ODE model's minus its ODE blocks: loading them into the ODE model
    # must fail (strict), not leave the ODE blocks at random init.
    shallow_w = _save_untrained(SHALLOW, tmp_path / "shallow.pth")
    with pytest.raises(CheckpointMismatchError):
        _run(["dial", "--quick", "--config-file", ODE, "--weights", str(shallow_w)],
             tmp_path / "out", "dial")

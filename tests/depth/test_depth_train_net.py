"""tools/train_net.py trains and evaluates a depth model from a configs/Depth config alone (the
meta-architecture, mapper and evaluator come from the config and the dataset's metadata), and
--eval-only takes a test-time ODE solver override."""
import importlib.util
import json
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.timeout(600)


def _train_net():
    spec = importlib.util.spec_from_file_location(
        "depth_train_net_tool", os.path.join(ROOT, "tools", "train_net.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_train_net_trains_and_evaluates_the_ode_depth_config(tmp_path, tiny_scenes,
                                                               one_torch_thread):
    train, val = tiny_scenes
    tool, out = _train_net(), str(tmp_path / "out")
    config = ["--config-file", os.path.join(ROOT, "configs/Depth/ode_resnet18_scenes.yaml")]
    common = ["DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{val}',)",
              "OUTPUT_DIR", out, "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0"]
    tool.cli([*config, *common, "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1",
              "TEST.EVAL_PERIOD", "2"])
    ckpt = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert ckpt["iteration"] == 1 and any(k.startswith("depth_head.") for k in ckpt["model"])
    with open(os.path.join(out, "metrics.json")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    last = [r for r in rows if "total_loss" in r][-1]  # the one loss (silog) is total_loss
    assert last["iteration"] == 1 and last["nfe_forward"] == 8  # 4 blocks x midpoint, 1 step
    assert any({"depth/AbsRel", "depth/delta1"} <= set(r) for r in rows)  # evaluated at the end

    res = tool.main(tool.build_parser().parse_args([
        *config, "--eval-only", *common, "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"),
        "MODEL.ODE.METHOD_TEST", "euler", "MODEL.ODE.STEP_SIZE_TEST", "0.5"]))
    assert 0 < res["depth"]["AbsRel"] and 0 <= res["depth"]["delta1"] <= 1
    with open(os.path.join(out, "log.txt")) as f:
        log = f.read()
    assert "test solver euler" in log
    assert "ODE forward NFE during evaluation: 24 over 3 image(s)" in log  # 4 blocks x 2 steps

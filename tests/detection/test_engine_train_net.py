"""tools/train_net.py end to end on a tiny COCO-json fixture: train, checkpoint, --resume,
--eval-only with a test-time solver override, a 2-process CPU (gloo) run, and the demo."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from odedet.data.datasets import DatasetError

from _engine_fixtures import REPO, load_tool, run_tool, tiny_cfg, write_cfg, write_coco

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A COCO fixture registered as 'engine_tiny', a config, and 3 trained iterations."""
    root = tmp_path_factory.mktemp("train_net")
    json_file, image_root = write_coco(str(root / "data"), n_images=4)
    out = root / "out"
    cfg = tiny_cfg(out)
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("engine_tiny",), ()
    cfg_file = write_cfg(root / "tiny.yaml", cfg)
    reg = ["--register-coco", "engine_tiny", json_file, image_root]
    load_tool("train_net").cli(["--config-file", cfg_file, *reg, "SOLVER.MAX_ITER", "3"])
    return {"root": root, "out": str(out), "cfg": cfg_file, "reg": reg}


def test_train_writes_checkpoints_and_ode_metrics(setup):
    out = setup["out"]
    for ckpt in ("model_0000001.pth", "model_final.pth", "last_checkpoint"):
        assert os.path.isfile(os.path.join(out, ckpt)), ckpt
    rows = _metrics(out)
    last = [r for r in rows if "total_loss" in r][-1]
    assert last["iteration"] == 2
    # 4 ODE stages x euler with 2 steps: forward NFE 8; the adjoint solves backward (NFE > 0)
    assert last["nfe_forward"] == 8 and last["nfe_backward"] > 0
    assert last["time"] > 0 and np.isfinite(last["total_loss"])
    # the solver settings are scalars too (euler, step 0.5, adjoint)
    settings = {k: v for r in rows for k, v in r.items() if k.startswith("ode/")}
    assert settings["ode/train_step_size"] == 0.5 and settings["ode/train_adjoint"] == 1.0


def test_resume_continues_and_evaluates_eval_only_with_solver_override(setup):
    train_net, out = load_tool("train_net"), setup["out"]
    train_net.cli(["--config-file", setup["cfg"], *setup["reg"], "--resume",
                   "SOLVER.MAX_ITER", "4", "DATASETS.TEST", "('engine_tiny',)"])
    ckpt = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert ckpt["iteration"] == 3  # continued from iteration 2, not restarted
    rows = _metrics(out)
    assert [r["iteration"] for r in rows if "total_loss" in r] == [2, 3]
    assert any({"bbox/AP", "prf1/precision", "prf1/recall", "prf1/F1"} <= set(r) for r in rows)

    res = train_net.main(train_net.build_parser().parse_args([
        "--config-file", setup["cfg"], *setup["reg"], "--eval-only",
        "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"), "DATASETS.TEST", "('engine_tiny',)",
        "MODEL.ODE.METHOD_TEST", "dopri5", "MODEL.ODE.RTOL_TEST", "0.1",
        "MODEL.ODE.ATOL_TEST", "0.1", "MODEL.ODE.STEP_SIZE_TEST", "0.0"]))
    assert {"bbox", "prf1"} <= set(res)  # one test dataset: detectron2 unwraps the dict
    with open(os.path.join(out, "log.txt")) as f:
        log = f.read()
    assert "test solver dopri5(rtol=0.1, atol=0.1" in log
    assert "ODE forward NFE during evaluation" in log


def test_invalid_dataset_stops_before_training(setup, tmp_path):
    with pytest.raises(DatasetError, match="instances_train2017.json not found"):
        load_tool("train_net").cli(["--config-file", setup["cfg"], "OUTPUT_DIR", str(tmp_path),
                                "DATASETS.TRAIN", "('coco_2017_train',)"])
    assert not os.path.exists(tmp_path / "last_checkpoint")


def test_demo_writes_annotated_image_and_video(setup, tmp_path):
    demo, out = load_tool("demo"), setup["out"]
    opts = ["MODEL.WEIGHTS", os.path.join(out, "model_final.pth")]
    src = os.path.join(str(setup["root"]), "data", "images", "0000.jpg")
    dst = str(tmp_path / "vis.jpg")
    demo.main(["--config-file", setup["cfg"], *setup["reg"], "--input", src, "--output", dst,
               "--confidence-threshold", "0", *opts])
    vis, img = cv2.imread(dst), cv2.imread(src)
    assert vis.shape == img.shape and np.abs(vis.astype(int) - img).mean() > 1  # boxes drawn
    video = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 64))
    for _ in range(2):
        writer.write(img)
    writer.release()
    [path] = demo.main(["--config-file", setup["cfg"], "--video-input", video,
                        "--output", str(tmp_path / "vid"), *opts])
    cap = cv2.VideoCapture(path)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2


def test_two_process_cpu_training_with_gloo(setup, tmp_path):
    proc = run_tool("train_net.py", "--num-gpus", 2, "--config-file", setup["cfg"], *setup["reg"],
                    "SOLVER.MAX_ITER", 1, "SOLVER.CHECKPOINT_PERIOD", 100,
                    "OUTPUT_DIR", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "log.txt") as f:
        assert "World size: 2" in f.read()
    assert os.path.isfile(tmp_path / "log.txt.rank1")
    assert os.path.isfile(tmp_path / "model_final.pth")
    assert [r for r in _metrics(tmp_path) if "total_loss" in r][-1]["nfe_backward"] > 0

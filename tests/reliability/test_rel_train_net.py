"""train_net and the demo under bad input, in process: errors name the file/key/iteration, a bad
training image is a logged skip, evaluation of a model that predicts nothing reports zeros."""
import importlib.util
import logging
import math
import os
import sys
import uuid

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "detection"))
from _engine_fixtures import REPO, tiny_cfg, write_cfg, write_coco  # noqa: E402

from odedet.config_check import ConfigError  # noqa: E402
from odedet.data.datasets import DatasetError  # noqa: E402
from odedet.data.image_io import BadImageError  # noqa: E402
from odedet.engine.checkpoint import CheckpointMismatchError, UnsafeCheckpointError  # noqa: E402
from odedet.ode import ODESolverError  # noqa: E402


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"rel_{name}", os.path.join(REPO, "tools",
                                                                              f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_net():
    return _tool("train_net")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _setup(tmp_path, **overrides):
    """A registered tiny COCO dataset + tiny config file; returns (cfg_path, dataset, data)."""
    name = f"rel_{uuid.uuid4().hex[:8]}"
    json_file, image_root = write_coco(str(tmp_path / "data"), n_images=4)
    cfg = tiny_cfg(str(tmp_path / "out"))
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (name,), ()
    cfg.SOLVER.MAX_ITER = 2
    cfg.SOLVER.CHECKPOINT_PERIOD = 1000
    for k, v in overrides.items():
        cfg.merge_from_list([k, v])
    write_cfg(str(tmp_path / "cfg.yaml"), cfg)
    args = ["--config-file", str(tmp_path / "cfg.yaml"), "--register-coco", name, json_file,
            image_root]
    return args, (json_file, image_root)


def _run(train_net, argv):
    return train_net.main(train_net.build_parser().parse_args(argv))


def test_unknown_key_and_bad_value_through_train_net(tmp_path, train_net):
    args, _ = _setup(tmp_path)
    with pytest.raises(ConfigError, match=r"'MODEL.ODE.RTOL_TRAN'.*MODEL.ODE.RTOL_TRAIN"):
        _run(train_net, args + ["MODEL.ODE.RTOL_TRAN", "0.1"])
    with pytest.raises(ConfigError, match=r"Unknown ODE solver method 'rk5'.*rk4"):
        _run(train_net, args + ["MODEL.ODE.METHOD_TRAIN", "rk5"])


def test_broken_annotation_file_through_train_net(tmp_path, train_net):
    args, (json_file, _) = _setup(tmp_path)
    with open(json_file, "w") as f:
        f.write("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        _run(train_net, args)


def test_empty_dataset_root_through_train_net(tmp_path, train_net, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "empty"))
    args, _ = _setup(tmp_path, **{"DATASETS.TRAIN": ("coco_2017_train",)})
    with pytest.raises(DatasetError, match=r"coco_2017_train.*not found"):
        _run(train_net, args[:2])


def test_truncated_image_is_a_logged_skip_in_training(tmp_path, train_net, caplog):
    args, (_, image_root) = _setup(tmp_path)
    bad = os.path.join(image_root, "0001.jpg")
    with open(bad, "rb") as f:
        data = f.read()
    with open(bad, "wb") as f:
        f.write(data[: len(data) // 3])
    with caplog.at_level(logging.WARNING, logger="odedet"):
        _run(train_net, args)
    assert "Skipping a bad training sample" in caplog.text and "0001.jpg" in caplog.text
    assert os.path.isfile(tmp_path / "out" / "model_final.pth")
    with pytest.raises(BadImageError, match="0001.jpg"):  # policy "error": stops, names it
        _run(train_net, args + ["DATALOADER.BAD_SAMPLES", "error"])


def test_step_guard_stops_training_at_the_iteration(tmp_path, train_net):
    args, _ = _setup(tmp_path)
    opts = ["MODEL.ODE.METHOD_TRAIN", "dopri5", "MODEL.ODE.RTOL_TRAIN", "1e-9",
            "MODEL.ODE.ATOL_TRAIN", "1e-9", "MODEL.ODE.MAX_NUM_STEPS", "1"]
    with pytest.raises(ODESolverError, match=r"at training iteration 0:.*MODEL.ODE.MAX_NUM_STEPS"):
        _run(train_net, args + opts)


def test_evaluation_of_a_model_that_predicts_nothing_reports_zeros(tmp_path, train_net):
    args, (json_file, image_root) = _setup(tmp_path)
    name = args[-3]
    from odedet.engine import Trainer

    weights = tmp_path / "w.pth"
    cfg = tiny_cfg(str(tmp_path / "out"))
    torch.save({"model": Trainer.build_model(cfg).state_dict()}, weights)
    results = _run(train_net, args + [
        "--eval-only", "DATASETS.TEST", f"('{name}',)", "MODEL.WEIGHTS", str(weights),
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "1.0",  # nothing scores above 1: no detections
    ])
    flat = {f"{task}/{k}": v for task, res in results.items() for k, v in res.items()}
    assert flat and "bbox/AP" in flat
    assert all(not math.isnan(v) for v in flat.values()), flat
    assert flat["bbox/AP"] == 0.0


def _demo_setup(tmp_path):
    args, (json_file, image_root) = _setup(tmp_path)
    from odedet.engine import Trainer

    cfg = tiny_cfg(str(tmp_path / "out"))
    weights = tmp_path / "w.pth"
    torch.save({"model": Trainer.build_model(cfg).state_dict()}, weights)
    return args, weights, image_root


def test_demo_bad_inputs_and_checkpoints(tmp_path):
    demo = _tool("demo")
    args, weights, image_root = _demo_setup(tmp_path)
    bad = os.path.join(image_root, "broken.jpg")
    with open(bad, "w") as f:
        f.write("not an image")
    out = str(tmp_path / "vis")

    def run(inputs, *opts):
        return demo.main(["--config-file", args[1], "--input", inputs, "--output", out, *opts])

    written = run(image_root, "MODEL.WEIGHTS", str(weights))
    assert len(written) == 4 and not any("broken" in w for w in written)  # skipped, logged
    with pytest.raises(BadImageError, match="broken.jpg"):
        run(bad, "MODEL.WEIGHTS", str(weights))

    other = tmp_path / "other.pth"
    torch.save({"model": {"encoder.weight": torch.zeros(3)}}, other)
    with pytest.raises(CheckpointMismatchError, match="other.pth"):
        run(image_root, "MODEL.WEIGHTS", str(other))

    class Payload:
        def __reduce__(self):
            return (print, ("payload ran",))

    evil = tmp_path / "evil.pth"
    torch.save({"model": {}, "x": Payload()}, evil)
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        run(image_root, "MODEL.WEIGHTS", str(evil))
    with pytest.raises(ConfigError, match="MODEL.ODE.STAGES"):
        run(image_root, "MODEL.WEIGHTS", str(weights), "MODEL.ODE.STAGES", "['res7']")

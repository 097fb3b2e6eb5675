"""Depth datasets handle bad files like detection: a logged skip in training, an error naming
the file in evaluation; list files may mix image sizes; scene generation is safe when several
processes start at once."""
import logging
import os
import subprocess
import sys
import uuid

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog

from odedet.data.depth.builtin import register_depth_list
from odedet.data.depth.formats import DepthDataError, write_depth_png
from odedet.data.depth.scenes import Camera
from odedet.data.depth.synthetic import ensure_scenes
from odedet.data.image_io import BadImageError, BadSampleError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAM = Camera(width=64, height=48, fx=55.0, fy=55.0, cx=32.0, cy=24.0)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def scenes(tmp_path):
    root = ensure_scenes(str(tmp_path / "scenes"), counts={"train": 4, "val": 2}, seed=3,
                         camera=CAM)
    names = []
    for split in ("train", "val"):
        name = f"rel_depth_{split}_{uuid.uuid4().hex[:6]}"
        register_depth_list(name, os.path.join(root, f"{split}.txt"))
        names.append(name)
    yield root, names
    for name in names:
        DatasetCatalog.remove(name)


def _train_net():
    sys.path.insert(0, os.path.join(ROOT, "tests", "detection"))
    from _engine_fixtures import load_tool

    return load_tool("train_net")


def _args(root, names, out, *extra):
    return ["--config-file", os.path.join(ROOT, "configs/Depth/ode_resnet18_scenes.yaml"),
            "DATASETS.TRAIN", f"('{names[0]}',)", "DATASETS.TEST", f"('{names[1]}',)",
            "OUTPUT_DIR", out, "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
            "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "0", "TEST.EVAL_PERIOD", "0",
            "MODEL.ODE.METHOD_TRAIN", "euler", "MODEL.ODE.STEP_SIZE_TRAIN", "1.0",
            "MODEL.ODE.METHOD_TEST", "euler", "MODEL.ODE.STEP_SIZE_TEST", "1.0", *extra]


def _corrupt(path, how):
    data = open(path, "rb").read()
    if how == "truncated":
        open(path, "wb").write(data[: len(data) // 2])
    elif how == "not_an_image":
        open(path, "w").write("<html>not an image</html>")
    elif how == "empty":
        open(path, "wb").close()
    elif how == "8bit_depth":  # a depth map saved with the wrong dtype
        cv2.imwrite(path, np.full((CAM.height, CAM.width), 7, np.uint8))


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("how", ["truncated", "not_an_image", "empty"])
def test_bad_rgb_is_a_logged_skip_in_training_and_a_named_error_in_evaluation(
        tmp_path, scenes, how):
    root, names = scenes
    tool = _train_net()
    bad_train = os.path.join(root, "train", "rgb", "00001.png")
    _corrupt(bad_train, how)
    collect = _Collect()  # train_net's setup_logger stops propagation, so caplog misses it
    logging.getLogger("odedet.data.image_io").addHandler(collect)
    try:
        tool.main(tool.build_parser().parse_args(_args(root, names, str(tmp_path / "a"))))
    finally:
        logging.getLogger("odedet.data.image_io").removeHandler(collect)
    text = "\n".join(collect.messages)
    assert "Skipping a bad training sample" in text and "train/rgb/00001.png" in text, text
    assert os.path.isfile(tmp_path / "a" / "model_final.pth")
    bad_val = os.path.join(root, "val", "rgb", "00000.png")
    _corrupt(bad_val, how)
    with pytest.raises(BadImageError, match=r"val/rgb/00000.png"):
        tool.main(tool.build_parser().parse_args(["--eval-only", *_args(
            root, names, str(tmp_path / "b"), "MODEL.WEIGHTS",
            str(tmp_path / "a" / "model_final.pth"))]))


@pytest.mark.parametrize("how", ["truncated", "8bit_depth"])
def test_bad_depth_png_is_a_skip_in_training_and_an_error_in_evaluation(scenes, how):
    import odedet
    from odedet.data.mappers import build_mapper

    root, names = scenes
    _corrupt(os.path.join(root, "train", "depth", "00002.png"), how)
    cfg = odedet.get_odedet_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "configs/Depth/ode_resnet18_scenes.yaml"))
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (names[0],), (names[0],)
    bad = DatasetCatalog.get(names[0])[2]
    assert build_mapper(cfg, True)(bad) is None  # skipped (the loader re-samples)
    with pytest.raises(DepthDataError, match=r"train/depth/00002.png"):
        build_mapper(cfg, False)(bad)
    cfg.DATALOADER.BAD_SAMPLES = "error"
    with pytest.raises(BadSampleError, match="00002.png"):
        build_mapper(cfg, True)(bad)


def test_odd_image_modes_convert(tmp_path):
    """Gray, palette, RGBA and 16-bit RGB files next to depth PNGs read as 3-channel images."""
    from PIL import Image

    from odedet.data.depth.formats import read_depth_sample

    depth = tmp_path / "d.png"
    write_depth_png(str(depth), np.full((8, 10), 2.0), 1000.0)
    for mode in ("L", "P", "RGBA", "I;16"):
        path = tmp_path / f"img_{mode.replace(';', '')}.png"
        Image.new(mode, (10, 8)).save(path)
        image, d = read_depth_sample({"file_name": str(path), "depth_file_name": str(depth),
                                      "depth_scale": 1000.0})
        assert image.shape == (8, 10, 3) and d.shape == (8, 10) and d.max() == 2.0


def test_list_file_may_mix_image_sizes(tmp_path):
    """Each entry gets its own height/width (the evaluator compares at that size); an entry
    whose size on disk changed later is refused by name, never silently mis-sized."""
    from odedet.data.depth.loaders import load_depth_list
    from odedet.data.depth.mapper import DepthDatasetMapper
    from detectron2.data import transforms as T

    lines = []
    for i, (h, w) in enumerate([(48, 64), (30, 40), (64, 48)]):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((h, w, 3), 100, np.uint8))
        write_depth_png(str(tmp_path / f"{i}_d.png"), np.full((h, w), 1.5), 1000.0)
        lines.append(f"{i}.png {i}_d.png 1000")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    dicts = load_depth_list(str(tmp_path / "list.txt"))
    assert [(d["height"], d["width"]) for d in dicts] == [(48, 64), (30, 40), (64, 48)]
    mapper = DepthDatasetMapper(False, augmentations=[T.Resize((32, 32))], image_format="BGR")
    for d in dicts:
        out = mapper(d)
        assert tuple(out["depth"].shape) == (d["height"], d["width"])
    cv2.imwrite(str(tmp_path / "1.png"), np.full((31, 40, 3), 100, np.uint8))  # changed on disk
    write_depth_png(str(tmp_path / "1_d.png"), np.full((31, 40), 1.5), 1000.0)
    with pytest.raises(BadSampleError, match=r"1.png is 40x31 but its dataset entry says 40x30"):
        mapper(dicts[1])


def test_nyu_mat_corrupt_or_truncated_names_the_file(tmp_path):
    import h5py

    from odedet.data.depth.formats import nyu_dataset_size, read_nyu

    path = str(tmp_path / "nyu_ok.mat")
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((2, 3, 640, 480), np.uint8)
        f["depths"] = np.ones((2, 640, 480), np.float32)
    assert nyu_dataset_size(path) == 2 and read_nyu(path, 1)[1].shape == (480, 640)
    data = open(path, "rb").read()
    cut = str(tmp_path / "nyu_cut.mat")
    open(cut, "wb").write(data[: len(data) // 3])
    with pytest.raises(DepthDataError, match="nyu_cut.mat"):
        nyu_dataset_size(cut)
        read_nyu(cut, 1)
    group = str(tmp_path / "nyu_group.mat")
    with h5py.File(group, "w") as f:
        f.create_group("images")
        f["depths"] = np.ones((2, 640, 480), np.float32)
    with pytest.raises(DepthDataError, match="nyu_group.mat: 'images' and 'depths' must be"):
        nyu_dataset_size(group)


_GENERATE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from odedet.data.depth.scenes import Camera
from odedet.data.depth.synthetic import ensure_scenes
ensure_scenes(sys.argv[1], counts={"train": 8, "val": 2}, seed=1,
              camera=Camera(width=32, height=24, fx=30.0, fy=30.0, cx=16.0, cy=12.0))
"""


def test_scene_generation_is_safe_when_processes_start_at_once(tmp_path):
    root = str(tmp_path / "scenes")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", _GENERATE, root], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    assert sum("Rendering synthetic depth scenes" in log for log in logs) == 1, logs
    lines = open(os.path.join(root, "train.txt")).read().split("\n")
    assert len([ln for ln in lines if ln]) == 8
    assert not [d for d in os.listdir(tmp_path) if d.startswith(".scenes")]  # no leftovers

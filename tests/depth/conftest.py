"""Fixtures of the depth tests."""
import os

import pytest
from detectron2.data import DatasetCatalog

from odedet.data.depth.builtin import register_depth_list
from odedet.data.depth.scenes import Camera
from odedet.data.depth.synthetic import ensure_scenes


@pytest.fixture
def tiny_scenes(tmp_path):
    """A few 64x48 rendered scenes registered as (train, val) depth datasets."""
    cam = Camera(width=64, height=48, fx=55.0, fy=55.0, cx=32.0, cy=24.0)
    root = ensure_scenes(str(tmp_path / "scenes"), counts={"train": 6, "val": 3}, seed=5,
                         camera=cam)
    names = []
    for split in ("train", "val"):
        name = f"_qs_depth_{split}_{os.getpid()}_{id(tmp_path)}"
        register_depth_list(name, os.path.join(root, f"{split}.txt"))
        names.append(name)
    yield names
    for name in names:
        DatasetCatalog.remove(name)

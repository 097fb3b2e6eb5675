"""Fixtures of the depth tests."""
import itertools
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from odedet.data.depth.builtin import register_depth_list
from odedet.data.depth.scenes import Camera
from odedet.data.depth.synthetic import ensure_scenes


# A counter, not id(tmp_path): CPython reuses a freed object's id, and a reused
# name would meet the metadata an earlier test left (detectron2 refuses to change it).
_SERIAL = itertools.count()


@pytest.fixture
def tiny_scenes(tmp_path):
    """A few 64x48 rendered scenes registered as (train, val) depth datasets."""
    cam = Camera(width=64, height=48, fx=55.0, fy=55.0, cx=32.0, cy=24.0)
    root = ensure_scenes(str(tmp_path / "scenes"), counts={"train": 6, "val": 3}, seed=5,
                         camera=cam)
    names = []
    serial = next(_SERIAL)
    for split in ("train", "val"):
        name = f"_qs_depth_{split}_{os.getpid()}_{serial}"
        register_depth_list(name, os.path.join(root, f"{split}.txt"))
        names.append(name)
    yield names
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)

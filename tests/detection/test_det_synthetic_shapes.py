"""The embedded synthetic-shapes dataset: deterministic, valid COCO, regenerated when stale,
registered through detectron2's COCO loader, and a working CLI."""
import hashlib
import json
import os
import subprocess
import sys

import cv2
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from pycocotools.coco import COCO

from odedet.data import synthetic_shapes as ss

SMALL = ss.ShapesParams(seed=3, num_train=8, num_val=4, image_size=96, max_objects=4,
                        min_size=10, max_size=40)


def _digest(directory):
    h = hashlib.sha256()
    for base, _, files in sorted(os.walk(directory)):
        for name in sorted(files):
            with open(os.path.join(base, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def test_generation_is_deterministic_and_seeded(tmp_path):
    a = ss.generate(SMALL, str(tmp_path / "a"))
    b = ss.generate(SMALL, str(tmp_path / "b"))
    c = ss.generate(ss.ShapesParams(**{**SMALL.__dict__, "seed": 4}), str(tmp_path / "c"))
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_coco_json_is_valid_and_consistent(tmp_path):
    directory = ss.generate(SMALL, str(tmp_path))
    for split, n in (("train", SMALL.num_train), ("val", SMALL.num_val)):
        json_file = os.path.join(directory, "annotations", f"instances_{split}.json")
        coco = COCO(json_file)
        assert len(coco.getImgIds()) == n
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(ss.CLASSES)
        assert len(coco.getAnnIds()) > 0
        for img in coco.loadImgs(coco.getImgIds()):
            pixels = cv2.imread(os.path.join(directory, split, img["file_name"]))
            assert pixels.shape == (img["height"], img["width"], 3)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
                x, y, w, h = ann["bbox"]
                assert w > 0 and h > 0 and x >= 0 and y >= 0
                assert x + w <= img["width"] + 1e-6 and y + h <= img["height"] + 1e-6
                assert SMALL.min_size * 0.5 <= max(w, h) <= SMALL.max_size * 1.5
                assert 0 < ann["area"] <= w * h
                (poly,) = ann["segmentation"]
                xs, ys = poly[0::2], poly[1::2]
                eps = 1e-6  # float sums of 2-decimal values
                assert x <= min(xs) and max(xs) <= x + w + eps
                assert y <= min(ys) and max(ys) <= y + h + eps


def test_images_differ_in_content(tmp_path):
    directory = ss.generate(SMALL, str(tmp_path))
    with open(os.path.join(directory, "annotations", "instances_train.json")) as f:
        coco = json.load(f)
    counts = [sum(a["image_id"] == im["id"] for a in coco["annotations"]) for im in coco["images"]]
    assert len(set(counts)) > 1  # varying numbers of objects per image
    classes = {a["category_id"] for a in coco["annotations"]}
    assert classes == {1, 2, 3}


def test_ensure_regenerates_only_when_parameters_change(tmp_path):
    root = str(tmp_path)
    directory = ss.ensure(SMALL, root)
    gen = os.path.join(directory, "generation.json")
    stamp = os.stat(gen).st_mtime_ns
    ss.ensure(SMALL, root)
    assert os.stat(gen).st_mtime_ns == stamp  # up to date: untouched
    bigger = ss.ShapesParams(**{**SMALL.__dict__, "num_val": 5})
    assert not ss.is_current(bigger, root)
    ss.ensure(bigger, root)
    assert ss.is_current(bigger, root)
    assert len(os.listdir(os.path.join(directory, "val"))) == 5
    assert [p for p in os.listdir(root) if p.startswith(".")] == []  # no temporaries left


def test_registered_names_load_through_coco_loader(tmp_path):
    names = ss.register_synthetic_shapes(str(tmp_path), SMALL, "test_det_shapes", replace=True)
    try:
        assert names == ["test_det_shapes_train", "test_det_shapes_val"]
        assert not os.path.exists(ss.dataset_dir(str(tmp_path)))
        dicts = DatasetCatalog.get("test_det_shapes_val")  # generates on first use
        assert len(dicts) == SMALL.num_val
        assert os.path.isfile(os.path.join(ss.dataset_dir(str(tmp_path)), "generation.json"))
        objs = [o for d in dicts for o in d["annotations"]]
        assert objs and all(o["bbox_mode"] == BoxMode.XYWH_ABS for o in objs)
        assert {o["category_id"] for o in objs} <= {0, 1, 2}  # contiguous ids
        meta = MetadataCatalog.get("test_det_shapes_val")
        assert meta.evaluator_type == "coco" and meta.thing_classes == list(ss.CLASSES)
        assert os.path.isfile(meta.json_file)
    finally:
        for name in names:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def test_default_names_are_registered():
    for split in ("train", "val"):
        meta = MetadataCatalog.get(f"odedet_shapes_{split}")
        assert f"odedet_shapes_{split}" in DatasetCatalog.list()
        assert meta.evaluator_type == "coco"


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="min_size"):
        ss.ShapesParams(min_size=50, max_size=20)


def test_cli_generates(tmp_path):
    cmd = [sys.executable, "-m", "odedet.data.synthetic_shapes", "--root", str(tmp_path),
           "--num-train", "2", "--num-val", "1", "--image-size", "64", "--max-size", "30"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "instances_train.json" in out.stdout
    with open(os.path.join(ss.dataset_dir(str(tmp_path)), "generation.json")) as f:
        assert json.load(f)["image_size"] == 64

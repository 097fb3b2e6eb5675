"""The embedded handwritten-digits detection dataset: deterministic, valid COCO, no digit image
shared between the splits, safe when several processes generate it at once."""
import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from odedet.data import synthetic_digits as sd
from odedet.data.validation import validate_coco_json

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = sd.DigitsParams(num_train=24, num_val=12)


def _coco(directory, split):
    with open(os.path.join(directory, "annotations", f"instances_{split}.json")) as f:
        return json.load(f)


def _same_tree(a, b):
    for split in sd.SPLITS:
        names = sorted(os.listdir(os.path.join(a, split)))
        assert names == sorted(os.listdir(os.path.join(b, split)))
        match, mismatch, errors = filecmp.cmpfiles(
            os.path.join(a, split), os.path.join(b, split), names, shallow=False)
        assert not mismatch and not errors
        assert _coco(a, split) == _coco(b, split)


def test_generation_is_deterministic_and_seeded(tmp_path):
    a = sd.generate(SMALL, str(tmp_path / "a"))
    b = sd.generate(SMALL, str(tmp_path / "b"))
    _same_tree(a, b)
    c = sd.generate(sd.DigitsParams(seed=1, num_train=24, num_val=12), str(tmp_path / "c"))
    assert _coco(a, "train")["annotations"] != _coco(c, "train")["annotations"]


def test_coco_json_is_valid_and_boxes_lie_inside_images(tmp_path):
    from pycocotools.coco import COCO

    directory = sd.generate(SMALL, str(tmp_path))
    for split in sd.SPLITS:
        json_file = os.path.join(directory, "annotations", f"instances_{split}.json")
        data = validate_coco_json(json_file, os.path.join(directory, split))
        coco = COCO(json_file)
        assert sorted(coco.getCatIds()) == list(range(1, 11))
        assert [c["name"] for c in data["categories"]] == [str(d) for d in range(10)]
        assert len(coco.getImgIds()) == (SMALL.num_train if split == "train" else SMALL.num_val)
        assert coco.getAnnIds()  # objects were placed
        for ann in data["annotations"]:
            img = coco.imgs[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= img["width"] and y + h <= img["height"]
            assert SMALL.min_size * 0.5 <= h <= SMALL.max_size * 1.5  # rotation changes h
            assert 0 <= ann["source_index"] < 1797


def test_several_scales_with_small_objects(tmp_path):
    data = _coco(sd.generate(SMALL, str(tmp_path)), "train")
    areas = np.array([a["bbox"][2] * a["bbox"][3] for a in data["annotations"]])
    assert (areas < 32 ** 2).mean() > 0.2 and (areas >= 32 ** 2).mean() > 0.2


def test_no_source_digit_image_is_shared_between_splits(tmp_path):
    split = sd.source_split(SMALL)
    train, val = set(split["train"].tolist()), set(split["val"].tolist())
    assert not train & val and len(train | val) == 1797
    assert abs(len(val) / 1797 - SMALL.val_source_fraction) < 0.01
    _, targets = sd._digits()
    assert set(targets[sorted(val)].tolist()) == set(range(10))  # stratified: every class
    directory = sd.generate(SMALL, str(tmp_path))
    used = {s: {a["source_index"] for a in _coco(directory, s)["annotations"]} for s in sd.SPLITS}
    assert used["train"] <= train and used["val"] <= val
    assert not used["train"] & used["val"]
    for s in sd.SPLITS:  # the category is the source digit's label
        for a in _coco(directory, s)["annotations"]:
            assert a["category_id"] == targets[a["source_index"]] + 1


_GENERATE = ("import sys; from odedet.data import synthetic_digits as sd; "
             "sd.ensure(sd.DigitsParams(num_train=24, num_val=12), sys.argv[1])")


def test_concurrent_generation_is_safe(tmp_path):
    root = tmp_path / "shared"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", _GENERATE, str(root)], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert sd.is_current(SMALL, str(root))
    assert sorted(os.listdir(root)) == [sd.DIRNAME]  # no temporary directory left behind
    _same_tree(sd.dataset_dir(str(root)), sd.generate(SMALL, str(tmp_path / "ref")))


def test_ensure_regenerates_only_when_parameters_change(tmp_path):
    directory = sd.ensure(SMALL, str(tmp_path))
    stamp = os.path.getmtime(os.path.join(directory, "generation.json"))
    sd.ensure(SMALL, str(tmp_path))
    assert os.path.getmtime(os.path.join(directory, "generation.json")) == stamp
    other = sd.DigitsParams(num_train=8, num_val=4)
    sd.ensure(other, str(tmp_path))
    assert sd.is_current(other, str(tmp_path)) and not sd.is_current(SMALL, str(tmp_path))


def test_registered_names_load_and_validate(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from odedet.data.datasets import validate_datasets

    names = sd.register_synthetic_digits(str(tmp_path), SMALL, "digits_test", replace=True)
    assert names == ["digits_test_train", "digits_test_val"]
    validate_datasets(names)  # generates on first use, then checks the files
    dicts = DatasetCatalog.get("digits_test_val")
    assert len(dicts) == SMALL.num_val
    assert MetadataCatalog.get("digits_test_val").thing_classes == [str(d) for d in range(10)]
    assert {"odedet_digits_train", "odedet_digits_val"} <= set(DatasetCatalog.list())


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError):
        sd.DigitsParams(min_size=40, max_size=20)
    with pytest.raises(ValueError):
        sd.DigitsParams(val_source_fraction=0.0)

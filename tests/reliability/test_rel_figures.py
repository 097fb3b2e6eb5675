"""Correct figures: checkpoint mismatch counts, the tolerance benchmark's strict load and its
subset scoring, P/R/F1 on Pascal VOC's "difficult" objects, VOC layouts of any size."""
import logging
import os
import sys
import uuid

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "detection"))
from _engine_fixtures import CLASSES, load_tool, tiny_cfg, write_cfg, write_coco, write_voc  # noqa

from odedet.engine.checkpoint import CheckpointMismatchError, OdedetCheckpointer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.a = nn.Linear(3, width)
        self.b = nn.Linear(width, 2)


def _load_init(model, state, tmp_path, caplog):
    path = tmp_path / f"{uuid.uuid4().hex[:6]}.pth"
    torch.save({"model": state}, path)
    with caplog.at_level(logging.WARNING):
        OdedetCheckpointer(model).load(str(path), checkpointables=[], mode="init")
    return caplog.text


def test_mismatch_counts_each_tensor_once(tmp_path, caplog):
    model = _Net()
    state = _Net().state_dict()
    state["b.weight"] = torch.zeros(2, 5)  # wrong shape: one tensor, counted once
    del state["b.bias"]  # missing
    state["extra"] = torch.zeros(1)  # unexpected
    text = _load_init(model, state, tmp_path, caplog)
    assert "PARTIAL WEIGHTS" in text
    assert "2 of 4 model tensors loaded; 1 missing (e.g. ['b.bias']), 1 unexpected" in text
    assert "1 with another shape (e.g. ['b.weight'])" in text


def test_nothing_would_be_loaded_only_when_nothing_would(tmp_path, caplog):
    model = _Net()
    one_good = {"a.weight": _Net().state_dict()["a.weight"], "b.weight": torch.zeros(9, 9)}
    text = _load_init(model, one_good, tmp_path, caplog)  # 1 of 4 loads: a warning
    assert "1 of 4 model tensors loaded" in text and "PARTIAL WEIGHTS" in text
    all_bad = {k: torch.zeros(7) for k in _Net().state_dict()}
    with pytest.raises(CheckpointMismatchError, match=r"0 of 4 model tensors loaded.*4 with "
                       r"another shape.*Nothing would be loaded"):
        _load_init(_Net(), all_bad, tmp_path, caplog)


def test_tolerance_benchmark_refuses_a_partly_matching_checkpoint(tmp_path):
    from odedet.engine import Trainer

    cfg = tiny_cfg(str(tmp_path / "out"))
    state = Trainer.build_model(cfg).state_dict()
    state.pop(next(k for k in state if "roi_heads" in k))
    torch.save({"model": state}, tmp_path / "partial.pth")
    path = write_cfg(str(tmp_path / "cfg.yaml"), cfg)
    with pytest.raises(CheckpointMismatchError, match=r"partial.pth.*1 missing"):
        load_tool("benchmark").main(["tolerance", "--config-file", path, "--weights",
                                     str(tmp_path / "partial.pth"), "--out", str(tmp_path / "b"),
                                     "--quick"])


class _Oracle(nn.Module):
    """Predicts each image's ground-truth boxes with score 1: AP 100 on any set of images."""

    def __init__(self, gts):
        super().__init__()
        self.gts = gts

    def forward(self, inputs):
        outs = []
        for inp in inputs:
            anns = self.gts[inp["image_id"]]
            boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
            inst = Instances((inp["height"], inp["width"]))
            inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
            inst.scores = torch.ones(len(boxes))
            inst.pred_classes = torch.tensor([a["category_id"] for a in anns], dtype=torch.long)
            outs.append({"instances": inst})
        return outs


def _register_subset(kind, tmp_path, n_images, keep):
    """A dataset of ``n_images`` and, as reference, one holding only its first ``keep``."""
    import json

    from detectron2.data.datasets import register_pascal_voc

    from odedet.data.datasets import register_coco

    names = [f"rel_subset_{kind}_{uuid.uuid4().hex[:6]}" for _ in range(2)]
    if kind == "coco":
        json_file, image_root = write_coco(str(tmp_path / "data"), n_images=n_images,
                                           empty_last=False)
        register_coco(names[0], json_file, image_root)
        data = json.load(open(json_file))
        ids = {im["id"] for im in data["images"][:keep]}
        data["images"] = data["images"][:keep]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
        sub = str(tmp_path / "subset.json")
        json.dump(data, open(sub, "w"))
        register_coco(names[1], sub, image_root)
    else:
        voc = write_voc(str(tmp_path / "data"), n_images=n_images)
        ids = open(os.path.join(voc, "ImageSets", "Main", "test.txt")).read().split()
        open(os.path.join(voc, "ImageSets", "Main", "sub.txt"), "w").write(
            "\n".join(ids[:keep]) + "\n")
        for name, split in zip(names, ("test", "sub")):
            register_pascal_voc(name, voc, split, 2007, CLASSES)
            MetadataCatalog.get(name).evaluator_type = "pascal_voc"  # as detectron2's builtin
    return names


@pytest.mark.parametrize("kind", ["coco", "voc"])
def test_tolerance_scores_an_image_subset_on_that_subset(tmp_path, kind):
    """--max-images N scores the first N images exactly as a dataset of those N images would
    be scored; before, the GT of every image counted, so the images not run were all misses."""
    from odedet.benchmarks.tolerance import evaluate_once

    full, reference = _register_subset(kind, tmp_path, n_images=6, keep=3)
    dicts = DatasetCatalog.get(full)
    oracle = _Oracle({d["image_id"]: d["annotations"] for d in dicts})
    cfg = tiny_cfg(str(tmp_path / "out"))
    row = evaluate_once(oracle, cfg, full, max_images=3)
    ref = evaluate_once(oracle, cfg, reference, max_images=0)
    for key in ("AP", "AP50", "F1"):
        assert row[key] == pytest.approx(ref[key]), (key, row, ref)
    assert row["F1"] == pytest.approx(100.0)
    everything = evaluate_once(oracle, cfg, full, max_images=0)  # the oracle is perfect
    assert everything["AP50"] == pytest.approx(100.0) and everything["F1"] == pytest.approx(100.0)
    for name in (full, reference):
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _voc_with_difficult(root, n_images=1):
    voc = write_voc(root, n_images=n_images)
    xml = os.path.join(voc, "Annotations", "000000.xml")
    text = open(xml).read()
    difficult = ("<object><name>dog</name><pose>Unspecified</pose><truncated>0</truncated>"
                 "<difficult>1</difficult><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>12</xmax>"
                 "<ymax>12</ymax></bndbox></object>")
    open(xml, "w").write(text.replace("</annotation>", difficult + "</annotation>"))
    return voc


def test_prf1_on_voc_treats_difficult_objects_as_voc_ap_does(tmp_path):
    from detectron2.data.datasets import register_pascal_voc

    from odedet.evaluation.prf1 import PRF1Evaluator

    name = f"rel_voc_difficult_{uuid.uuid4().hex[:6]}"
    voc = _voc_with_difficult(str(tmp_path / "data"))
    register_pascal_voc(name, voc, "test", 2007, CLASSES)
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == 1 and [a["difficult"] for a in dicts[0]["annotations"]][-1] == 1
    d = dicts[0]
    ev = PRF1Evaluator(name, distributed=False)

    def evaluate(anns):
        ev.reset()
        ev.process([d], _Oracle({d["image_id"]: anns})([d]))
        return ev.evaluate()["prf1"]

    easy = [a for a in d["annotations"] if not a["difficult"]]
    hard = [a for a in d["annotations"] if a["difficult"]]
    n = len(easy)
    r = evaluate(easy + hard + hard)  # the difficult object detected, twice: neither TP nor FP
    assert (r["TP"], r["FP"], r["FN"]) == (n, 0, 0) and r["precision"] == 100.0
    r = evaluate(easy)  # the difficult object missed: not a false negative
    assert (r["TP"], r["FP"], r["FN"]) == (n, 0, 0) and r["recall"] == 100.0
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


@pytest.mark.parametrize("n_images", [1, 2])
def test_tiny_voc_layouts_load_validate_and_train(tmp_path, n_images):
    """detectron2 v0.6 reads ImageSets/Main/<split>.txt with np.loadtxt: a one-image split is a
    0-d array ('iteration over a 0-d array'). odedet's loader reads any size."""
    from detectron2.data.datasets import register_pascal_voc

    from odedet.data.datasets import validate_datasets

    name = f"rel_voc_tiny_{uuid.uuid4().hex[:6]}"
    voc = write_voc(str(tmp_path / "data"), split="trainval", n_images=n_images)
    register_pascal_voc(name, voc, "trainval", 2007, CLASSES)
    assert len(DatasetCatalog.get(name)) == n_images
    validate_datasets([name])
    cfg = tiny_cfg(str(tmp_path / "out"))
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (name,), ()
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.IMS_PER_BATCH = 1, 1
    path = write_cfg(str(tmp_path / "cfg.yaml"), cfg)
    tool = load_tool("train_net")
    tool.main(tool.build_parser().parse_args(["--config-file", path]))
    assert os.path.isfile(tmp_path / "out" / "model_final.pth")
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_count_matches_difficult_unit():
    from odedet.evaluation.prf1 import count_matches

    gts = {1: [([0, 0, 10, 10], 0, 0, 1), ([20, 20, 10, 10], 0, 0, 0)]}

    def preds(boxes):
        return [{"image_id": 1, "boxes": np.array(boxes, float),
                 "scores": np.linspace(0.9, 0.5, len(boxes)),
                 "classes": np.zeros(len(boxes), int)}]

    tp, fp, fn = count_matches(gts, preds([[0, 0, 10, 10], [1, 0, 10, 10], [20, 20, 10, 10],
                                           [50, 50, 5, 5]]), 1)
    assert (tp[0], fp[0], fn[0]) == (1, 1, 0)
    tp, fp, fn = count_matches(gts, [], 1)
    assert (tp[0], fp[0], fn[0]) == (0, 0, 1)
    tp, fp, fn = count_matches({1: [([0, 0, 10, 10], 0, 0)]}, preds([[0, 0, 10, 10]]), 1)
    assert (tp[0], fp[0], fn[0]) == (1, 0, 0)  # 3-tuples (no difficult flag) still work

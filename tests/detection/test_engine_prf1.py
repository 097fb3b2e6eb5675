"""P/R/F1 evaluator against hand-counted TP/FP/FN cases."""
import uuid

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

import odedet  # noqa: F401
from odedet.evaluation import build_evaluators
from odedet.evaluation.prf1 import PRF1Evaluator


def _register(records, classes=("cat", "dog")):
    name = f"prf1_test_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=list(classes), evaluator_type="coco")
    return name


def _img(image_id, *objs):
    anns = [
        {"bbox": list(box), "bbox_mode": BoxMode.XYXY_ABS, "category_id": c, "iscrowd": crowd}
        for box, c, crowd in objs
    ]
    return {"image_id": image_id, "file_name": f"{image_id}.jpg", "height": 100, "width": 100,
            "annotations": anns}


def _out(*dets):
    inst = Instances((100, 100))
    inst.pred_boxes = Boxes(torch.tensor([d[0] for d in dets], dtype=torch.float32).view(-1, 4))
    inst.scores = torch.tensor([d[1] for d in dets], dtype=torch.float32)
    inst.pred_classes = torch.tensor([d[2] for d in dets], dtype=torch.int64)
    return {"instances": inst}


def _evaluate(records, outputs, **kw):
    ev = PRF1Evaluator(_register(records), distributed=False, **kw)
    ev.reset()
    for rec, out in zip(records, outputs):
        ev.process([{"image_id": rec["image_id"]}], [out])
    return ev.evaluate()["prf1"]


def test_tp_fp_fn_per_class_and_score_threshold():
    records = [
        _img(1, ((0, 0, 10, 10), 0, 0), ((20, 20, 30, 30), 0, 0), ((50, 50, 60, 60), 1, 0)),
        _img(2),  # no GT: every detection is a false positive
        _img(3, ((0, 0, 5, 5), 1, 0)),  # GT without detections: a false negative
    ]
    outputs = [
        _out(
            ((0, 0, 10, 10), 0.9, 0),  # TP cat
            ((1, 1, 11, 11), 0.8, 0),  # duplicate of an already matched GT: FP cat
            ((50, 50, 60, 60), 0.7, 0),  # right box, wrong class: FP cat, GT dog stays FN
            ((20, 20, 30, 30), 0.3, 0),  # would be a TP but is below the score threshold
        ),
        _out(((0, 0, 3, 3), 0.9, 1)),  # FP dog
        _out(),
    ]
    r = _evaluate(records, outputs, score_threshold=0.5)
    assert (r["TP"], r["FP"], r["FN"]) == (1, 3, 3)
    assert r["precision"] == pytest.approx(25.0) and r["recall"] == pytest.approx(25.0)
    assert r["precision-cat"] == pytest.approx(100 / 3)
    assert r["recall-cat"] == pytest.approx(50.0)
    assert r["F1-cat"] == pytest.approx(40.0)
    assert (r["precision-dog"], r["recall-dog"], r["F1-dog"]) == (0.0, 0.0, 0.0)
    # Lowering the score threshold lets the low-scoring correct detection in: 2 TP, 2 FN.
    r = _evaluate(records, outputs, score_threshold=0.2)
    assert (r["TP"], r["FP"], r["FN"]) == (2, 3, 2)


def test_iou_threshold_is_inclusive_and_configurable():
    records = [_img("a", ((0, 0, 10, 10), 0, 0))]
    # IoU of (0,0,10,10) and (0,0,10,20) is 100 / 200 = 0.5 exactly.
    outputs = [_out(((0, 0, 10, 20), 0.9, 0))]
    r = _evaluate(records, outputs, iou_threshold=0.5)
    assert (r["TP"], r["FP"], r["FN"]) == (1, 0, 0)
    assert r["F1"] == pytest.approx(100.0)
    r = _evaluate(records, outputs, iou_threshold=0.51)
    assert (r["TP"], r["FP"], r["FN"]) == (0, 1, 1)


def test_empty_predictions_and_empty_dataset_give_zeros_not_nan():
    records = [_img(1, ((0, 0, 10, 10), 0, 0)), _img(2)]
    r = _evaluate(records, [_out(), _out()])
    assert (r["TP"], r["FP"], r["FN"]) == (0, 0, 1)
    assert (r["precision"], r["recall"], r["F1"]) == (0.0, 0.0, 0.0)
    r = _evaluate([_img(1)], [_out()])
    assert all(v == 0.0 for v in r.values())


def test_crowd_gt_absorbs_detections_without_counting():
    records = [_img(1, ((0, 0, 50, 50), 0, 1), ((60, 60, 70, 70), 0, 0))]
    outputs = [_out(((5, 5, 20, 20), 0.9, 0), ((60, 60, 70, 70), 0.8, 0))]
    r = _evaluate(records, outputs)
    assert (r["TP"], r["FP"], r["FN"]) == (1, 0, 0)


def test_factories_pick_evaluators_by_dataset_type(tmp_path):
    cfg = odedet.get_odedet_cfg()
    cfg.TEST.PRF1.SCORE_THRESHOLD = 0.25
    name = _register([_img(1)])
    evs = build_evaluators(cfg, name, str(tmp_path))._evaluators
    assert isinstance(evs[0], COCOEvaluator) and isinstance(evs[1], PRF1Evaluator)
    assert evs[1]._score == 0.25
    with pytest.raises(ValueError, match="TEST.PRF1.IOU_THRESHOLD"):
        PRF1Evaluator(name, iou_threshold=0.0)

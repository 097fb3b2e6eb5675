"""Precision / recall / F1 of a detector at one IoU threshold and one score threshold.

Detections scoring at least ``score_threshold`` are matched to ground truth with pycocotools'
own per-image matching (``COCOeval.evaluateImg``: greedy by descending score, each GT matched
at most once, IoU >= ``iou_threshold``, crowd GT absorbs detections without counting them).
A matched detection is a true positive, an unmatched one a false positive, an unmatched
non-crowd GT a false negative. Counts are summed over images, per class and overall (micro
average), so images without predictions or without GT contribute FN / FP and never NaN.
"""
from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import logging
import os

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

logger = logging.getLogger(__name__)

_NO_LIMIT = 10**9  # maxDets for COCOeval when every detection above the threshold counts


def _coco_from_annotations(image_ids, num_classes, anns) -> COCO:
    """An in-memory pycocotools COCO over images ``1..len(image_ids)`` and classes
    ``1..num_classes`` (contiguous class index + 1), holding ``anns`` (ids from 1)."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i} for i in image_ids],
        "categories": [{"id": c + 1} for c in range(num_classes)],
        "annotations": anns,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _box_ann(ann_id, image_idx, cls, box_xywh, **extra) -> dict:
    x, y, w, h = (float(v) for v in box_xywh)
    return {
        "id": ann_id, "image_id": image_idx, "category_id": int(cls) + 1,
        "bbox": [x, y, w, h], "area": w * h, **extra,
    }


class _DifficultAwareCOCOeval(COCOeval):
    """pycocotools' COCOeval, with GT annotations flagged ``difficult`` ignored like crowd ones:
    a detection matched to one is ``dtIgnore`` (neither TP nor FP) and it is never a FN.
    (pycocotools' ``_prepare`` overwrites any ``ignore`` field with ``iscrowd``.)"""

    def _prepare(self):
        super()._prepare()
        for gts in self._gts.values():
            for g in gts:
                g["ignore"] = int(bool(g["ignore"]) or bool(g.get("difficult", 0)))


def _ignore_extra_matches_on_difficult(coco_eval, iou_threshold):
    """VOC's rule for detections beyond the first on a difficult object: still ignored (COCO
    would count them as FP, a difficult GT being matchable once). Returns {(img, cat): mask of
    the image's detections to ignore}, detections in COCOeval's (score-sorted) order."""
    extra = {}
    for e in coco_eval.evalImgs:
        if e is None:
            continue
        key = (e["image_id"], e["category_id"])
        gts = coco_eval._gts[key]
        difficult = np.array([bool(g.get("difficult", 0)) for g in gts])
        ious = coco_eval.ious.get(key)
        if not difficult.any() or ious is None or len(ious) == 0:
            continue
        ious = np.asarray(ious)[: len(e["dtIds"])]
        near_difficult = (ious[:, difficult] >= iou_threshold).any(axis=1)
        unmatched = (e["dtMatches"][0] == 0) & ~e["dtIgnore"][0].astype(bool)
        extra[key] = near_difficult & unmatched
    return extra


def count_matches(gts, preds, num_classes, iou_threshold=0.5, max_dets_per_image=None):
    """TP, FP, FN per class (int arrays of length ``num_classes``).

    Args:
        gts: {image_id: list of (box XYWH_ABS, class index, iscrowd[, difficult])} for every
            evaluated image. Difficult objects (Pascal VOC's flag) count as VOC's AP counts
            them: a detection on one is neither a true nor a false positive, and a missed one
            is not a false negative.
        preds: list of {"image_id", "boxes" (D, 4) XYWH_ABS, "scores" (D,), "classes" (D,)},
            already filtered by score; images of ``gts`` missing here have no detections.
        iou_threshold: minimum IoU (inclusive) of a match.
        max_dets_per_image: keep only the top-scoring detections per image and class, as COCO
            does; None keeps all.
    """
    image_index = {img: i + 1 for i, img in enumerate(gts)}
    gt_anns = [
        _box_ann(0, image_index[img], obj[1], obj[0], iscrowd=int(obj[2]),
                 difficult=int(obj[3]) if len(obj) > 3 else 0)
        for img, objs in gts.items()
        for obj in objs
    ]
    dt_anns = []
    for p in preds:
        if p["image_id"] not in image_index:
            raise KeyError(f"prediction for image_id {p['image_id']!r} that has no ground truth")
        for box, score, cls in zip(p["boxes"], p["scores"], p["classes"]):
            dt_anns.append(_box_ann(0, image_index[p["image_id"]], cls, box, score=float(score),
                                    iscrowd=0))
    for k, ann in enumerate(itertools.chain(gt_anns, dt_anns)):
        ann["id"] = k + 1  # COCOeval uses id 0 for "unmatched": ids must start at 1
    ids = list(image_index.values())
    tp, fp, fn = (np.zeros(num_classes, dtype=np.int64) for _ in range(3))
    if not ids:
        return tp, fp, fn
    coco_eval = _DifficultAwareCOCOeval(
        _coco_from_annotations(ids, num_classes, gt_anns),
        _coco_from_annotations(ids, num_classes, dt_anns),
        "bbox",
    )
    p = coco_eval.params
    p.imgIds, p.catIds = ids, list(range(1, num_classes + 1))
    p.iouThrs = np.array([float(iou_threshold)])
    p.areaRng, p.areaRngLbl = [[0.0, 1e10]], ["all"]
    p.maxDets = [int(max_dets_per_image or _NO_LIMIT)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
    extra_ignored = _ignore_extra_matches_on_difficult(coco_eval, iou_threshold)
    for e in coco_eval.evalImgs:
        if e is None:  # neither GT nor detections of this class in this image
            continue
        c = e["category_id"] - 1
        dt_matched, dt_ignored = e["dtMatches"][0] > 0, e["dtIgnore"][0].astype(bool)
        key = (e["image_id"], e["category_id"])
        if key in extra_ignored:
            dt_ignored = dt_ignored | extra_ignored[key]
        gt_counted = np.asarray(e["gtIgnore"]) == 0
        tp[c] += int(np.sum(dt_matched & ~dt_ignored))
        fp[c] += int(np.sum(~dt_matched & ~dt_ignored))
        fn[c] += int(np.sum((e["gtMatches"][0] == 0) & gt_counted))
    return tp, fp, fn


def _ratio(a, b) -> float:
    return float(a) / float(b) if b > 0 else 0.0


def prf1_from_counts(tp, fp, fn, class_names) -> dict:
    """Precision, recall, F1 in percent (like detectron2's AP), overall (summed counts) and
    per class (``precision-<class>`` ...), plus the raw counts. Zero denominators give 0."""

    def scores(t, f_p, f_n):
        prec, rec = _ratio(t, t + f_p), _ratio(t, t + f_n)
        f1 = _ratio(2 * prec * rec, prec + rec)
        return 100.0 * prec, 100.0 * rec, 100.0 * f1

    prec, rec, f1 = scores(tp.sum(), fp.sum(), fn.sum())
    out = {"precision": prec, "recall": rec, "F1": f1,
           "TP": float(tp.sum()), "FP": float(fp.sum()), "FN": float(fn.sum())}
    for c, name in enumerate(class_names):
        prec, rec, f1 = scores(tp[c], fp[c], fn[c])
        out.update({f"precision-{name}": prec, f"recall-{name}": rec, f"F1-{name}": f1})
    return out


def gt_from_dataset_dicts(dataset_dicts) -> dict:
    """{image_id: [(box XYWH_ABS, class index, iscrowd, difficult), ...]} from detectron2 dataset
    dicts (``difficult``: Pascal VOC's flag, kept by odedet's VOC loader; 0 elsewhere)."""
    gts = {}
    for d in dataset_dicts:
        objs = []
        for ann in d.get("annotations", []):
            box = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYWH_ABS)
            objs.append((box, int(ann["category_id"]), int(ann.get("iscrowd", 0)),
                         int(ann.get("difficult", 0))))
        gts[d["image_id"]] = objs
    return gts


class PRF1Evaluator(DatasetEvaluator):
    """Precision / recall / F1 of ``instances`` outputs on a registered detection dataset.

    Ground truth comes from ``DatasetCatalog.get(dataset_name)`` (the same dicts training uses,
    for COCO-json and VOC datasets alike), restricted to the images actually evaluated. Results
    are under the "prf1" task: precision/recall/F1 in percent, TP/FP/FN counts, per class.
    Call from all ranks: predictions are gathered to the main process.
    """

    def __init__(self, dataset_name: str, *, iou_threshold: float = 0.5,
                 score_threshold: float = 0.5, max_dets_per_image: int | None = None,
                 distributed: bool = True, output_dir: str | None = None):
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"IoU threshold must be in (0, 1] (TEST.PRF1.IOU_THRESHOLD), "
                             f"got {iou_threshold}")
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score threshold must be in [0, 1] (TEST.PRF1.SCORE_THRESHOLD), "
                             f"got {score_threshold}")
        meta = MetadataCatalog.get(dataset_name)
        if not hasattr(meta, "thing_classes") and hasattr(meta, "json_file"):
            DatasetCatalog.get(dataset_name)  # load_coco_json sets thing_classes on first load
        if not hasattr(meta, "thing_classes"):
            raise KeyError(f"dataset {dataset_name!r} has no thing_classes in its metadata; "
                           "P/R/F1 needs the class list")
        self._dataset_name = dataset_name
        self._class_names = list(meta.thing_classes)
        self._iou, self._score = float(iou_threshold), float(score_threshold)
        self._max_dets = max_dets_per_image
        self._distributed, self._output_dir = distributed, output_dir
        self._cpu = torch.device("cpu")

    def reset(self):
        self._predictions = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            pred = {"image_id": inp["image_id"], "boxes": np.zeros((0, 4)),
                    "scores": np.zeros(0), "classes": np.zeros(0, dtype=np.int64)}
            if "instances" in out:
                inst = out["instances"].to(self._cpu)
                inst = inst[inst.scores >= self._score]
                boxes = inst.pred_boxes.tensor.numpy()
                pred["boxes"] = BoxMode.convert(boxes, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
                pred["scores"] = inst.scores.numpy()
                pred["classes"] = inst.pred_classes.numpy()
            self._predictions.append(pred)

    def evaluate(self):
        preds = self._predictions
        if self._distributed:
            comm.synchronize()
            preds = list(itertools.chain(*comm.gather(preds, dst=0)))
            if not comm.is_main_process():
                return {}
        all_gts = gt_from_dataset_dicts(DatasetCatalog.get(self._dataset_name))
        missing = [p["image_id"] for p in preds if p["image_id"] not in all_gts]
        if missing:
            raise KeyError(f"image ids {missing[:5]} are not in dataset {self._dataset_name!r}")
        gts = {p["image_id"]: all_gts[p["image_id"]] for p in preds}
        counts = count_matches(gts, preds, len(self._class_names), self._iou, self._max_dets)
        results = prf1_from_counts(*counts, self._class_names)
        self._log(results)
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            path = os.path.join(self._output_dir, "prf1_results.json")
            with PathManager.open(path, "w") as f:
                json.dump({"iou_threshold": self._iou, "score_threshold": self._score,
                           "results": results}, f, indent=1)
        return {"prf1": copy.deepcopy(results)}

    def _log(self, results):
        overall = {k: results[k] for k in ("precision", "recall", "F1", "TP", "FP", "FN")}
        logger.info(
            f"P/R/F1 on {self._dataset_name} at IoU>={self._iou:g}, score>={self._score:g}:\n"
            + create_small_table(overall)
        )

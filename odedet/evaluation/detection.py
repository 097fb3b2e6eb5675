"""Detection evaluators by dataset type: COCO AP or Pascal VOC AP, each with P/R/F1.

Registered for the ``evaluator_type`` values detectron2's builtin datasets declare ("coco" for
COCO and any COCO-json dataset, "pascal_voc" for VOC), so ``Trainer.build_evaluator`` picks
them from the dataset alone.
"""
from __future__ import annotations

from detectron2.config import CfgNode as CN
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

from .build import register_evaluator_factory
from .prf1 import PRF1Evaluator


def add_detection_eval_config(cfg):
    """TEST.PRF1: the precision / recall / F1 evaluator run beside COCO / VOC AP."""
    _C = cfg
    _C.TEST.PRF1 = CN()
    # A detection is a true positive when its IoU with an unmatched GT box of its class is at
    # least this (inclusive), matched greedily by descending score as in COCO.
    _C.TEST.PRF1.IOU_THRESHOLD = 0.5
    # Only detections scoring at least this are counted (the operating point of the detector).
    _C.TEST.PRF1.SCORE_THRESHOLD = 0.5


def build_prf1_evaluator(cfg, dataset_name, output_dir):
    return PRF1Evaluator(
        dataset_name,
        iou_threshold=cfg.TEST.PRF1.IOU_THRESHOLD,
        score_threshold=cfg.TEST.PRF1.SCORE_THRESHOLD,
        max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
        output_dir=output_dir,
    )


class ZeroSafeCOCOEvaluator(COCOEvaluator):
    """detectron2's COCOEvaluator, except that a model detecting nothing scores 0 AP, not NaN:
    detectron2 v0.6 skips pycocotools on an empty result list and fills every metric with NaN,
    which reads as a crash in logs, metrics.json and EXPECTED_RESULTS checks."""

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names)
        if coco_eval is None:
            self._logger.warning("No detections at all: every COCO AP metric is reported as 0")
            results = {k: 0.0 for k in results}
            results.update({f"AP-{name}": 0.0 for name in class_names or []})
        return results


@register_evaluator_factory("coco")
def coco_detection_evaluators(cfg, dataset_name, output_dir):
    """COCO box AP (pycocotools; writes coco_instances_results.json) + P/R/F1."""
    return [
        ZeroSafeCOCOEvaluator(
            dataset_name,
            tasks=("bbox",),
            output_dir=output_dir,
            max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
        ),
        build_prf1_evaluator(cfg, dataset_name, output_dir),
    ]


@register_evaluator_factory("pascal_voc")
def voc_detection_evaluators(cfg, dataset_name, output_dir):
    """Pascal VOC AP/AP50/AP75 (detectron2's VOC evaluator, 11-point for 2007) + P/R/F1."""
    return [
        PascalVOCDetectionEvaluator(dataset_name),
        build_prf1_evaluator(cfg, dataset_name, output_dir),
    ]

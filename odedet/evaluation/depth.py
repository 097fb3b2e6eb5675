"""Depth evaluation: the standard monocular-depth metrics (Eigen et al. 2014) as a detectron2
DatasetEvaluator, registered for datasets whose metadata says ``evaluator_type="depth"``."""
from __future__ import annotations

import copy
import itertools
import logging
from collections import OrderedDict

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from .build import register_evaluator_factory

logger = logging.getLogger(__name__)

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "a1", "a2", "a3")


def _crop_box(name: str, height: int, width: int):
    """(y0, y1, x0, x1) of a named evaluation crop for an image of this size."""
    if name == "eigen_nyu":  # Eigen et al. 2014, defined on NYU's 480x640 images
        return (round(45 / 480 * height), round(471 / 480 * height),
                round(41 / 640 * width), round(601 / 640 * width))
    if name == "garg":  # Garg et al. 2016, KITTI (fractions of the image size)
        return (int(0.40810811 * height), int(0.99189189 * height),
                int(0.03594771 * width), int(0.96405229 * width))
    if name == "eigen_kitti":
        return (int(0.3324324 * height), int(0.91351351 * height),
                int(0.0359477 * width), int(0.96405229 * width))
    if name in ("none", "", None):
        return (0, height, 0, width)
    raise ValueError(f"Unknown depth eval crop {name!r} (TEST.DEPTH.CROP or the dataset's "
                     f"eval_crop): use 'none', 'eigen_nyu', 'garg' or 'eigen_kitti'")


def eval_mask(gt: np.ndarray, min_depth: float, max_depth: float, crop: str = "none"):
    """Pixels that count: finite ground truth in (min_depth, max_depth], inside the crop."""
    valid = np.isfinite(gt) & (gt > min_depth) & (gt <= max_depth)
    y0, y1, x0, x1 = _crop_box(crop, *gt.shape)
    in_crop = np.zeros_like(valid)
    in_crop[y0:y1, x0:x1] = True
    return valid & in_crop


def compute_depth_metrics(pred: np.ndarray, gt: np.ndarray) -> dict:
    """The standard metrics over matching 1-D arrays of positive depths (metres):
    AbsRel = mean|p-g|/g, SqRel = mean (p-g)^2/g, RMSE, RMSE(log) (natural log), log10 =
    mean|log10 p - log10 g|, and a_k = fraction with max(p/g, g/p) < 1.25^k."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.size == 0:
        raise ValueError(f"need equal non-empty arrays, got {pred.shape} and {gt.shape}")
    ratio = np.maximum(pred / gt, gt / pred)
    diff = pred - gt
    return {
        "abs_rel": float(np.mean(np.abs(diff) / gt)),
        "sq_rel": float(np.mean(diff**2 / gt)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(pred) - np.log(gt)) ** 2))),
        "log10": float(np.mean(np.abs(np.log10(pred) - np.log10(gt)))),
        "a1": float(np.mean(ratio < 1.25)),
        "a2": float(np.mean(ratio < 1.25**2)),
        "a3": float(np.mean(ratio < 1.25**3)),
    }


def evaluate_depth_image(pred, gt, *, min_depth, max_depth, crop="none", median_scaling=False):
    """Metrics of one image ((H, W) arrays, same size), or None if no pixel is valid.
    Predictions are clipped to [min_depth, max_depth] after optional median scaling, as in the
    standard evaluation code (Eigen; Monodepth)."""
    mask = eval_mask(gt, min_depth, max_depth, crop)
    if not mask.any():
        return None
    p, g = pred[mask].astype(np.float64), gt[mask].astype(np.float64)
    if median_scaling:
        p = p * (np.median(g) / max(np.median(p), 1e-12))
    return compute_depth_metrics(np.clip(p, min_depth, max_depth), g)


class DepthEvaluator(DatasetEvaluator):
    """Per-image metrics averaged over the dataset (the standard protocol). Ground truth comes
    from the inputs' "depth" (the depth mapper keeps it at the original resolution); predictions
    are ``outputs[i]["depth"]``, resized to the ground truth's size if they differ.

    Results: ``OrderedDict(depth={"AbsRel", "SqRel", "RMSE", "RMSE_log", "log10", "delta1",
    "delta2", "delta3", "num_images"})``.
    """

    def __init__(self, dataset_name: str, *, min_depth=None, max_depth=None, crop=None,
                 median_scaling: bool = False, distributed: bool = True):
        meta = MetadataCatalog.get(dataset_name)
        self.dataset_name = dataset_name
        self.min_depth = meta.get("min_depth", 1e-3) if min_depth is None else min_depth
        self.max_depth = meta.get("max_depth", 10.0) if max_depth is None else max_depth
        self.crop = (crop or meta.get("eval_crop", "none"))
        _crop_box(self.crop, 1, 1)  # validate early
        self.median_scaling = median_scaling
        self._distributed = distributed
        self._cpu = torch.device("cpu")

    def reset(self):
        self._per_image = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            if "depth" not in inp:
                raise KeyError(f"{inp.get('file_name')}: no ground-truth 'depth' in the input; "
                               "evaluate with the depth mapper (MODEL.META_ARCHITECTURE "
                               "DepthEstimator)")
            gt = inp["depth"].to(self._cpu).numpy()
            pred = out["depth"].detach().to(self._cpu, torch.float32)
            if tuple(pred.shape) != gt.shape:
                pred = torch.nn.functional.interpolate(
                    pred[None, None], size=gt.shape, mode="bilinear", align_corners=False)[0, 0]
            m = evaluate_depth_image(pred.numpy(), gt, min_depth=self.min_depth,
                                     max_depth=self.max_depth, crop=self.crop,
                                     median_scaling=self.median_scaling)
            if m is not None:
                self._per_image.append(m)

    def evaluate(self):
        per_image = self._per_image
        if self._distributed:
            comm.synchronize()
            per_image = list(itertools.chain(*comm.gather(per_image, dst=0)))
            if not comm.is_main_process():
                return {}
        if not per_image:
            logger.warning(f"[DepthEvaluator] no image of {self.dataset_name} had valid depth")
            return {}
        mean = {k: float(np.mean([m[k] for m in per_image])) for k in METRIC_NAMES}
        names = dict(abs_rel="AbsRel", sq_rel="SqRel", rmse="RMSE", rmse_log="RMSE_log",
                     log10="log10", a1="delta1", a2="delta2", a3="delta3")
        res = {names[k]: v for k, v in mean.items()}
        res["num_images"] = len(per_image)
        logger.info(f"Depth evaluation on {self.dataset_name} ({len(per_image)} images, crop "
                    f"{self.crop}, median scaling {self.median_scaling}): " +
                    ", ".join(f"{k} {v:.4f}" for k, v in res.items() if k != "num_images"))
        return OrderedDict(depth=copy.deepcopy(res))


@register_evaluator_factory("depth")
def build_depth_evaluators(cfg, dataset_name, output_dir):
    """The depth evaluator with TEST.DEPTH.* (median scaling, crop override)."""
    return [DepthEvaluator(dataset_name, crop=cfg.TEST.DEPTH.CROP or None,
                           median_scaling=cfg.TEST.DEPTH.MEDIAN_SCALING)]

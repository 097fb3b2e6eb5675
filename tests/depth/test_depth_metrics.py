"""Depth metrics and the evaluator's masking, crops and median scaling, against hand values."""
import math

import numpy as np
import pytest

from odedet.evaluation.depth import compute_depth_metrics, eval_mask, evaluate_depth_image


def test_metrics_match_hand_computed_values():
    gt = np.array([1.0, 2.0, 4.0])
    pred = np.array([1.0, 3.0, 2.0])
    m = compute_depth_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert m["sq_rel"] == pytest.approx((0 + 1 / 2 + 4 / 4) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 1 + 4) / 3))
    assert m["rmse_log"] == pytest.approx(math.sqrt((0 + math.log(1.5) ** 2 + math.log(2) ** 2) / 3))
    assert m["log10"] == pytest.approx((0 + math.log10(1.5) + math.log10(2)) / 3)
    # ratios max(p/g, g/p) = 1, 1.5, 2 -> thresholds 1.25, 1.5625, 1.953125
    assert (m["a1"], m["a2"], m["a3"]) == pytest.approx((1 / 3, 2 / 3, 2 / 3))


def test_perfect_prediction_scores_perfectly():
    gt = np.array([0.5, 3.0, 9.0])
    m = compute_depth_metrics(gt.copy(), gt)
    assert m["abs_rel"] == 0 and m["rmse"] == 0 and m["a1"] == 1


def test_mask_drops_invalid_and_out_of_range_and_crop():
    gt = np.full((480, 640), 2.0)
    gt[0, 0] = 0.0
    gt[100, 100] = 50.0
    mask = eval_mask(gt, 1e-3, 10.0)
    assert not mask[0, 0] and not mask[100, 100] and mask.sum() == gt.size - 2
    crop = eval_mask(gt, 1e-3, 10.0, "eigen_nyu")
    assert crop.sum() == (471 - 45) * (601 - 41) - 1  # (100, 100) is inside the crop
    assert not crop[44, 300] and crop[45, 300] and not crop[300, 601]
    with pytest.raises(ValueError, match="eval crop 'bogus'"):
        eval_mask(gt, 1e-3, 10.0, "bogus")


def test_median_scaling_and_clipping():
    gt = np.array([[1.0, 2.0], [3.0, 0.0]])
    pred = gt * 3  # right up to scale
    plain = evaluate_depth_image(pred, gt, min_depth=1e-3, max_depth=10.0)
    scaled = evaluate_depth_image(pred, gt, min_depth=1e-3, max_depth=10.0, median_scaling=True)
    assert plain["abs_rel"] == pytest.approx(2.0)
    assert scaled["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    clipped = evaluate_depth_image(gt * 100, gt, min_depth=1e-3, max_depth=10.0)
    assert clipped["rmse"] == pytest.approx(math.sqrt((81 + 64 + 49) / 3))
    assert evaluate_depth_image(pred, np.zeros((2, 2)), min_depth=1e-3, max_depth=10.0) is None

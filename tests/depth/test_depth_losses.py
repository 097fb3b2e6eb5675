"""Depth losses: values against hand computations, and invalid pixels never counting."""
import math

import pytest
import torch

from odedet.modeling.depth.losses import (
    berhu_loss, depth_loss, l1_loss, silog_loss, valid_depth_mask,
)


def _pair():
    target = torch.tensor([[[1.0, 2.0], [4.0, 0.0]]])  # 0 = unknown
    pred = torch.tensor([[[2.0, 2.0], [1.0, 7.0]]])
    return pred, target, valid_depth_mask(target, 1e-3, 10.0)


def test_valid_mask_range():
    t = torch.tensor([0.0, 0.5, 10.0, 10.5, float("nan")])
    assert valid_depth_mask(t, 1e-3, 10.0).tolist() == [False, True, True, False, False]


def test_silog_hand_value_and_scale_invariance():
    pred, target, valid = _pair()
    d = [math.log(2), 0.0, math.log(1 / 4)]
    want = sum(x * x for x in d) / 3 - 0.5 * (sum(d) / 3) ** 2
    assert silog_loss(pred, target, valid, lam=0.5).item() == pytest.approx(want, rel=1e-5)
    # lambda = 1 ignores a global scale of the prediction
    a = silog_loss(pred, target, valid, lam=1.0)
    b = silog_loss(pred * 3, target, valid, lam=1.0)
    assert a.item() == pytest.approx(b.item(), rel=1e-4)


def test_l1_and_berhu_hand_values():
    pred, target, valid = _pair()
    assert l1_loss(pred, target, valid).item() == pytest.approx((1 + 0 + 3) / 3)
    # c = 0.2 * 3 = 0.6: |1| -> (1 + 0.36) / 1.2, 0 -> 0, |3| -> (9 + 0.36) / 1.2
    want = ((1 + 0.36) / 1.2 + 0 + (9 + 0.36) / 1.2) / 3
    assert berhu_loss(pred, target, valid, threshold=0.2).item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("kind", ["silog", "l1", "berhu"])
def test_invalid_pixels_do_not_count(kind):
    pred, target, valid = _pair()
    base = depth_loss(kind, pred, target, valid)
    pred2 = pred.clone()
    pred2[0, 1, 1] = 0.01  # the unknown pixel: any prediction there changes nothing
    assert depth_loss(kind, pred2, target, valid).item() == pytest.approx(base.item())
    p = pred.clone().requires_grad_(True)
    depth_loss(kind, p, target, valid).backward()
    assert p.grad[0, 1, 1] == 0 and p.grad[0, 0, 0] != 0


def test_no_valid_pixel_gives_zero_with_graph_and_unknown_kind_errors():
    p = torch.ones(1, 2, 2, requires_grad=True)
    loss = depth_loss("silog", p, torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))
    assert loss.item() == 0 and loss.requires_grad
    with pytest.raises(ValueError, match="MODEL.DEPTH.LOSS_TYPE"):
        depth_loss("l3", p, p, p > 0)

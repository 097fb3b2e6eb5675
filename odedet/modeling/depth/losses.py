"""Depth losses on valid pixels: scale-invariant log (Eigen et al. 2014), L1, berHu (Laina 2016).

All take ``pred`` and ``target`` of the same shape (N, H, W) in metres and a boolean ``valid``
mask of that shape; invalid pixels (no ground truth, or out of range) never contribute.
"""
from __future__ import annotations

import torch

LOSS_TYPES = ("silog", "l1", "berhu")


def valid_depth_mask(target: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Pixels with usable ground truth: finite and in (min_depth, max_depth]. 0 marks missing
    depth in every supported format, so it is always invalid."""
    return torch.isfinite(target) & (target > max(min_depth, 0.0)) & (target <= max_depth)


def _empty(pred: torch.Tensor) -> torch.Tensor:
    # No valid pixel in the batch: a zero that keeps the graph (DDP needs every parameter used).
    return pred.sum() * 0.0


def silog_loss(pred, target, valid, lam: float = 0.5, eps: float = 1e-6) -> torch.Tensor:
    """Eigen et al. 2014, eq. 4, per image then averaged over the batch:
    D = mean(d^2) - lam * mean(d)^2 with d = log(pred) - log(target) over valid pixels."""
    if not valid.any():
        return _empty(pred)
    d = torch.log(pred.clamp(min=eps)) - torch.log(target.clamp(min=eps))
    d = torch.where(valid, d, torch.zeros_like(d))
    n = valid.flatten(1).sum(1)
    has = n > 0
    n = n.clamp(min=1).to(d.dtype)
    mean_sq = (d**2).flatten(1).sum(1) / n
    mean = d.flatten(1).sum(1) / n
    per_image = mean_sq - lam * mean**2
    return per_image[has].mean()


def l1_loss(pred, target, valid) -> torch.Tensor:
    """Mean absolute error (metres) over valid pixels of the batch."""
    if not valid.any():
        return _empty(pred)
    return (pred[valid] - target[valid]).abs().mean()


def berhu_loss(pred, target, valid, threshold: float = 0.2) -> torch.Tensor:
    """Reverse Huber (Laina et al. 2016): |x| for |x| <= c, (x^2 + c^2) / (2c) above, with
    c = threshold * max|x| over the batch's valid pixels (c is not differentiated)."""
    if not valid.any():
        return _empty(pred)
    x = (pred[valid] - target[valid]).abs()
    c = (threshold * x.max()).detach().clamp(min=1e-6)
    return torch.where(x <= c, x, (x**2 + c**2) / (2 * c)).mean()


def depth_loss(kind: str, pred, target, valid, *, si_lambda=0.5, berhu_threshold=0.2):
    """Dispatch by name (MODEL.DEPTH.LOSS_TYPE)."""
    if kind == "silog":
        return silog_loss(pred, target, valid, lam=si_lambda)
    if kind == "l1":
        return l1_loss(pred, target, valid)
    if kind == "berhu":
        return berhu_loss(pred, target, valid, threshold=berhu_threshold)
    raise ValueError(f"Unknown depth loss {kind!r} (MODEL.DEPTH.LOSS_TYPE); use one of {LOSS_TYPES}")

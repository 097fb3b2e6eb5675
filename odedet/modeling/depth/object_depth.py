"""Per-object depth: a robust statistic of a depth map inside each detection's mask or box."""
from __future__ import annotations

import torch


def _central_box_mask(box, height: int, width: int, fraction: float) -> torch.Tensor:
    """(H, W) bool mask of the box shrunk about its centre to ``fraction`` of its width/height;
    the centre avoids the background that fills a box's corners and edges."""
    x0, y0, x1, y1 = [float(v) for v in box]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = (x1 - x0) * fraction / 2, (y1 - y0) * fraction / 2
    xa, xb = int(max(0, round(cx - hw))), int(min(width, max(round(cx + hw), round(cx - hw) + 1)))
    ya, yb = int(max(0, round(cy - hh))), int(min(height, max(round(cy + hh), round(cy - hh) + 1)))
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[ya:yb, xa:xb] = True
    return mask


def object_depths(
    instances, depth: torch.Tensor, *, box_fraction: float = 0.5, min_depth: float = 0.0,
    max_depth: float = float("inf"),
) -> torch.Tensor:
    """Depth of each detected object, in the depth map's unit (metres).

    Args:
        instances: detectron2 ``Instances`` with ``pred_boxes`` (XYXY, pixels of the depth map's
            image) and optionally ``pred_masks`` ((N, H, W) bool/float at the same size).
        depth: (H, W) depth map of the same image.
        box_fraction: without masks, the central part of each box used (0 < f <= 1).
        min_depth, max_depth: pixels outside (min_depth, max_depth] are ignored.

    Returns:
        (N,) float tensor: the median of the valid depths inside each object's mask (or central
        box region); NaN for an object with no valid pixel.
    """
    if depth.dim() != 2:
        raise ValueError(f"depth must be (H, W), got shape {tuple(depth.shape)}")
    if not 0 < box_fraction <= 1:
        raise ValueError(f"box_fraction must be in (0, 1], got {box_fraction}")
    depth = depth.detach().float().cpu()
    height, width = depth.shape
    valid = torch.isfinite(depth) & (depth > min_depth) & (depth <= max_depth)
    masks = None
    if instances.has("pred_masks"):
        masks = instances.pred_masks.detach().cpu() > 0.5
        if tuple(masks.shape[-2:]) != (height, width):
            raise ValueError(
                f"pred_masks are {tuple(masks.shape[-2:])} but the depth map is {(height, width)}"
            )
    boxes = instances.pred_boxes.tensor.detach().cpu()
    out = torch.full((len(instances),), float("nan"))
    for i in range(len(instances)):
        region = masks[i] if masks is not None else _central_box_mask(
            boxes[i], height, width, box_fraction
        )
        values = depth[region & valid]
        if values.numel():
            out[i] = values.quantile(0.5)
    return out

"""Depth figures: input | prediction | ground truth with a shared colour map and colour bar,
and per-object depth labels drawn with detectron2's Visualizer."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .object_depth import object_depths


def depth_figure(
    image_rgb: np.ndarray, pred: np.ndarray, gt: Optional[np.ndarray] = None, *,
    max_depth: Optional[float] = None, cmap: str = "magma_r", title: str = "",
):
    """A matplotlib Figure: the RGB image (H, W, 3 uint8), the predicted depth and (if given)
    the ground truth (H, W metres, 0 = unknown, shown blank), same colour scale, one colour bar
    in metres. ``max_depth`` fixes the scale's top (default: the larger map's maximum)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    pred = np.asarray(pred, np.float32)
    panels = [("input", image_rgb), ("prediction", pred)]
    if gt is not None:
        gt = np.asarray(gt, np.float32)
        panels.append(("ground truth", np.ma.masked_where(~(gt > 0), gt)))
    vmax = max_depth or float(max(pred.max(), gt.max() if gt is not None else 0))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 0.8, 3.0))
    im = None
    for ax, (name, data) in zip(axes, panels):
        if name == "input":
            ax.imshow(data)
        else:
            im = ax.imshow(data, cmap=cmap, vmin=0.0, vmax=vmax)
        ax.set_title(name)
        ax.axis("off")
    fig.colorbar(im, ax=list(axes), fraction=0.025, pad=0.02, label="depth (m)")
    if title:
        fig.suptitle(title)
    return fig


def save_depth_figure(path: str, *args, **kwargs) -> str:
    """:func:`depth_figure` written to ``path`` (PNG); returns the path."""
    import matplotlib.pyplot as plt

    fig = depth_figure(*args, **kwargs)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def object_depth_labels(instances, depths: torch.Tensor, class_names: Optional[Sequence] = None):
    """Labels like "car 0.93 | 3.4 m" (class, score, depth; "? m" when unknown)."""
    labels = []
    classes = instances.pred_classes.tolist() if instances.has("pred_classes") else None
    scores = instances.scores.tolist() if instances.has("scores") else None
    for i, d in enumerate(depths.tolist()):
        parts = []
        if classes is not None:
            c = classes[i]
            parts.append(class_names[c] if class_names and c < len(class_names) else str(c))
        if scores is not None:
            parts.append(f"{scores[i]:.2f}")
        text = " ".join(parts)
        dist = "? m" if not np.isfinite(d) else f"{d:.1f} m"
        labels.append(f"{text} | {dist}" if text else dist)
    return labels


def draw_object_depths(image_rgb: np.ndarray, instances, depth, metadata=None, **kwargs):
    """The image with each detection's box (and mask), labelled "class score | depth m".
    ``depth`` is the (H, W) map of the same image; kwargs go to :func:`object_depths`.
    Returns (RGB uint8 image, per-object depths tensor)."""
    from detectron2.utils.visualizer import Visualizer

    depth = torch.as_tensor(depth)
    depths = object_depths(instances, depth, **kwargs)
    names = getattr(metadata, "thing_classes", None) if metadata is not None else None
    vis = Visualizer(image_rgb, metadata)
    masks = instances.pred_masks.cpu().numpy() if instances.has("pred_masks") else None
    out = vis.overlay_instances(
        boxes=instances.pred_boxes.tensor.cpu().numpy(), masks=masks,
        labels=object_depth_labels(instances, depths, names),
    )
    return out.get_image(), depths

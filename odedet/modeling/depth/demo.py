"""The demo's depth renderer (tools/demo.py, MODEL.META_ARCHITECTURE DepthEstimator): the input
beside its predicted depth, colour-mapped with a colour bar in metres. Importing this module
registers it in ``odedet.engine.demo.RENDERERS`` (kept out of the package import so that model
code does not depend on the engine)."""
from __future__ import annotations

import numpy as np

from odedet.engine.demo import RENDERERS, register_renderer


def figure_to_rgb(fig) -> np.ndarray:
    """A matplotlib figure rendered to an (H, W, 3) uint8 RGB array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()


def render_depth(image_rgb, outputs, metadata, threshold=None) -> np.ndarray:
    """Input | predicted depth (scale 0 .. the dataset's max_depth, else the map's maximum)."""
    import matplotlib.pyplot as plt

    from .visualize import depth_figure

    depth = outputs["depth"].detach().cpu().numpy()
    max_depth = getattr(metadata, "max_depth", None) if metadata is not None else None
    fig = depth_figure(image_rgb, depth, None, max_depth=max_depth)
    try:
        return figure_to_rgb(fig)
    finally:
        plt.close(fig)


if "DepthEstimator" not in RENDERERS:
    register_renderer("DepthEstimator")(render_depth)

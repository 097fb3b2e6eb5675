"""Monocular depth estimation: DepthEstimator meta-architecture, depth heads, losses, per-object
depth. Importing this package registers them."""
from .config import add_depth_config
from .head import DEPTH_HEAD_REGISTRY, DepthDecoderHead, build_depth_head
from .losses import berhu_loss, depth_loss, l1_loss, silog_loss, valid_depth_mask
from .meta_arch import DepthEstimator, depth_postprocess
from .object_depth import object_depths

__all__ = [
    "add_depth_config", "DEPTH_HEAD_REGISTRY", "DepthDecoderHead", "build_depth_head",
    "berhu_loss", "depth_loss", "l1_loss", "silog_loss", "valid_depth_mask", "DepthEstimator",
    "depth_postprocess", "object_depths",
]

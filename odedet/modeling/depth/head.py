"""Depth heads: decode a backbone's multi-scale features to a dense depth map in metres."""
from __future__ import annotations

from typing import Dict, List, Optional

import fvcore.nn.weight_init as weight_init
import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.utils.registry import Registry
from torch import nn
from torch.nn import functional as F

from odedet.ode import make_norm

from .losses import LOSS_TYPES, depth_loss, valid_depth_mask

DEPTH_HEAD_REGISTRY = Registry("DEPTH_HEAD")
DEPTH_HEAD_REGISTRY.__doc__ = """
Registry for depth heads: ``head(features, image_size, targets)`` -> (depth (N, H, W) in metres,
dict of losses). Built by ``build_depth_head(cfg, backbone.output_shape())``.
"""


def build_depth_head(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """The head named by ``cfg.MODEL.DEPTH.HEAD_NAME``."""
    return DEPTH_HEAD_REGISTRY.get(cfg.MODEL.DEPTH.HEAD_NAME)(cfg, input_shape)


def _norm(norm: str, channels: int):
    """detectron2's norm by name, except "GN", whose 32 groups are clipped to a divisor of
    ``channels`` so that narrow layers (16, 48 channels) work."""
    if norm == "GN":
        return make_norm("GN", channels, 32)
    return get_norm(norm, channels)


def _conv(in_ch: int, out_ch: int, norm: str) -> Conv2d:
    conv = Conv2d(
        in_ch, out_ch, kernel_size=3, padding=1, bias=not norm,
        norm=_norm(norm, out_ch), activation=F.relu,
    )
    weight_init.c2_msra_fill(conv)
    return conv


@DEPTH_HEAD_REGISTRY.register()
class DepthDecoderHead(nn.Module):
    """U-Net style decoder: start at the coarsest feature, then for each finer feature upsample
    x2 (bilinear, to the skip's exact size), concatenate the skip, and apply two 3x3 convs; a
    last stage upsamples to the input resolution. Output: MIN + (MAX - MIN) * sigmoid(logit),
    so depth is bounded to the configured range.
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        conv_dims: int,
        norm: str = "GN",
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        loss_type: str = "silog",
        si_lambda: float = 0.5,
        berhu_threshold: float = 0.2,
        loss_weight: float = 1.0,
    ):
        """
        Args:
            input_shape: the features to decode (name -> ShapeSpec with channels and stride).
            conv_dims: channels of every decoder stage.
            min_depth, max_depth: output range in metres; also the valid range of targets.
            loss_type, si_lambda, berhu_threshold, loss_weight: see MODEL.DEPTH.* keys.
        """
        super().__init__()
        if not 0 <= min_depth < max_depth:
            raise ValueError(
                f"need 0 <= MODEL.DEPTH.MIN_DEPTH < MODEL.DEPTH.MAX_DEPTH, got {min_depth}, "
                f"{max_depth}"
            )
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"MODEL.DEPTH.LOSS_TYPE must be one of {LOSS_TYPES}, got {loss_type!r}")
        items = sorted(input_shape.items(), key=lambda kv: kv[1].stride)  # fine -> coarse
        self.in_features = [k for k, _ in items]
        channels = [v.channels for _, v in items]
        self.top = _conv(channels[-1], conv_dims, norm)
        # Stage i fuses the running decoder state with the i-th finest skip (coarse to fine).
        self.fuse = nn.ModuleList(
            nn.Sequential(_conv(conv_dims + c, conv_dims, norm), _conv(conv_dims, conv_dims, norm))
            for c in channels[-2::-1]
        )
        half = max(conv_dims // 2, 8)
        self.refine = nn.Sequential(_conv(conv_dims, half, norm), _conv(half, half, norm))
        self.predictor = nn.Conv2d(half, 1, kernel_size=3, padding=1)
        nn.init.normal_(self.predictor.weight, std=1e-3)
        nn.init.constant_(self.predictor.bias, 0.0)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.loss_type, self.si_lambda = loss_type, si_lambda
        self.berhu_threshold, self.loss_weight = berhu_threshold, loss_weight

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        d = cfg.MODEL.DEPTH
        missing = [f for f in d.IN_FEATURES if f not in input_shape]
        if missing or not d.IN_FEATURES:
            raise KeyError(
                f"MODEL.DEPTH.IN_FEATURES {list(d.IN_FEATURES)} must be a non-empty subset of "
                f"the backbone's outputs {sorted(input_shape)} (MODEL.BACKBONE.NAME "
                f"{cfg.MODEL.BACKBONE.NAME}); missing: {missing}"
            )
        return {
            "input_shape": {k: input_shape[k] for k in d.IN_FEATURES},
            "conv_dims": d.CONVS_DIM, "norm": d.NORM,
            "min_depth": d.MIN_DEPTH, "max_depth": d.MAX_DEPTH,
            "loss_type": d.LOSS_TYPE, "si_lambda": d.SI_LAMBDA,
            "berhu_threshold": d.BERHU_THRESHOLD, "loss_weight": d.LOSS_WEIGHT,
        }

    def layers(self, features: Dict[str, torch.Tensor], image_size) -> torch.Tensor:
        """Features -> depth (N, H, W) in metres at ``image_size`` (the padded input size)."""
        x = self.top(features[self.in_features[-1]])
        for fuse, name in zip(self.fuse, self.in_features[-2::-1]):
            skip = features[name]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x, skip], dim=1))
        x = F.interpolate(x, size=tuple(image_size), mode="bilinear", align_corners=False)
        logit = self.predictor(self.refine(x))[:, 0]
        return self.min_depth + (self.max_depth - self.min_depth) * torch.sigmoid(logit)

    def forward(self, features, image_size, targets: Optional[torch.Tensor] = None):
        """Returns (depth (N, H, W), losses); losses are {} unless training with targets."""
        depth = self.layers(features, image_size)
        if self.training and targets is not None:
            return depth, self.losses(depth, targets)
        return depth, {}

    def losses(self, depth: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        valid = valid_depth_mask(targets, self.min_depth, self.max_depth)
        loss = depth_loss(
            self.loss_type, depth, targets, valid,
            si_lambda=self.si_lambda, berhu_threshold=self.berhu_threshold,
        )
        return {f"loss_depth_{self.loss_type}": loss * self.loss_weight}


__all__: List[str] = ["DEPTH_HEAD_REGISTRY", "DepthDecoderHead", "build_depth_head"]

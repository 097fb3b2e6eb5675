"""DepthEstimator: monocular depth as a detectron2 meta-architecture (cf. SemanticSegmentor)."""
from __future__ import annotations

from typing import List, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import ImageList
from torch import nn
from torch.nn import functional as F

from .head import build_depth_head


@META_ARCH_REGISTRY.register()
class DepthEstimator(nn.Module):
    """Any registered backbone as encoder + a depth head (DEPTH_HEAD_REGISTRY).

    Inputs: a list of dicts from the depth mapper, each with "image" (C, H, W, the model's input
    format, 0-255), optionally "depth" (H, W) metres with 0 = unknown (used in training), and
    "height"/"width" (the size to return predictions at).
    Training returns a dict of losses; eval returns ``[{"depth": (height, width) tensor}]``.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        depth_head: nn.Module,
        pixel_mean: Tuple[float],
        pixel_std: Tuple[float],
    ):
        super().__init__()
        self.backbone = backbone
        self.depth_head = depth_head
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "depth_head": build_depth_head(cfg, backbone.output_shape()),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def forward(self, batched_inputs: List[dict]):
        images = [x["image"].to(self.device) for x in batched_inputs]
        images = [(x - self.pixel_mean) / self.pixel_std for x in images]
        # Pad to the backbone's size divisibility and at least to its coarsest stride multiple,
        # so every stride divides the input (the decoder's skips then align exactly).
        divisor = max(self.backbone.size_divisibility, _max_stride(self.backbone))
        images = ImageList.from_tensors(images, divisor)
        features = self.backbone(images.tensor)
        image_size = images.tensor.shape[-2:]

        targets = None
        if self.training:
            if "depth" not in batched_inputs[0]:
                raise KeyError("DepthEstimator in training mode needs 'depth' in every input")
            targets = [x["depth"].to(self.device) for x in batched_inputs]
            targets = ImageList.from_tensors(targets, divisor, pad_value=0.0).tensor
        depth, losses = self.depth_head(features, image_size, targets)
        if self.training:
            return losses

        results = []
        for pred, inp, size in zip(depth, batched_inputs, images.image_sizes):
            height = inp.get("height", size[0])
            width = inp.get("width", size[1])
            results.append({"depth": depth_postprocess(pred, size, height, width)})
        return results


def _max_stride(backbone: Backbone) -> int:
    return max(s.stride for s in backbone.output_shape().values())


def depth_postprocess(depth: torch.Tensor, image_size, height: int, width: int) -> torch.Tensor:
    """Crop the padding off a (H, W) prediction and resize it (bilinear) to (height, width), the
    original image size, like detectron2's ``sem_seg_postprocess``."""
    depth = depth[: image_size[0], : image_size[1]][None, None]
    return F.interpolate(depth, size=(height, width), mode="bilinear", align_corners=False)[0, 0]

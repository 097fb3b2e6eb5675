"""ImageClassifier: any registered backbone + global average pooling + a linear head."""
from __future__ import annotations

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from torch import nn
from torch.nn import functional as F


def largest_stride_feature(backbone: Backbone) -> str:
    """The backbone output with the largest stride (ties: the later one in ``output_shape``)."""
    shapes = backbone.output_shape()
    return max(shapes, key=lambda k: (shapes[k].stride, list(shapes).index(k)))


@META_ARCH_REGISTRY.register()
class ImageClassifier(nn.Module):
    """Image classification on a detectron2 backbone, so that the backbone it trains can
    initialise a detector or a depth model (see :mod:`odedet.modeling.classification.export`).

    Inputs are in detectron2's convention: pixel values (0..255 scale) normalised inside the
    model with ``pixel_mean``/``pixel_std``. :meth:`logits` takes a batch tensor (N, C, H, W);
    :meth:`forward` takes detectron2's list of dicts ({"image": (C, H, W), "label": int}) and
    returns {"loss_cls"} in training and [{"logits": (K,), "pred_class": int}] in eval.
    """

    @configurable
    def __init__(
        self, *, backbone: Backbone, num_classes: int, in_feature: str = "",
        pixel_mean: tuple, pixel_std: tuple,
    ):
        super().__init__()
        self.backbone = backbone
        shapes = backbone.output_shape()
        self.in_feature = in_feature or largest_stride_feature(backbone)
        if self.in_feature not in shapes:
            raise ValueError(
                f"classifier input feature {self.in_feature!r} (MODEL.CLASSIFIER.IN_FEATURE) is "
                f"not a backbone output; outputs: {sorted(shapes)}"
            )
        if num_classes < 2:
            raise ValueError(f"MODEL.CLASSIFIER.NUM_CLASSES must be >= 2, got {num_classes}")
        self.head = nn.Linear(shapes[self.in_feature].channels, num_classes)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        return {
            "backbone": build_backbone(cfg),
            "num_classes": cfg.MODEL.CLASSIFIER.NUM_CLASSES,
            "in_feature": cfg.MODEL.CLASSIFIER.IN_FEATURE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) unnormalised images -> (N, num_classes) class scores."""
        if images.dim() != 4 or images.shape[1] != self.pixel_mean.shape[0]:
            raise ValueError(
                f"expected images (N, {self.pixel_mean.shape[0]}, H, W) (one channel per "
                f"MODEL.PIXEL_MEAN entry), got {tuple(images.shape)}"
            )
        x = (images.to(self.device) - self.pixel_mean) / self.pixel_std
        feature = self.backbone(x)[self.in_feature]
        return self.head(feature.mean(dim=(2, 3)))

    def forward(self, batched_inputs):
        images = torch.stack([d["image"].float() for d in batched_inputs])
        logits = self.logits(images)
        if self.training:
            labels = torch.as_tensor([d["label"] for d in batched_inputs], device=self.device)
            return {"loss_cls": F.cross_entropy(logits, labels)}
        return [{"logits": s, "pred_class": int(s.argmax())} for s in logits]

"""ODE-ResNet-FPN: detectron2's ``FPN`` (with ``LastLevelMaxPool`` for P6) on an ODE-ResNet.

Same structure as detectron2's ``build_resnet_fpn_backbone``; only the bottom-up network differs.
Like every detectron2 FPN, inputs must be padded to ``size_divisibility`` (the coarsest stride),
which ``GeneralizedRCNN`` does through ``ImageList.from_tensors``.
"""
from __future__ import annotations

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

from ..checkpointing import enable_checkpointing
from .ode_resnet import build_ode_resnet_backbone

__all__ = ["build_ode_resnet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_ode_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """FPN over :func:`build_ode_resnet_backbone`: MODEL.FPN.IN_FEATURES (a subset of
    MODEL.RESNETS.OUT_FEATURES) become p2..p5, plus p6 by max-pooling p5. MODEL.ODE.CHECKPOINT_FPN
    runs the lateral and output convolutions under activation checkpointing while training."""
    bottom_up = build_ode_resnet_backbone(cfg, input_shape)
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    missing = [f for f in in_features if f not in bottom_up.output_shape()]
    if missing:
        raise ValueError(
            f"MODEL.FPN.IN_FEATURES {in_features} needs {missing}, which the ODE-ResNet does not "
            f"output: add them to MODEL.RESNETS.OUT_FEATURES "
            f"(now {list(cfg.MODEL.RESNETS.OUT_FEATURES)})"
        )
    fpn = FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
    if cfg.MODEL.ODE.CHECKPOINT_FPN:  # lateral and output convs keep only their inputs
        for conv in list(fpn.lateral_convs) + list(fpn.output_convs):
            enable_checkpointing(conv)
    return fpn

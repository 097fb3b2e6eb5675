"""ODE-ResNet backbones, registered in detectron2's BACKBONE_REGISTRY on import:
``build_ode_resnet_backbone`` (C4 / plain features) and ``build_ode_resnet_fpn_backbone``."""
from .ode_fpn import build_ode_resnet_fpn_backbone
from .ode_vgg import ODEVGG, build_ode_vgg_backbone, build_ode_vgg_fpn_backbone  # noqa: F401
from .vgg import VGG, build_vgg_backbone  # noqa: F401  (depth baseline encoder)
from .ode_resnet import (
    ODEStageBlock,
    build_ode_resnet_backbone,
    make_ode_resnet_stage,
    ode_stages_from_cfg,
    stage_kwargs_from_cfg,
)

__all__ = [
    "ODEVGG", "build_ode_vgg_backbone", "build_ode_vgg_fpn_backbone",
    "ODEStageBlock", "build_ode_resnet_backbone", "build_ode_resnet_fpn_backbone",
    "make_ode_resnet_stage", "ode_stages_from_cfg", "stage_kwargs_from_cfg",
]

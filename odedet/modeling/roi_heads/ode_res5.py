"""C4 Faster R-CNN with an ODE res5: the layout of tf-faster-rcnn's ResNet-101, ODE end to end.

In a C4 model the backbone stops at res4 and res5 runs per region on ROI-pooled features
(detectron2's ``Res5ROIHeads``). :class:`ODERes5ROIHeads` builds that res5 like the ODE-ResNet
backbone builds its stages: a strided transition block followed by one ODE block when "res5" is
in MODEL.ODE.STAGES, ordinary residual blocks otherwise; basic blocks for ResNet-18/34 widths,
bottleneck blocks for 50/101 (detectron2's head supports only bottleneck).
"""
from __future__ import annotations

from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads
from torch import nn

from odedet.modeling.backbone.ode_resnet import make_ode_resnet_stage, stage_kwargs_from_cfg

__all__ = ["ODERes5ROIHeads"]


@ROI_HEADS_REGISTRY.register()
class ODERes5ROIHeads(Res5ROIHeads):
    """``Res5ROIHeads`` whose per-region res5 stage is an ODE stage (see module docstring).

    Input: the backbone's res4 (MODEL.ROI_HEADS.IN_FEATURES ["res4"]); per-region output has
    MODEL.RESNETS.RES2_OUT_CHANNELS * 8 channels at half the pooler resolution.
    """

    @classmethod
    def _build_res5_block(cls, cfg):
        kwargs = stage_kwargs_from_cfg(cfg, "res5")
        if kwargs["dilation"] != 1:
            raise ValueError(
                "the C4 head's res5 is strided: set MODEL.RESNETS.RES5_DILATION 1 "
                f"(got {kwargs['dilation']})"
            )
        return nn.Sequential(*make_ode_resnet_stage(**kwargs)), kwargs["out_channels"]

"""ODE-VGG: VGG-16's layout with each block's repeated convolutions replaced by one ODE block.

The depth-encoder study of issue 17 (docs/depth_encoder.md) found that the ODE-ResNet trails
VGG-16 as a depth encoder because of where it computes, not because of the ODE: its strided
7x7 stem and max-pool reach stride 4 before any block runs, while VGG runs its first block at
full resolution and its second at half. ODE-VGG keeps VGG's five levels and applies the ODE-Net
change the way ODE-ResNet does for ResNet stages: level k is a *transition* 3x3 conv
(``C[k-1] -> C[k]``, norm, ReLU) followed by one :class:`ODEStageBlock` (dh/dt = f(t, h) on
``C[k]`` channels), then VGG's 2x2 max-pool. ``odeK`` is level K's pooled output, stride
``stem_stride * 2**K`` (2, 4, ..., 32 by default), exactly like VGG's ``vggK``, so the depth
decoder gets five skip levels, the finest at stride 2.

Only :func:`build_ode_vgg_backbone` reads the config (``MODEL.ODE_VGG.*`` for the layout,
``MODEL.ODE.*`` for dynamics and solvers); :class:`ODEVGG` takes plain keyword arguments.
:func:`build_ode_vgg_fpn_backbone` puts detectron2's FPN on top for detection.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence

import fvcore.nn.weight_init as weight_init
import torch
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from torch import nn
from torch.nn import functional as F

from odedet.ode import make_norm

from .ode_resnet import ODEStageBlock, _ode_kwargs_from_cfg

ODE_VGG_FEATURE_NAMES = ("ode1", "ode2", "ode3", "ode4", "ode5")

__all__ = ["ODEVGG", "build_ode_vgg_backbone", "build_ode_vgg_fpn_backbone", "add_ode_vgg_config",
           "ODE_VGG_FEATURE_NAMES"]


def _norm(norm: str, channels: int):
    if norm == "GN":  # 32 groups clipped to a divisor of narrow widths (16, 48 channels)
        return make_norm("GN", channels, 32)
    return get_norm(norm, channels)


class ODEVGG(Backbone):
    """Five levels of transition conv + ODE block + 2x2 max-pool (VGG-16's layout, ODE-Net).

    Args:
        channels: output channels of the five levels (VGG-16: 64, 128, 256, 512, 512).
        ode_levels: 1-based levels that get an ODE block after their transition conv; the
            others are the transition conv alone.
        norm: detectron2 norm of the transition convs ("" , "BN", "GN", ...).
        convs_per_level: 3x3 conv-norm-ReLU layers per level before its ODE block (the first
            changes the width; default 1, the transition conv). ``(2, 2, 1, 1, 1)`` with
            ``ode_levels=(3, 4, 5)`` is a VGG-16 stem (levels 1-2 exactly VGG's two convs)
            under ODE levels 3-5.
        stem_stride: stride of level 1's transition conv: 1 (full resolution, as VGG) or 2
            (every level at half VGG's resolution: the ablation of full-resolution compute).
        post_activation: a norm (``norm``) and ReLU after each ODE block, so that the level's
            output (what the next level and the decoder's skip see) is post-activation like
            VGG's conv-norm-ReLU features instead of the ODE state h(T), a residual stream
            (Chen et al.'s ODE-Net applies the same norm-ReLU after its ODE block).
        in_channels: input channels.
        out_features: names among ode1..ode5 to return; levels past the last are not built.
        ode: :class:`ODEStageBlock` keyword arguments (dynamics, norm, gn_groups, zero_init,
            augment_channels, t_end, train_solver, test_solver) shared by every ODE block.
    """

    def __init__(
        self,
        *,
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        ode_levels: Sequence[int] = (1, 2, 3, 4, 5),
        norm: str = "BN",
        convs_per_level: Sequence[int] = (1, 1, 1, 1, 1),
        stem_stride: int = 1,
        post_activation: bool = False,
        in_channels: int = 3,
        out_features: Sequence[str] = ODE_VGG_FEATURE_NAMES,
        ode: dict | None = None,
    ):
        super().__init__()
        if len(channels) != 5:
            raise ValueError(f"ODE-VGG needs 5 levels: MODEL.ODE_VGG.CHANNELS {list(channels)} "
                             "must have 5 entries")
        bad = [k for k in ode_levels if k not in range(1, 6)]
        if bad or len(set(ode_levels)) != len(ode_levels):
            raise ValueError(f"MODEL.ODE_VGG.ODE_LEVELS {list(ode_levels)} must be distinct "
                             "levels among 1..5")
        if len(convs_per_level) != 5 or any(int(n) < 1 for n in convs_per_level):
            raise ValueError(f"MODEL.ODE_VGG.CONVS_PER_LEVEL {list(convs_per_level)} must be 5 "
                             "counts >= 1 (the first conv of a level changes its width)")
        if stem_stride not in (1, 2):
            raise ValueError(f"MODEL.ODE_VGG.STEM_STRIDE must be 1 or 2, got {stem_stride}")
        bad = [f for f in out_features if f not in ODE_VGG_FEATURE_NAMES]
        if bad or not out_features:
            raise ValueError(f"MODEL.ODE_VGG.OUT_FEATURES {list(out_features)} must name some of "
                             f"{ODE_VGG_FEATURE_NAMES}; unknown: {bad}")
        ode = dict(ode or {})
        if ode.get("dynamics", "basic") != "basic":
            raise ValueError("ODE-VGG levels use basic (3x3, 3x3) dynamics: set MODEL.ODE.DYNAMICS "
                             f"'basic' or 'auto', got {ode['dynamics']!r}")
        ode["dynamics"] = "basic"
        self._out_features = list(out_features)
        last = max(ODE_VGG_FEATURE_NAMES.index(f) for f in out_features) + 1
        self.levels = nn.ModuleList()
        self._out_feature_channels, self._out_feature_strides = {}, {}
        prev, stride = in_channels, stem_stride
        for k in range(last):
            layers = []
            for i in range(int(convs_per_level[k])):
                conv = Conv2d(prev if i == 0 else channels[k], channels[k], kernel_size=3,
                              stride=stem_stride if k == 0 and i == 0 else 1, padding=1,
                              bias=not norm, norm=_norm(norm, channels[k]), activation=F.relu)
                weight_init.c2_msra_fill(conv)
                layers.append(conv)
            if k + 1 in ode_levels:
                layers.append(ODEStageBlock(channels[k], **ode))
                if post_activation:
                    layers += [_norm(norm, channels[k]) if norm else nn.Identity(),
                               nn.ReLU(inplace=True)]
            self.levels.append(nn.Sequential(*layers))
            prev, stride = channels[k], stride * 2
            name = ODE_VGG_FEATURE_NAMES[k]
            self._out_feature_channels[name] = channels[k]
            self._out_feature_strides[name] = stride

    def forward(self, x) -> Dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"ODE-VGG takes (N, C, H, W) inputs, got shape {tuple(x.shape)}")
        outputs = {}
        for k, level in enumerate(self.levels):
            # ceil_mode keeps odd sizes' last row/column: odeK is ceil(H / stride) high.
            x = F.max_pool2d(level(x), kernel_size=2, stride=2, ceil_mode=True)
            name = ODE_VGG_FEATURE_NAMES[k]
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name],
                            stride=self._out_feature_strides[name])
            for name in self._out_features
        }

    def freeze(self, freeze_at: int = 0):
        """Freeze the first ``freeze_at`` levels (parameters and BN), as ResNet's freeze_at."""
        from detectron2.layers import FrozenBatchNorm2d

        for level in self.levels[:freeze_at]:
            for i, m in enumerate(level):
                if hasattr(m, "freeze"):
                    m.freeze()  # ODEStageBlock (CNNBlockBase)
                    continue
                for p in m.parameters():
                    p.requires_grad = False
                if isinstance(m, nn.BatchNorm2d):  # a post-activation norm
                    level[i] = FrozenBatchNorm2d.convert_frozen_batchnorm(m)
                elif isinstance(getattr(m, "norm", None), nn.BatchNorm2d):
                    m.norm = FrozenBatchNorm2d.convert_frozen_batchnorm(m.norm)
        return self


@BACKBONE_REGISTRY.register()
def build_ode_vgg_backbone(cfg, input_shape: ShapeSpec) -> ODEVGG:
    """ODE-VGG from MODEL.ODE_VGG.* (CHANNELS, ODE_LEVELS, CONVS_PER_LEVEL, NORM, STEM_STRIDE,
    POST_ACTIVATION, OUT_FEATURES),
    MODEL.ODE.* (dynamics norm, augmentation, solvers) and MODEL.BACKBONE.FREEZE_AT (levels)."""
    v = cfg.MODEL.ODE_VGG
    ode = _ode_kwargs_from_cfg(cfg) if cfg.MODEL.ODE.DYNAMICS != "auto" else \
        _ode_kwargs_from_cfg_basic(cfg)
    return ODEVGG(
        channels=list(v.CHANNELS), ode_levels=list(v.ODE_LEVELS), norm=v.NORM,
        convs_per_level=list(v.CONVS_PER_LEVEL),
        stem_stride=v.STEM_STRIDE, post_activation=v.POST_ACTIVATION,
        in_channels=input_shape.channels,
        out_features=list(v.OUT_FEATURES), ode=ode,
    ).freeze(cfg.MODEL.BACKBONE.FREEZE_AT)


def _ode_kwargs_from_cfg_basic(cfg) -> dict:
    # MODEL.ODE.DYNAMICS "auto" picks by MODEL.RESNETS.DEPTH in ODE-ResNet; ODE-VGG is basic.
    c = cfg.clone()
    c.defrost()
    c.MODEL.ODE.DYNAMICS = "basic"
    return _ode_kwargs_from_cfg(c)


@BACKBONE_REGISTRY.register()
def build_ode_vgg_fpn_backbone(cfg, input_shape: ShapeSpec):
    """detectron2's FPN over :func:`build_ode_vgg_backbone` for detection: MODEL.FPN.IN_FEATURES
    (a subset of MODEL.ODE_VGG.OUT_FEATURES, e.g. ode2..ode5) become p2..p5, plus p6."""
    bottom_up = build_ode_vgg_backbone(cfg, input_shape)
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    missing = [f for f in in_features if f not in bottom_up.output_shape()]
    if missing:
        raise ValueError(
            f"MODEL.FPN.IN_FEATURES {in_features} needs {missing}, which the ODE-VGG does not "
            f"output: add them to MODEL.ODE_VGG.OUT_FEATURES "
            f"(now {list(cfg.MODEL.ODE_VGG.OUT_FEATURES)})"
        )
    # The extra level pools the coarsest FPN output, whatever its stride (detectron2's default
    # "p5" is only right for inputs at strides 4..32; STEM_STRIDE 2 gives 8..64).
    top = LastLevelMaxPool()
    coarsest = max(bottom_up.output_shape()[f].stride for f in in_features)
    top.in_feature = f"p{int(math.log2(coarsest))}"
    return FPN(bottom_up=bottom_up, in_features=in_features,
               out_channels=cfg.MODEL.FPN.OUT_CHANNELS, norm=cfg.MODEL.FPN.NORM,
               top_block=top, fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


def add_ode_vgg_config(cfg):
    """MODEL.ODE_VGG: the ODE-VGG backbone's layout (dynamics and solvers are MODEL.ODE.*)."""
    from detectron2.config import CfgNode as CN

    cfg.MODEL.ODE_VGG = CN()
    # Output channels of the five levels (VGG-16: 64, 128, 256, 512, 512).
    cfg.MODEL.ODE_VGG.CHANNELS = [64, 128, 256, 512, 512]
    # 1-based levels with an ODE block after the transition conv; the others are the conv alone.
    cfg.MODEL.ODE_VGG.ODE_LEVELS = [1, 2, 3, 4, 5]
    # 3x3 conv-norm-ReLU layers per level before its ODE block (the first changes the width):
    # 1 = the transition conv; [2, 2, 1, 1, 1] with ODE_LEVELS [3, 4, 5] = VGG-16's stem.
    cfg.MODEL.ODE_VGG.CONVS_PER_LEVEL = [1, 1, 1, 1, 1]
    # Norm of the transition convs: "BN" (as vgg16_bn), "GN", "" ...
    cfg.MODEL.ODE_VGG.NORM = "BN"
    # Stride of level 1's conv: 1 = full resolution (VGG), 2 = every level at half resolution.
    cfg.MODEL.ODE_VGG.STEM_STRIDE = 1
    # A norm (NORM) + ReLU after each ODE block: the level's output is post-activation, as VGG's
    # conv-norm-ReLU features, instead of the ODE state h(T).
    cfg.MODEL.ODE_VGG.POST_ACTIVATION = False
    # Features returned, among "ode1".."ode5" (level k pooled: stride STEM_STRIDE * 2**k).
    cfg.MODEL.ODE_VGG.OUT_FEATURES = ["ode1", "ode2", "ode3", "ode4", "ode5"]

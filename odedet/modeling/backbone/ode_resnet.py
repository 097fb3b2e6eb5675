"""ODE-ResNet: detectron2's ResNet with ODE blocks in place of a stage's repeated residual blocks.

Each ResNet stage is a strided *transition* block (detectron2's ``BasicBlock`` or
``BottleneckBlock``: channel change and downsampling, the stage's first residual block) followed,
for the stages listed in ``MODEL.ODE.STAGES``, by one :class:`ODEStageBlock` that integrates
dh/dt = f(t, h) over [0, T] and replaces the stage's remaining residual blocks (Chen et al. 2018).
Stages not listed keep their ordinary residual blocks.

The ODE block is a ``CNNBlockBase`` (TridentNet's pattern), so detectron2's own ``ResNet`` class
assembles the stages, and ``freeze_at``, strides, ``output_shape()`` and FPN come unchanged.
Only :func:`build_ode_resnet_backbone` reads the config.
"""
from __future__ import annotations

from detectron2.layers import CNNBlockBase, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet

from odedet.ode import ODEBlock, SolverOptions, build_dynamics, solver_options_from_cfg

from ..checkpointing import enable_checkpointing

STAGE_NAMES = ("res2", "res3", "res4", "res5")
# Residual blocks per stage of the standard ResNets; an ODE stage keeps only the first one.
BLOCKS_PER_STAGE = {
    18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
}

__all__ = [
    "ODEStageBlock", "make_ode_resnet_stage", "stage_kwargs_from_cfg", "ode_stages_from_cfg",
    "blocks_per_stage_from_cfg",
    "build_ode_resnet_backbone", "STAGE_NAMES", "BLOCKS_PER_STAGE",
]


class ODEStageBlock(CNNBlockBase):
    """One ODE block as a ResNet block: (N, C, H, W) -> (N, C, H, W), stride 1.

    Args:
        channels: C, the stage's width (state channels of the ODE).
        dynamics: "basic" (norm-ReLU-conv3x3 x2, ResNet-18/34 widths) or "bottleneck"
            (1x1-3x3-1x1 with ``bottleneck_channels``, ResNet-50/101 widths).
        bottleneck_channels: inner width of bottleneck dynamics.
        norm, gn_groups: normalisation inside the dynamics ("GN", "BN" or "").
        zero_init: start the dynamics at f = 0 (identity block); see MODEL.ODE.ZERO_INIT.
        augment_channels: Augmented-ODE zero channels carried through the solve.
        t_end, train_solver, test_solver: see :class:`odedet.ode.ODEBlock`.

    ``freeze()`` (from ``CNNBlockBase``) stops the dynamics' gradients and turns BN into
    FrozenBN, as for any residual block.
    """

    def __init__(
        self,
        channels: int,
        *,
        dynamics: str = "basic",
        bottleneck_channels: int | None = None,
        norm: str = "GN",
        gn_groups: int = 32,
        zero_init: bool = False,
        augment_channels: int = 0,
        t_end: float = 1.0,
        train_solver: SolverOptions | None = None,
        test_solver: SolverOptions | None = None,
    ):
        super().__init__(channels, channels, 1)
        func = build_dynamics(
            dynamics, channels + augment_channels, bottleneck_channels=bottleneck_channels,
            norm=norm, gn_groups=gn_groups, zero_init=zero_init,
        )
        self.ode = ODEBlock(
            func, t_end=t_end, train_solver=train_solver, test_solver=test_solver,
            augment_channels=augment_channels,
        )

    def forward(self, x):
        return self.ode(x)


def make_ode_resnet_stage(
    *,
    block: str,
    num_blocks: int,
    in_channels: int,
    out_channels: int,
    stride: int,
    norm: str,
    bottleneck_channels: int = 0,
    num_groups: int = 1,
    stride_in_1x1: bool = False,
    dilation: int = 1,
    ode: dict | None = None,
    checkpoint_transition: bool = False,
) -> list[CNNBlockBase]:
    """The blocks of one stage: ``num_blocks`` residual blocks, or, when ``ode`` holds
    :class:`ODEStageBlock` keyword arguments, one transition block followed by one ODE block.

    ``block`` is "basic" (``BasicBlock``) or "bottleneck" (``BottleneckBlock``, which also takes
    ``bottleneck_channels``, ``num_groups``, ``stride_in_1x1`` and ``dilation``). Only the first
    block is strided, as in detectron2's ResNet. ``checkpoint_transition`` runs that first block
    under activation checkpointing while training (:mod:`odedet.modeling.checkpointing`).
    """
    if block == "basic":
        block_class, extra = BasicBlock, {}
    elif block == "bottleneck":
        block_class = BottleneckBlock
        extra = dict(
            bottleneck_channels=bottleneck_channels, num_groups=num_groups,
            stride_in_1x1=stride_in_1x1, dilation=dilation,
        )
    else:
        raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
    n = 1 if ode is not None else num_blocks
    blocks = ResNet.make_stage(
        block_class, n, stride_per_block=[stride] + [1] * (n - 1), in_channels=in_channels,
        out_channels=out_channels, norm=norm, **extra,
    )
    if checkpoint_transition:
        enable_checkpointing(blocks[0])
    if ode is not None:
        ode = dict(ode)
        if ode.get("dynamics") == "bottleneck":
            ode.setdefault("bottleneck_channels", bottleneck_channels or out_channels // 4)
        blocks.append(ODEStageBlock(out_channels, **ode))
    return blocks


def ode_stages_from_cfg(cfg) -> tuple[str, ...]:
    """MODEL.ODE.STAGES, validated: a subset of res2..res5 without repeats."""
    stages = tuple(cfg.MODEL.ODE.STAGES)
    for s in stages:
        if s not in STAGE_NAMES:
            raise ValueError(
                f"MODEL.ODE.STAGES entry {s!r} is not a ResNet stage; use any of "
                f"{', '.join(STAGE_NAMES)} (e.g. ['res4'] for the paper's ODE-ResNet)"
            )
    if len(set(stages)) != len(stages):
        raise ValueError(f"MODEL.ODE.STAGES lists a stage twice: {list(stages)}")
    return stages


def blocks_per_stage_from_cfg(cfg) -> tuple[int, ...]:
    """Residual blocks of res2..res5 when not ODE stages: MODEL.ODE.BLOCKS_PER_STAGE, or the
    standard counts of MODEL.RESNETS.DEPTH when that is empty."""
    blocks = tuple(cfg.MODEL.ODE.BLOCKS_PER_STAGE)
    if not blocks:
        return BLOCKS_PER_STAGE[cfg.MODEL.RESNETS.DEPTH]
    if len(blocks) != len(STAGE_NAMES) or any(not isinstance(b, int) or b < 1 for b in blocks):
        raise ValueError(
            "MODEL.ODE.BLOCKS_PER_STAGE must be empty (standard depth) or list 4 integers >= 1 "
            f"(residual blocks of res2..res5), got {list(blocks)}"
        )
    return blocks


def _ode_kwargs_from_cfg(cfg) -> dict:
    """:class:`ODEStageBlock` keyword arguments (all but widths) from MODEL.ODE.*."""
    ode = cfg.MODEL.ODE
    dynamics = ode.DYNAMICS
    if dynamics == "auto":
        dynamics = "basic" if cfg.MODEL.RESNETS.DEPTH in (18, 34) else "bottleneck"
    elif dynamics not in ("basic", "bottleneck"):
        raise ValueError(
            f"MODEL.ODE.DYNAMICS must be 'auto', 'basic' or 'bottleneck', got {dynamics!r}"
        )
    return dict(
        dynamics=dynamics, norm=ode.NORM, gn_groups=ode.GN_GROUPS, zero_init=ode.ZERO_INIT,
        augment_channels=ode.AUGMENT_CHANNELS, t_end=ode.T_END,
        train_solver=solver_options_from_cfg(cfg, "TRAIN"),
        test_solver=solver_options_from_cfg(cfg, "TEST"),
    )


def _check_resnets_cfg(cfg) -> None:
    r = cfg.MODEL.RESNETS
    if r.DEPTH not in BLOCKS_PER_STAGE:
        raise ValueError(
            f"MODEL.RESNETS.DEPTH must be one of {sorted(BLOCKS_PER_STAGE)}, got {r.DEPTH!r}"
        )
    if any(r.DEFORM_ON_PER_STAGE):
        raise ValueError("MODEL.RESNETS.DEFORM_ON_PER_STAGE is not supported by ODE-ResNet")
    if r.RES5_DILATION not in (1, 2):
        raise ValueError(f"MODEL.RESNETS.RES5_DILATION must be 1 or 2, got {r.RES5_DILATION}")
    if r.DEPTH in (18, 34) and (r.NUM_GROUPS != 1 or r.RES5_DILATION != 1):
        raise ValueError(
            "ResNet-18/34 widths use BasicBlock: set MODEL.RESNETS.NUM_GROUPS 1 and "
            f"MODEL.RESNETS.RES5_DILATION 1 (got {r.NUM_GROUPS}, {r.RES5_DILATION})"
        )
    if r.RES5_DILATION != 1 and "res5" in cfg.MODEL.ODE.STAGES:
        raise ValueError(
            "ODE dynamics have no dilated convolution: MODEL.RESNETS.RES5_DILATION must be 1 "
            "when 'res5' is in MODEL.ODE.STAGES"
        )


def stage_kwargs_from_cfg(cfg, stage: str) -> dict:
    """:func:`make_ode_resnet_stage` arguments for ``stage`` ("res2".."res5") from MODEL.RESNETS
    and MODEL.ODE, with detectron2's widths: stage k has RES2_OUT_CHANNELS * 2**(k-2) output and
    NUM_GROUPS * WIDTH_PER_GROUP * 2**(k-2) bottleneck channels. Used by the backbone and by the
    C4 ROI head (whose res5 runs per region)."""
    _check_resnets_cfg(cfg)
    r = cfg.MODEL.RESNETS
    idx = STAGE_NAMES.index(stage)
    blocks = blocks_per_stage_from_cfg(cfg)
    out_channels = r.RES2_OUT_CHANNELS * 2**idx
    dilation = r.RES5_DILATION if stage == "res5" else 1
    return dict(
        block="basic" if r.DEPTH in (18, 34) else "bottleneck",
        num_blocks=blocks[idx],
        in_channels=r.STEM_OUT_CHANNELS if idx == 0 else out_channels // 2,
        out_channels=out_channels,
        stride=1 if idx == 0 or dilation == 2 else 2,
        norm=r.NORM,
        bottleneck_channels=r.NUM_GROUPS * r.WIDTH_PER_GROUP * 2**idx,
        num_groups=r.NUM_GROUPS,
        stride_in_1x1=r.STRIDE_IN_1X1,
        dilation=dilation,
        ode=_ode_kwargs_from_cfg(cfg) if stage in ode_stages_from_cfg(cfg) else None,
        checkpoint_transition=bool(cfg.MODEL.ODE.CHECKPOINT_TRANSITIONS),
    )


@BACKBONE_REGISTRY.register()
def build_ode_resnet_backbone(cfg, input_shape: ShapeSpec):
    """ODE-ResNet from MODEL.RESNETS (widths, norm, OUT_FEATURES), MODEL.BACKBONE.FREEZE_AT and
    MODEL.ODE (which stages are ODE, dynamics, solvers). Stages after the last of OUT_FEATURES
    are not built (a C4 model's res5 lives in its ROI head)."""
    r = cfg.MODEL.RESNETS
    for f in r.OUT_FEATURES:
        if f not in ("stem",) + STAGE_NAMES:
            raise ValueError(
                f"MODEL.RESNETS.OUT_FEATURES entry {f!r} is not one of stem, "
                f"{', '.join(STAGE_NAMES)}"
            )
    stem = BasicStem(
        in_channels=input_shape.channels, out_channels=r.STEM_OUT_CHANNELS, norm=r.NORM
    )
    if cfg.MODEL.ODE.CHECKPOINT_STEM:
        enable_checkpointing(stem)
    num_stages = max([STAGE_NAMES.index(f) + 1 for f in r.OUT_FEATURES if f != "stem"] or [0])
    stages = [
        make_ode_resnet_stage(**stage_kwargs_from_cfg(cfg, s)) for s in STAGE_NAMES[:num_stages]
    ]
    return ResNet(stem, stages, out_features=r.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)

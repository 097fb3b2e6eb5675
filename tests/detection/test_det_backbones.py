"""Contract of every odedet detection backbone, built through its registered builder.

For each builder x dynamics x ODE-stage set: outputs at an odd input size (200x249) have the
keys, channels and strides ``output_shape()`` declares, are finite, and every trainable
parameter receives a non-zero gradient (direct and adjoint backprop); ``freeze_at`` freezes
exactly the stem and the first stages; config errors name the key to fix.
"""
import itertools
import math

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone
from torch import nn
from torch.nn import functional as F

from odedet import get_odedet_cfg
from odedet.modeling.backbone import ODEStageBlock
from odedet.ode import iter_ode_blocks

BUILDERS = ["build_ode_resnet_backbone", "build_ode_resnet_fpn_backbone"]
STAGE_SETS = {"one": ["res4"], "all": ["res2", "res3", "res4", "res5"]}
H, W = 200, 249


def tiny_cfg(builder, dynamics="basic", stages=("res4",), adjoint=False):
    """A small ODE-ResNet config: basic = ResNet-18 layout, bottleneck = ResNet-50 layout."""
    cfg = get_odedet_cfg()
    cfg.MODEL.BACKBONE.NAME = builder
    r = cfg.MODEL.RESNETS
    # Widths are multiples of 32: detectron2's "GN" is GroupNorm(32, C).
    r.DEPTH, r.NORM, r.STEM_OUT_CHANNELS = (18 if dynamics == "basic" else 50), "GN", 32
    r.RES2_OUT_CHANNELS, r.WIDTH_PER_GROUP = (32, 64) if dynamics == "basic" else (64, 32)
    r.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    ode = cfg.MODEL.ODE
    ode.STAGES, ode.GN_GROUPS, ode.ADJOINT = list(stages), 4, adjoint
    ode.METHOD_TRAIN = ode.METHOD_TEST = "midpoint"
    ode.STEP_SIZE_TRAIN = ode.STEP_SIZE_TEST = 0.5
    return cfg


def _randomise_norm_scales(model):
    # ODE dynamics start as f = 0 (zero-initialised last norm), so the convolutions inside
    # would get exactly zero gradient at init; give every norm a non-zero scale first.
    for m in model.modules():
        if isinstance(m, nn.GroupNorm):
            nn.init.uniform_(m.weight, 0.5, 1.5)


def test_builders_are_registered():
    for name in BUILDERS:
        assert name in BACKBONE_REGISTRY


CASES = list(itertools.product(BUILDERS, ["basic", "bottleneck"], STAGE_SETS))


@pytest.mark.parametrize("builder,dynamics,stages", CASES)
def test_backbone_contract(builder, dynamics, stages):
    adjoint = stages == "one"  # both backprop modes are covered across the cases
    backbone = build_backbone(tiny_cfg(builder, dynamics, STAGE_SETS[stages], adjoint))
    blocks = list(iter_ode_blocks(backbone))
    assert [n.split(".")[-3] for n, _ in blocks] == STAGE_SETS[stages]
    _randomise_norm_scales(backbone)
    x = torch.randn(2, 3, H, W)
    div = backbone.size_divisibility
    if div > 1:  # FPN: pad like GeneralizedRCNN's ImageList does
        x = F.pad(x, (0, -W % div, 0, -H % div))
    out = backbone(x)
    shapes = backbone.output_shape()
    assert set(out) == set(shapes)
    for name, feat in out.items():
        spec = shapes[name]
        assert feat.shape[1] == spec.channels, name
        expected = (math.ceil(x.shape[2] / spec.stride), math.ceil(x.shape[3] / spec.stride))
        assert tuple(feat.shape[2:]) == expected, (name, feat.shape, spec.stride)
        assert torch.isfinite(feat).all(), name
    sum(f.square().mean() for f in out.values()).backward()
    for name, p in backbone.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{name}: zero/NaN grad"


@pytest.mark.parametrize("builder", BUILDERS)
def test_freeze_at_freezes_stem_and_first_stages(builder):
    cfg = tiny_cfg(builder, "basic", STAGE_SETS["all"])
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.ODE.NORM = "BN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 3  # stem, res2, res3
    backbone = build_backbone(cfg)
    resnet = getattr(backbone, "bottom_up", backbone)
    for prefix, frozen in [("stem", True), ("res2", True), ("res3", True), ("res4", False)]:
        module = getattr(resnet, prefix)
        assert all(p.requires_grad != frozen for p in module.parameters()), prefix
        bns = [m for m in module.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
        assert bns and all(isinstance(m, FrozenBatchNorm2d) == frozen for m in bns), prefix
    frozen_ode = resnet.res3[-1]
    assert isinstance(frozen_ode, ODEStageBlock)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen_ode.ode.dynamics.modules())
    out = backbone(torch.randn(1, 3, 64, 64))  # still runs, gradient only for the unfrozen
    sum(f.sum() for f in out.values()).backward()
    assert all(p.grad is None for p in resnet.res3.parameters())
    assert all(p.grad is not None for p in resnet.res4.parameters())


def test_non_ode_stages_keep_residual_blocks():
    cfg = tiny_cfg("build_ode_resnet_backbone", "bottleneck", ["res4"])
    resnet = build_backbone(cfg)
    # ResNet-50: 3, 4, 6, 3 blocks; res4 becomes transition + ODE block.
    assert [len(getattr(resnet, s)) for s in ("res2", "res3", "res4", "res5")] == [3, 4, 2, 3]
    assert isinstance(resnet.res4[1], ODEStageBlock)


def test_test_solver_comes_from_the_test_keys():
    cfg = tiny_cfg("build_ode_resnet_backbone")
    cfg.MODEL.ODE.METHOD_TEST, cfg.MODEL.ODE.RTOL_TEST = "dopri5", 1e-2
    (_, block), = iter_ode_blocks(build_backbone(cfg))
    assert block.test_solver.method == "dopri5" and block.test_solver.rtol == 1e-2
    assert block.train_solver.method == "midpoint"
    block.eval()
    assert block.solver is block.test_solver


@pytest.mark.parametrize("key,value,message", [
    ("MODEL.ODE.STAGES", ["res6"], "MODEL.ODE.STAGES entry 'res6'"),
    ("MODEL.ODE.STAGES", ["res3", "res3"], "MODEL.ODE.STAGES lists a stage twice"),
    ("MODEL.RESNETS.DEPTH", 42, "MODEL.RESNETS.DEPTH must be one of"),
    ("MODEL.ODE.DYNAMICS", "fancy", "MODEL.ODE.DYNAMICS must be"),
    ("MODEL.ODE.METHOD_TRAIN", "rk5", "MODEL.ODE.METHOD_TRAIN"),
    ("MODEL.RESNETS.OUT_FEATURES", ["res7"], "MODEL.RESNETS.OUT_FEATURES entry 'res7'"),
])
def test_config_errors_name_the_key(key, value, message):
    cfg = tiny_cfg("build_ode_resnet_backbone")
    node, leaf = cfg, key.split(".")
    for part in leaf[:-1]:
        node = node[part]
    node[leaf[-1]] = value
    with pytest.raises(ValueError, match=message):
        build_backbone(cfg)


def test_fpn_in_features_must_be_backbone_outputs():
    cfg = tiny_cfg("build_ode_resnet_fpn_backbone")
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    with pytest.raises(ValueError, match="MODEL.RESNETS.OUT_FEATURES"):
        BACKBONE_REGISTRY.get("build_ode_resnet_fpn_backbone")(cfg, ShapeSpec(channels=3))

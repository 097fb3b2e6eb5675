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


# ---- ODE-VGG (issue 17's depth encoder, also a detection backbone through FPN) --------------
VGG_BUILDERS = ["build_ode_vgg_backbone", "build_ode_vgg_fpn_backbone"]
VGG_LEVEL_SETS = {"all": [1, 2, 3, 4, 5], "some": [2, 4], "vgg_stem": [3, 4, 5]}
VGG_STEM_CONVS = [2, 2, 1, 1, 1]  # with ODE levels 3-5: VGG-16's two convs at levels 1-2


def tiny_vgg_cfg(builder, levels=(1, 2, 3, 4, 5), adjoint=False, stem_stride=1):
    cfg = tiny_cfg("build_ode_resnet_backbone", "basic", adjoint=adjoint)
    cfg.MODEL.BACKBONE.NAME = builder
    v = cfg.MODEL.ODE_VGG
    if list(levels) == VGG_LEVEL_SETS["vgg_stem"]:
        v.CONVS_PER_LEVEL = VGG_STEM_CONVS
    v.CHANNELS, v.ODE_LEVELS, v.NORM, v.STEM_STRIDE = [8, 8, 16, 16, 16], list(levels), "GN", \
        stem_stride
    v.OUT_FEATURES = ["ode1", "ode2", "ode3", "ode4", "ode5"]
    cfg.MODEL.FPN.IN_FEATURES = ["ode2", "ode3", "ode4", "ode5"]
    cfg.MODEL.ODE.DYNAMICS = "auto"  # ODE-VGG resolves it to basic dynamics
    return cfg


def test_every_odedet_detection_backbone_is_under_contract():
    # Each backbone odedet registers for detection/depth has a contract case here (the
    # classification ones are tested in tests/classification).
    odedet_names = {k for k, v in BACKBONE_REGISTRY._obj_map.items()
                    if v.__module__.startswith("odedet.modeling.backbone.")}
    assert odedet_names - {"build_vgg_backbone"} == set(BUILDERS) | set(VGG_BUILDERS)


@pytest.mark.parametrize("builder,levels,stem_stride",
                         list(itertools.product(VGG_BUILDERS, VGG_LEVEL_SETS, [1, 2])))
def test_ode_vgg_backbone_contract(builder, levels, stem_stride):
    adjoint = levels == "some"
    backbone = build_backbone(tiny_vgg_cfg(builder, VGG_LEVEL_SETS[levels], adjoint, stem_stride))
    blocks = list(iter_ode_blocks(backbone))
    assert len(blocks) == len(VGG_LEVEL_SETS[levels])
    assert all(b.train_solver.adjoint == adjoint for _, b in blocks)
    _randomise_norm_scales(backbone)
    x = torch.randn(2, 3, H, W)
    div = backbone.size_divisibility
    if div > 1:
        x = F.pad(x, (0, -W % div, 0, -H % div))
    out = backbone(x)
    shapes = backbone.output_shape()
    assert set(out) == set(shapes)
    if builder == "build_ode_vgg_backbone":
        assert [shapes[f"ode{k}"].stride for k in range(1, 6)] == \
            [stem_stride * 2**k for k in range(1, 6)]
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


def test_ode_vgg_first_ode_block_runs_at_full_resolution():
    backbone = build_backbone(tiny_vgg_cfg("build_ode_vgg_backbone"))
    seen = []
    (name, first), *_ = iter_ode_blocks(backbone)
    first.register_forward_hook(lambda m, i, o: seen.append(o.shape[-2:]))
    backbone(torch.randn(1, 3, 48, 64))
    assert seen == [(48, 64)]


def test_ode_vgg_with_a_vgg_stem_is_vgg16_up_to_level_2():
    # CONVS_PER_LEVEL [2, 2, 1, 1, 1] + ODE_LEVELS [3, 4, 5]: levels 1-2 are VGG-16's blocks 1-2
    # (same layers, shapes and parameters), the ODE blocks start at stride 4.
    from odedet.modeling.backbone.vgg import VGG

    cfg = tiny_vgg_cfg("build_ode_vgg_backbone", VGG_LEVEL_SETS["vgg_stem"])
    cfg.MODEL.ODE_VGG.NORM = "BN"
    backbone = build_backbone(cfg)
    vgg = VGG(channels=cfg.MODEL.ODE_VGG.CHANNELS, norm="BN")
    for k in range(2):
        ours, theirs = backbone.levels[k], vgg.blocks[k]
        assert [tuple(p.shape) for p in ours.parameters()] == \
            [tuple(p.shape) for p in theirs.parameters()], k
    seen = []
    (_, first), *_ = iter_ode_blocks(backbone)
    first.register_forward_hook(lambda m, i, o: seen.append(o.shape[-2:]))
    backbone(torch.randn(1, 3, 48, 64))
    assert seen == [(12, 16)] and len(list(iter_ode_blocks(backbone))) == 3


def test_ode_vgg_freeze_at_freezes_first_levels():
    cfg = tiny_vgg_cfg("build_ode_vgg_backbone")
    cfg.MODEL.ODE_VGG.NORM = "BN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    backbone = build_backbone(cfg)
    for k, level in enumerate(backbone.levels):
        assert all(p.requires_grad == (k >= 2) for p in level.parameters()), k
    assert isinstance(backbone.levels[0][0].norm, FrozenBatchNorm2d)
    out = backbone(torch.randn(1, 3, 32, 32))
    sum(f.sum() for f in out.values()).backward()
    assert all(p.grad is None for p in backbone.levels[1].parameters())
    assert all(p.grad is not None for p in backbone.levels[2].parameters())


@pytest.mark.parametrize("norm", ["BN", "GN"])
def test_ode_vgg_post_activation_outputs_are_normalised_relu_features(norm):
    # MODEL.ODE_VGG.POST_ACTIVATION: each level's output is norm + ReLU of h(T), as VGG's
    # conv-norm-ReLU features (non-negative), where the default returns the ODE state itself.
    cfg = tiny_vgg_cfg("build_ode_vgg_backbone")
    cfg.MODEL.ODE_VGG.NORM = norm
    plain = build_backbone(cfg)
    assert any((f < 0).any() for f in plain(torch.randn(2, 3, 32, 32)).values())
    cfg.MODEL.ODE_VGG.POST_ACTIVATION = True
    extra = sum(p.numel() for p in build_backbone(cfg).parameters()) - \
        sum(p.numel() for p in plain.parameters())
    assert extra == 2 * sum(cfg.MODEL.ODE_VGG.CHANNELS)  # one norm's scale and shift per level
    cfg.MODEL.BACKBONE.FREEZE_AT = 1
    post = build_backbone(cfg)
    out = post(torch.randn(2, 3, 32, 32))
    assert all((f >= 0).all() and (f > 0).any() for f in out.values())
    if norm == "BN":  # freeze_at converts the post-activation BatchNorm of level 1 as well
        assert isinstance(post.levels[0][2], FrozenBatchNorm2d)
    assert not any(p.requires_grad for p in post.levels[0].parameters())
    sum(f.square().mean() for f in out.values()).backward()
    assert all(p.grad is not None for p in post.levels[1].parameters())


@pytest.mark.parametrize("key,value,message", [
    ("MODEL.ODE_VGG.CHANNELS", [8, 8, 8], "MODEL.ODE_VGG.CHANNELS"),
    ("MODEL.ODE_VGG.ODE_LEVELS", [0, 6], "MODEL.ODE_VGG.ODE_LEVELS"),
    ("MODEL.ODE_VGG.STEM_STRIDE", 4, "MODEL.ODE_VGG.STEM_STRIDE"),
    ("MODEL.ODE_VGG.CONVS_PER_LEVEL", [1, 0, 1, 1, 1], "MODEL.ODE_VGG.CONVS_PER_LEVEL"),
    ("MODEL.ODE_VGG.CONVS_PER_LEVEL", [1, 1], "MODEL.ODE_VGG.CONVS_PER_LEVEL"),
    ("MODEL.ODE_VGG.OUT_FEATURES", ["vgg1"], "MODEL.ODE_VGG.OUT_FEATURES"),
    ("MODEL.ODE.DYNAMICS", "bottleneck", "MODEL.ODE.DYNAMICS"),
])
def test_ode_vgg_config_errors_name_the_key(key, value, message):
    cfg = tiny_vgg_cfg("build_ode_vgg_backbone")
    node, leaf = cfg, key.split(".")
    for part in leaf[:-1]:
        node = node[part]
    node[leaf[-1]] = value
    with pytest.raises(ValueError, match=message):
        build_backbone(cfg)


def test_ode_vgg_fpn_in_features_must_be_backbone_outputs():
    cfg = tiny_vgg_cfg("build_ode_vgg_fpn_backbone")
    cfg.MODEL.ODE_VGG.OUT_FEATURES = ["ode3", "ode4", "ode5"]
    with pytest.raises(ValueError, match="MODEL.ODE_VGG.OUT_FEATURES"):
        build_backbone(cfg)

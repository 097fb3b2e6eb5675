"""DepthEstimator train and eval steps for each encoder (ODE-ResNet, ResNet, VGG), tiny inputs."""
import os

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model

from odedet import get_odedet_cfg
from odedet.modeling.backbone.vgg import VGG
from odedet.ode import iter_ode_blocks, nfe_counts, reset_nfe

RES = ["res2", "res3", "res4", "res5"]


def _cfg(encoder):
    cfg = get_odedet_cfg()
    cfg.MODEL.META_ARCHITECTURE = "DepthEstimator"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.DEPTH.CONVS_DIM = 16
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.OUT_FEATURES = RES
    cfg.MODEL.DEPTH.IN_FEATURES = RES
    if encoder == "ode":
        cfg.MODEL.BACKBONE.NAME = "build_ode_resnet_backbone"
        cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 8
        cfg.MODEL.ODE.GN_GROUPS = 4
        cfg.MODEL.ODE.METHOD_TRAIN = cfg.MODEL.ODE.METHOD_TEST = "euler"
        cfg.MODEL.ODE.STEP_SIZE_TRAIN = cfg.MODEL.ODE.STEP_SIZE_TEST = 1.0
    elif encoder == "ode_vgg":  # issue 17's encoder: VGG-16 layout, ODE block per level
        cfg.MODEL.BACKBONE.NAME = "build_ode_vgg_backbone"
        cfg.MODEL.ODE_VGG.CHANNELS = [8, 8, 16, 16, 16]
        cfg.MODEL.ODE.DYNAMICS, cfg.MODEL.ODE.GN_GROUPS = "basic", 4
        cfg.MODEL.ODE.METHOD_TRAIN = cfg.MODEL.ODE.METHOD_TEST = "euler"
        cfg.MODEL.ODE.STEP_SIZE_TRAIN = cfg.MODEL.ODE.STEP_SIZE_TEST = 1.0
        cfg.MODEL.DEPTH.IN_FEATURES = ["ode1", "ode2", "ode3", "ode4", "ode5"]
    elif encoder == "resnet":
        cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"  # detectron2's R18: width 64 fixed
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    else:
        cfg.MODEL.BACKBONE.NAME = "build_vgg_backbone"
        cfg.MODEL.VGG.CHANNELS = [8, 8, 16, 16, 16]
        cfg.MODEL.VGG.NORM = "BN"
        cfg.MODEL.DEPTH.IN_FEATURES = ["vgg1", "vgg2", "vgg3", "vgg4", "vgg5"]
    return cfg


def _batch(n=2, h=32, w=40):
    depth = torch.rand(n, h, w) * 8 + 0.5
    depth[:, :4] = 0  # unknown rows
    return [{"image": torch.randint(0, 256, (3, h, w)).float(), "depth": depth[i],
             "height": 2 * h, "width": 2 * w} for i in range(n)]


@pytest.mark.parametrize("encoder", ["ode", "ode_vgg", "resnet", "vgg"])
def test_train_and_eval_step(encoder):
    cfg = _cfg(encoder)
    model = build_model(cfg)
    model.train()
    losses = model(_batch())
    assert list(losses) == ["loss_depth_silog"] and torch.isfinite(losses["loss_depth_silog"])
    losses["loss_depth_silog"].backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    model.eval()
    reset_nfe(model)
    with torch.no_grad():
        out = model(_batch(1, 30, 38))  # not a multiple of 32: padding is cropped off
    depth = out[0]["depth"]
    assert depth.shape == (60, 76)
    assert cfg.MODEL.DEPTH.MIN_DEPTH <= depth.min() and depth.max() <= cfg.MODEL.DEPTH.MAX_DEPTH
    # euler with step 1: one evaluation per ODE block: 4 ODE stages, 5 ODE-VGG levels
    assert nfe_counts(model)["forward"] == {"ode": 4, "ode_vgg": 5}.get(encoder, 0)


def test_vgg_declared_shapes_match_outputs_and_layout():
    vgg = VGG(norm="BN")
    convs = [m for m in vgg.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    small = VGG(channels=[4, 8, 8, 8, 8], out_features=["vgg2", "vgg4"])
    feats = small(torch.zeros(1, 3, 64, 96))
    for name, spec in small.output_shape().items():
        assert feats[name].shape[1] == spec.channels
        assert feats[name].shape[-2:] == (64 // spec.stride, 96 // spec.stride)
    assert len(small.blocks) == 4  # vgg5 not requested, not built
    with pytest.raises(ValueError, match="MODEL.VGG.OUT_FEATURES"):
        VGG(out_features=["vgg6"])


def test_head_rejects_missing_features():
    cfg = _cfg("vgg")
    cfg.MODEL.DEPTH.IN_FEATURES = ["res4"]
    from odedet.modeling.depth import build_depth_head

    with pytest.raises(KeyError, match="MODEL.DEPTH.IN_FEATURES"):
        build_depth_head(cfg, {"vgg1": ShapeSpec(channels=8, stride=2)})


CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "Depth")


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(CONFIG_DIR)
                                        if f.endswith(".yaml") and not f.startswith("Base")))
def test_every_depth_config_loads_and_names_real_features(name):
    from odedet.config_check import load_config

    cfg = load_config(os.path.join(CONFIG_DIR, name), [])
    assert cfg.MODEL.META_ARCHITECTURE == "DepthEstimator"
    if "scenes" in name:  # small enough to build here; features must exist in the backbone
        cfg.MODEL.DEVICE = "cpu"
        model = build_model(cfg)
        assert set(model.depth_head.in_features) == set(cfg.MODEL.DEPTH.IN_FEATURES)


def test_ode_vgg16_scenes_config_is_vgg16s_layout_with_fewer_parameters():
    # Issue 17's target compares at <= VGG-16's parameters, with VGG's five skip levels.
    from odedet.config_check import load_config

    models = {}
    for name in ("ode_vgg16_scenes.yaml", "vgg16_scenes.yaml"):
        cfg = load_config(os.path.join(CONFIG_DIR, name), [])
        cfg.MODEL.DEVICE = "cpu"
        models[name] = (cfg, build_model(cfg))
    (ocfg, ode), (vcfg, vgg) = models["ode_vgg16_scenes.yaml"], models["vgg16_scenes.yaml"]
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ode) <= count(vgg)
    strides = lambda m: sorted(s.stride for s in m.backbone.output_shape().values())  # noqa: E731
    assert strides(ode) == strides(vgg) == [2, 4, 8, 16, 32]
    assert len(ocfg.MODEL.DEPTH.IN_FEATURES) == len(vcfg.MODEL.DEPTH.IN_FEATURES) == 5
    assert len(list(iter_ode_blocks(ode))) == 5
    for key in ("SOLVER", "INPUT", "DATASETS", "SEED"):  # the shared recipe
        assert ocfg[key] == vcfg[key], key

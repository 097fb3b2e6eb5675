"""MODEL.ODE.ZERO_INIT reaches every ODE block the builders make (detection and classification)."""
import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from odedet.config import get_odedet_cfg
from odedet.ode import iter_ode_blocks


def _last_norm_scales(model):
    scales = []
    for _, block in iter_ode_blocks(model):
        norms = [m for m in block.dynamics.modules() if isinstance(m, torch.nn.GroupNorm)]
        scales.append(norms[-1].weight.detach())
    return scales


@pytest.mark.parametrize("zero_init", [True, False])
def test_zero_init_key_reaches_ode_backbone(zero_init):
    cfg = get_odedet_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_ode_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "GN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.ODE.ZERO_INIT = zero_init
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    scales = _last_norm_scales(backbone)
    assert len(scales) == 4
    for s in scales:
        assert bool((s == 0).all()) is zero_init

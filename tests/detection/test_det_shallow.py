"""The shallow ResNet baseline of the compute dial is the ODE quickstart model without its ODE
blocks: same builder, MODEL.ODE.STAGES [] and BLOCKS_PER_STAGE [1, 1, 1, 1]."""
import os

import pytest
import torch
from detectron2.modeling import build_backbone

from odedet import get_odedet_cfg
from odedet.engine.trainer import Trainer

QUICK = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "configs/quickstart")


def _model(name, *opts):
    cfg = get_odedet_cfg()
    cfg.merge_from_file(os.path.join(QUICK, name))
    cfg.merge_from_list(list(opts))
    return Trainer.build_model(cfg)


def test_shallow_is_the_ode_model_without_its_ode_blocks(one_torch_thread):
    ode = _model("ode_faster_rcnn_R_18_FPN_shapes.yaml").state_dict()
    shallow_model = _model("faster_rcnn_R_shallow_FPN_shapes.yaml")
    shallow = shallow_model.state_dict()
    assert set(shallow) == {k for k in ode if ".ode." not in k}
    assert all(shallow[k].shape == ode[k].shape for k in shallow)
    stages = shallow_model.backbone.bottom_up.stages
    assert [len(s) for s in stages] == [1, 1, 1, 1]
    # the ODE model's weights minus its ODE blocks load strictly into the shallow ResNet
    shallow_model.load_state_dict({k: v for k, v in ode.items() if ".ode." not in k}, strict=True)


def test_default_blocks_are_the_standard_depth_and_bad_lists_are_refused(one_torch_thread):
    full = _model("ode_faster_rcnn_R_18_FPN_shapes.yaml", "MODEL.ODE.STAGES", "[]")
    assert [len(s) for s in full.backbone.bottom_up.stages] == [2, 2, 2, 2]  # ResNet-18
    with pytest.raises(ValueError, match="MODEL.ODE.BLOCKS_PER_STAGE"):
        _model("faster_rcnn_R_shallow_FPN_shapes.yaml", "MODEL.ODE.BLOCKS_PER_STAGE", "[1, 1]")


def test_no_ode_stage_is_detectron2s_resnet18(one_torch_thread):
    """At ResNet-18's widths, the ODE builder with no ODE stage (the quickstart's ResNet-18
    baseline, which needs it for half widths) is detectron2's own R-18-FPN: same state-dict
    keys and shapes, and the same features from the same weights."""
    cfg = get_odedet_cfg()
    cfg.merge_from_file(os.path.join(QUICK, "faster_rcnn_R_18_FPN_shapes.yaml"))
    assert cfg.MODEL.BACKBONE.NAME == "build_ode_resnet_fpn_backbone" and not cfg.MODEL.ODE.STAGES
    cfg.merge_from_list(["MODEL.RESNETS.STEM_OUT_CHANNELS", 64, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64])
    ours = build_backbone(cfg).eval()
    d2cfg = cfg.clone()
    d2cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    theirs = build_backbone(d2cfg).eval()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    theirs.load_state_dict(a, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fa, fb = ours(x), theirs(x)
    assert list(fa) == list(fb)
    for k in fa:
        torch.testing.assert_close(fa[k], fb[k])

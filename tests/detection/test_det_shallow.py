"""The shallow ResNet baseline of the compute dial is the ODE quickstart model without its ODE
blocks: same builder, MODEL.ODE.STAGES [] and BLOCKS_PER_STAGE [1, 1, 1, 1]."""
import os

import pytest

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

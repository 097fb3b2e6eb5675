"""Every detection config under configs/ loads with odedet's keys and builds its model; the
from-scratch recipe holds for all of them; ODE configs really contain ODE blocks."""
import glob
import os

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler, build_optimizer

from odedet import get_odedet_cfg
from odedet.ode import iter_ode_blocks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DETECTION_DIRS = ("", "COCO-Detection", "PascalVOC-Detection", "quickstart")
CONFIGS = sorted(
    os.path.relpath(p, ROOT)
    for d in DETECTION_DIRS
    for p in glob.glob(os.path.join(ROOT, "configs", d, "*.yaml"))
)


def load(path):
    cfg = get_odedet_cfg()
    cfg.merge_from_file(os.path.join(ROOT, path))
    return cfg


def test_the_config_set_is_complete():
    names = {os.path.basename(p) for p in CONFIGS}
    assert "odenet_faster_rcnn.yaml" in names
    for bench in ("COCO-Detection", "PascalVOC-Detection"):
        for model in ("ode_faster_rcnn_R_50_C4", "faster_rcnn_R_50_FPN", "faster_rcnn_R_101_FPN",
                      "faster_rcnn_R_50_C4", "faster_rcnn_R_101_C4"):
            assert f"configs/{bench}/{model}_scratch.yaml" in CONFIGS


@pytest.mark.parametrize("path", CONFIGS)
def test_config_loads_and_builds(path):
    cfg = load(path)
    if os.path.basename(path).startswith(("Base-RCNN", "Base-Scratch")):
        pass  # bases: detectron2's own ResNet
    else:
        assert cfg.MODEL.WEIGHTS == "", "trained from scratch: no pretrained weights"
        assert cfg.MODEL.RESNETS.NORM == "GN" and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    # Built on the meta device: every module and shape is constructed, but no weights are
    # allocated or initialised (R-101 models would take seconds each on CPU).
    cfg.MODEL.DEVICE = "meta"
    with torch.device("meta"):
        model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 1e6
    build_optimizer(cfg, model)  # solver keys (e.g. SOLVER.CLIP_GRADIENTS) are valid too
    build_lr_scheduler(cfg, build_optimizer(cfg, model))
    n_ode = len(list(iter_ode_blocks(model)))
    is_ode = "ODE" in cfg.MODEL.BACKBONE.NAME.upper()
    if is_ode:
        stages = set(cfg.MODEL.ODE.STAGES)
        last = max(cfg.MODEL.RESNETS.OUT_FEATURES)  # stages after the last output aren't built
        built = {s for s in stages if s <= last}
        if cfg.MODEL.ROI_HEADS.NAME == "ODERes5ROIHeads" and "res5" in stages:
            built.add("res5")  # the C4 head's res5
        assert n_ode == len(built)
        # no ODE stage: a plain ResNet built by the ODE builder (the quickstart's ResNet
        # baselines, at widths detectron2's own R-18 builder refuses)
        assert n_ode > 0 or not cfg.MODEL.ODE.STAGES
    else:
        assert n_ode == 0


@pytest.mark.parametrize("baseline", ["faster_rcnn_R_18_FPN_shapes.yaml",
                                      "faster_rcnn_R_shallow_FPN_shapes.yaml"])
def test_quickstart_pair_shares_the_recipe(baseline):
    ode = load("configs/quickstart/ode_faster_rcnn_R_18_FPN_shapes.yaml")
    base = load(f"configs/quickstart/{baseline}")
    assert ode.MODEL.DEVICE == base.MODEL.DEVICE == "cpu"
    assert ode.DATASETS.TRAIN == base.DATASETS.TRAIN == ("odedet_shapes_train",)
    for key in ("SOLVER", "INPUT", "DATALOADER", "TEST"):
        assert ode[key] == base[key], key
    for key in ("ROI_HEADS", "ROI_BOX_HEAD", "RPN", "ANCHOR_GENERATOR", "FPN"):
        assert ode.MODEL[key] == base.MODEL[key], key

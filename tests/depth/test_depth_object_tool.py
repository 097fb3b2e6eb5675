"""tools/object_depth.py: a (tiny, untrained) Faster R-CNN + a depth model -> per-object depths
that equal the median of the depth model's own map inside each reported box centre."""
import importlib.util
import json
import os

import cv2
import numpy as np
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from odedet import get_odedet_cfg
from odedet.modeling.depth.object_depth import object_depths

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _save(cfg, tmp_path, stem):
    torch.manual_seed(0)
    state = build_model(cfg).state_dict()
    if "depth_head.predictor.weight" in state:  # an untrained head predicts ~constant depth
        state["depth_head.predictor.weight"] *= 3000
    torch.save({"model": state}, tmp_path / f"{stem}.pth")
    (tmp_path / f"{stem}.yaml").write_text(cfg.dump())
    return str(tmp_path / f"{stem}.yaml"), str(tmp_path / f"{stem}.pth")


def _vgg(cfg, features):
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_vgg_backbone"
    cfg.MODEL.VGG.CHANNELS = [8, 8, 8, 8, 8]
    cfg.MODEL.VGG.OUT_FEATURES = features
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 48, 64
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (), ()


def test_object_depth_tool(tmp_path):
    det = get_odedet_cfg()
    _vgg(det, ["vgg3"])
    det.MODEL.RPN.IN_FEATURES = ["vgg3"]
    det.MODEL.ANCHOR_GENERATOR.SIZES = [[16, 32]]
    det.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    det.MODEL.ROI_HEADS.IN_FEATURES = ["vgg3"]
    det.MODEL.ROI_HEADS.NUM_CLASSES = 2
    det.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    det.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    det.MODEL.ROI_BOX_HEAD.NUM_FC, det.MODEL.ROI_BOX_HEAD.FC_DIM = 1, 16
    dep = get_odedet_cfg()
    _vgg(dep, ["vgg1", "vgg2", "vgg3", "vgg4", "vgg5"])
    dep.MODEL.META_ARCHITECTURE = "DepthEstimator"
    dep.MODEL.DEPTH.IN_FEATURES = ["vgg1", "vgg2", "vgg3", "vgg4", "vgg5"]
    dep.MODEL.DEPTH.CONVS_DIM = 16
    (dc, dw), (pc, pw) = _save(det, tmp_path, "det"), _save(dep, tmp_path, "dep")
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    spec = importlib.util.spec_from_file_location("obj_depth_tool",
                                                  os.path.join(ROOT, "tools", "object_depth.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    report = tool.main(["--det-config", dc, "--det-weights", dw, "--depth-config", pc,
                        "--depth-weights", pw, "--input", str(tmp_path / "a.png"),
                        "--output", str(tmp_path / "vis"), "--confidence-threshold", "0"])
    rows = report[str(tmp_path / "a.png")]
    assert rows and (tmp_path / "vis" / "a.png").exists()
    assert json.loads((tmp_path / "vis" / "object_depths.json").read_text())
    # the reported depths are the box-centre medians of the depth model's map
    depth = tool._predictor(pc, pw)(img)["depth"]
    inst = Instances((48, 64), pred_boxes=Boxes(torch.tensor([r["box"] for r in rows])))
    want = object_depths(inst, depth)
    got = torch.tensor([r["depth_m"] for r in rows])
    assert got.max() - got.min() > 0.5  # objects at different depths
    assert torch.allclose(got, want, atol=1e-3)

"""tools/demo.py on a depth model: the depth renderer writes input | colour-mapped depth."""
import importlib.util
import os

import cv2
import numpy as np
import torch
from detectron2.modeling import build_model

from odedet import get_odedet_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_draws_depth(tmp_path):
    cfg = get_odedet_cfg()
    cfg.MODEL.META_ARCHITECTURE = "DepthEstimator"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_vgg_backbone"
    cfg.MODEL.VGG.CHANNELS = [8, 8, 8, 8, 8]
    cfg.MODEL.DEPTH.IN_FEATURES = ["vgg1", "vgg2", "vgg3", "vgg4", "vgg5"]
    cfg.MODEL.DEPTH.CONVS_DIM = 16
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("odedet_depth_scenes_train",), ()
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 32, 64
    torch.save({"model": build_model(cfg).state_dict()}, tmp_path / "m.pth")
    (tmp_path / "cfg.yaml").write_text(cfg.dump())
    cv2.imwrite(str(tmp_path / "in.png"), np.full((40, 56, 3), 120, np.uint8))
    spec = importlib.util.spec_from_file_location("depth_demo_tool",
                                                  os.path.join(ROOT, "tools", "demo.py"))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    out = str(tmp_path / "out.png")
    written = demo.main(["--config-file", str(tmp_path / "cfg.yaml"), "--input",
                         str(tmp_path / "in.png"), "--output", out,
                         "MODEL.WEIGHTS", str(tmp_path / "m.pth")])
    assert written == [out]
    vis = cv2.imread(out)
    assert vis.shape[1] > 2 * vis.shape[0]  # two panels and a colour bar side by side
    assert len(np.unique(vis.reshape(-1, 3), axis=0)) > 20  # a colour map, not a blank image

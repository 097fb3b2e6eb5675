"""End-to-end ODE Faster R-CNN (FPN and C4) on CPU: a train step and an eval step on a batch
that includes an image without instances."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from odedet import get_odedet_cfg
from odedet.modeling.roi_heads import ODERes5ROIHeads
from odedet.ode import iter_ode_blocks

FPN_CONFIG = "configs/quickstart/ode_faster_rcnn_R_18_FPN_shapes.yaml"
C4_CONFIG = "configs/Base-ODE-C4.yaml"


def tiny_cfg(config_file, depth=18):
    cfg = get_odedet_cfg()
    cfg.merge_from_file(config_file)
    cfg.MODEL.DEVICE = "cpu"
    r = cfg.MODEL.RESNETS
    r.DEPTH, r.STEM_OUT_CHANNELS = depth, 32
    r.RES2_OUT_CHANNELS, r.WIDTH_PER_GROUP = (32, 64) if depth == 18 else (64, 32)
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 16
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.MODEL.ODE.METHOD_TRAIN = cfg.MODEL.ODE.METHOD_TEST = "midpoint"
    cfg.MODEL.ODE.STEP_SIZE_TRAIN = cfg.MODEL.ODE.STEP_SIZE_TEST = 1.0
    cfg.MODEL.ODE.GN_GROUPS = 8
    return cfg


def batch():
    """Two images of different odd sizes; the second has no instances."""
    g = torch.Generator().manual_seed(0)
    items = []
    for (h, w), boxes in [((90, 117), [[10, 12, 50, 60], [60, 30, 110, 85]]), ((77, 101), [])]:
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.gt_classes = torch.tensor([0, 2][: len(boxes)], dtype=torch.int64)
        image = torch.randint(0, 256, (3, h, w), generator=g).float()
        items.append({"image": image, "instances": inst, "height": h, "width": w})
    return items


@pytest.mark.parametrize("config_file,depth,adjoint", [
    (FPN_CONFIG, 18, False), (C4_CONFIG, 18, True), (C4_CONFIG, 50, False),
])
def test_train_and_eval_step(config_file, depth, adjoint):
    cfg = tiny_cfg(config_file, depth)
    cfg.MODEL.ODE.ADJOINT = adjoint
    model = build_model(cfg)
    ode_blocks = [name for name, _ in iter_ode_blocks(model)]
    if config_file == C4_CONFIG:
        assert isinstance(model.roi_heads, ODERes5ROIHeads)
        assert "roi_heads.res5.1.ode" in ode_blocks  # res5 is an ODE stage, per region
    assert len(ode_blocks) == 4
    model.train()
    with EventStorage():  # detectron2 logs training statistics into the current storage
        losses = model(batch())
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name

    model.eval()
    with torch.no_grad():
        outputs = model(batch())
    assert len(outputs) == 2
    for out, item in zip(outputs, batch()):
        inst = out["instances"]
        assert inst.image_size == (item["height"], item["width"])
        assert torch.isfinite(inst.pred_boxes.tensor).all()
        assert ((inst.pred_classes >= 0) & (inst.pred_classes < 3)).all()
        assert ((inst.scores >= cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST) & (inst.scores <= 1)).all()


def test_c4_head_res5_follows_ode_stages():
    cfg = tiny_cfg(C4_CONFIG)
    cfg.MODEL.ODE.STAGES = ["res3"]
    model = build_model(cfg)
    # res5 not listed: the ROI head keeps ResNet-18's two residual blocks, no ODE block.
    assert len(model.roi_heads.res5) == 2
    assert [n for n, _ in iter_ode_blocks(model)] == ["backbone.res3.1.ode"]


def test_ode_vgg_fpn_faster_rcnn_train_and_eval_step():
    # Issue 17's depth encoder is a detection backbone too: ODE-VGG-16 + FPN under Faster R-CNN.
    cfg = tiny_cfg(FPN_CONFIG)
    cfg.MODEL.BACKBONE.NAME = "build_ode_vgg_fpn_backbone"
    cfg.MODEL.ODE_VGG.CHANNELS = [16, 16, 32, 32, 32]
    cfg.MODEL.ODE_VGG.NORM = "GN"
    cfg.MODEL.ODE_VGG.OUT_FEATURES = ["ode2", "ode3", "ode4", "ode5"]
    cfg.MODEL.FPN.IN_FEATURES = ["ode2", "ode3", "ode4", "ode5"]
    model = build_model(cfg)
    assert len(list(iter_ode_blocks(model))) == 5  # one per level; level 1 is built, not output
    assert model.backbone.size_divisibility == 32
    model.train()
    with EventStorage():
        losses = model(batch())
    total = sum(losses.values())
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    model.eval()
    with torch.no_grad():
        outputs = model(batch())
    assert [o["instances"].image_size for o in outputs] == [(90, 117), (77, 101)]

"""Memory-lean options (MODEL.ODE.CHECKPOINT_STEM / _TRANSITIONS / _FPN, the checkpointed RPN
and box heads) change memory only:
outputs, gradients, BatchNorm running statistics and state-dict keys are the same with them on
and off, for the backbone and for a whole Faster R-CNN training step."""
import copy
import os

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.utils.events import EventStorage
from torch import nn

from odedet import get_odedet_cfg
from odedet.modeling.checkpointing import is_checkpointed

from test_det_backbones import tiny_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _lean(cfg, on=True, heads=False, chunk=0):
    cfg = cfg.clone()
    cfg.MODEL.ODE.CHECKPOINT_STEM = on
    cfg.MODEL.ODE.CHECKPOINT_TRANSITIONS = on
    cfg.MODEL.ODE.CHECKPOINT_FPN = on
    cfg.MODEL.ODE.RELEASE_END_STATE = on
    cfg.MODEL.ODE.ADJOINT_CHUNK = chunk if on else 0
    if on and heads:
        cfg.MODEL.RPN.HEAD_NAME = "CheckpointedRPNHead"
        cfg.MODEL.ROI_BOX_HEAD.NAME = "CheckpointedFastRCNNConvFCHead"
    return cfg


def _randomise(model):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)


def _backbone_pair(cfg):
    torch.manual_seed(0)
    plain = build_backbone(cfg, ShapeSpec(channels=3))
    torch.manual_seed(0)
    lean = build_backbone(_lean(cfg), ShapeSpec(channels=3))
    _randomise(plain)
    lean.load_state_dict(plain.state_dict())
    return plain, lean


def _outputs_and_grads(model, x):
    model.train()
    out = model(x)
    loss = sum((v * (i + 1)).square().mean() for i, v in enumerate(out.values()))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in out.items()}, grads


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("dynamics", ["basic", "bottleneck"])
def test_checkpointed_backbone_same_outputs_and_gradients(one_torch_thread, dynamics, adjoint):
    cfg = tiny_cfg("build_ode_resnet_fpn_backbone", dynamics, stages=("res3", "res4"),
                   adjoint=adjoint)
    plain, lean = _backbone_pair(cfg)
    bottom_up = lean.bottom_up
    assert is_checkpointed(bottom_up.stem)
    # every stage's first block, ODE stages (res3, res4) and residual ones (res2, res5) alike
    assert all(is_checkpointed(getattr(bottom_up, s)[0]) for s in ("res2", "res3", "res4", "res5"))
    assert not any(is_checkpointed(b) for s in ("res2", "res5") for b in getattr(bottom_up, s)[1:])
    assert not is_checkpointed(plain.bottom_up.stem)
    assert all(is_checkpointed(c) for c in list(lean.lateral_convs) + list(lean.output_convs))
    assert list(plain.state_dict()) == list(lean.state_dict())
    x = torch.randn(2, 3, 64, 96)
    out_p, grad_p = _outputs_and_grads(plain, x)
    out_l, grad_l = _outputs_and_grads(lean, x)
    assert out_p.keys() == out_l.keys() and grad_p.keys() == grad_l.keys()
    assert len(grad_p) == sum(1 for p in plain.parameters() if p.requires_grad)
    for k in out_p:
        torch.testing.assert_close(out_l[k], out_p[k], rtol=1e-5, atol=1e-6)
    for k in grad_p:
        torch.testing.assert_close(grad_l[k], grad_p[k], rtol=1e-4, atol=1e-6)
    # eval / no-grad forward takes the plain path
    plain.eval(), lean.eval()
    with torch.no_grad():
        for k, v in plain(x).items():
            torch.testing.assert_close(lean(x)[k], v, rtol=1e-5, atol=1e-6)


def test_batchnorm_statistics_updated_once_under_recomputation(one_torch_thread):
    """BN in the transition blocks: recomputing a checkpointed block in the backward pass must
    not update the running statistics a second time."""
    cfg = tiny_cfg("build_ode_resnet_backbone", "basic", stages=("res3",))
    cfg.MODEL.RESNETS.NORM = "BN"
    plain, lean = _backbone_pair(cfg)
    assert any(isinstance(m, nn.BatchNorm2d) for m in lean.stem.modules())
    x = torch.randn(2, 3, 64, 64)
    for model in (plain, lean):
        for _ in range(2):
            _outputs_and_grads(model, x)
    sp, sl = plain.state_dict(), lean.state_dict()
    bn_keys = [k for k in sp if "running_" in k or "num_batches_tracked" in k]
    assert bn_keys
    for k in bn_keys:
        torch.testing.assert_close(sl[k], sp[k], rtol=1e-5, atol=1e-6)
    assert int(sl[[k for k in bn_keys if "num_batches_tracked" in k][0]]) == 2


def test_lean_detector_config_same_losses_and_gradients(one_torch_thread):
    """The memory-lean COCO config is the flagship ODE-ResNet-50-FPN with checkpointing on:
    a whole Faster R-CNN training step (quickstart-size model, adjoint) gives the same losses
    and gradients either way."""
    lean_cfg = get_odedet_cfg()
    lean_cfg.merge_from_file(os.path.join(
        ROOT, "configs/COCO-Detection/ode_faster_rcnn_R_50_FPN_lean.yaml"))
    ode = lean_cfg.MODEL.ODE
    assert ode.CHECKPOINT_STEM and ode.CHECKPOINT_TRANSITIONS and ode.CHECKPOINT_FPN
    assert ode.RELEASE_END_STATE and ode.ADJOINT_CHUNK == 1
    assert lean_cfg.MODEL.RPN.HEAD_NAME == "CheckpointedRPNHead"
    assert lean_cfg.MODEL.ROI_BOX_HEAD.NAME == "CheckpointedFastRCNNConvFCHead"
    assert lean_cfg.MODEL.ODE.ADJOINT and lean_cfg.MODEL.RESNETS.DEPTH == 50
    base = get_odedet_cfg()
    base.merge_from_file(os.path.join(ROOT, "configs/odenet_faster_rcnn.yaml"))
    assert not base.MODEL.ODE.CHECKPOINT_STEM and not base.MODEL.ODE.CHECKPOINT_TRANSITIONS
    assert not base.MODEL.ODE.RELEASE_END_STATE and base.MODEL.ODE.ADJOINT_CHUNK == 0

    cfg = get_odedet_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "configs/quickstart/ode_faster_rcnn_R_18_FPN_shapes.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.ODE.ADJOINT", True,
                         "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
                         "MODEL.RPN.POST_NMS_TOPK_TRAIN", 64, "MODEL.ROI_BOX_HEAD.NUM_CONV", 2,
                         "MODEL.ROI_BOX_HEAD.NORM", "GN"])
    from odedet.benchmarks.zoo import synthetic_detection_batch

    batch = synthetic_detection_batch((64, 96), batch=2)
    results = []
    for on in (False, True):
        torch.manual_seed(0)
        model = build_model(_lean(cfg, on, heads=True, chunk=ode.ADJOINT_CHUNK))
        assert is_checkpointed(model.proposal_generator.rpn_head) == on
        assert is_checkpointed(model.roi_heads.box_head) == on
        if not results:
            _randomise(model)
            state = copy.deepcopy(model.state_dict())
        else:
            assert list(model.state_dict()) == list(state)
            model.load_state_dict(state)
        model.train()
        torch.manual_seed(1)  # RPN / ROI sampling draws random numbers
        with EventStorage(0):
            losses = model(batch)
        sum(losses.values()).backward()
        results.append(({k: v.detach() for k, v in losses.items()},
                        {n: p.grad.clone() for n, p in model.named_parameters()
                         if p.grad is not None}))
    (loss_p, grad_p), (loss_l, grad_l) = results
    assert loss_p.keys() == loss_l.keys() and grad_p.keys() == grad_l.keys()
    for k in loss_p:
        torch.testing.assert_close(loss_l[k], loss_p[k], rtol=1e-5, atol=1e-6)
    for k in grad_p:
        torch.testing.assert_close(grad_l[k], grad_p[k], rtol=1e-4, atol=1e-5)

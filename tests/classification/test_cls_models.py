"""Forward/backward of every classifier family through ImageClassifier, the paper models'
parameter counts, NFE accounting of RK-Net vs ODE-Net, and config errors."""
import pytest
import torch
from detectron2.modeling import build_model

import odedet  # noqa: F401
from odedet.modeling.classification import available_models, build_classifier_cfg
from odedet.ode import iter_ode_blocks, nfe_counts, reset_nfe

TINY = {
    "mnist-resnet": ["MODEL.MNIST_NET.WIDTH", 8],
    "mnist-rknet": ["MODEL.MNIST_NET.WIDTH", 8, "MODEL.ODE.STEP_SIZE_TRAIN", 0.5],
    "mnist-odenet": ["MODEL.MNIST_NET.WIDTH", 8, "MODEL.ODE.STEP_SIZE_TRAIN", 0.5],
    "resnet20": ["MODEL.CIFAR_RESNET.WIDTH", 4, "MODEL.CIFAR_RESNET.DEPTH", 8],
    "ode-resnet": ["MODEL.CIFAR_RESNET.WIDTH", 4, "MODEL.ODE.STEP_SIZE_TRAIN", 1.0],
    "d2-resnet18": [],
    "d2-ode-resnet18": ["MODEL.RESNETS.STEM_OUT_CHANNELS", 8,
                        "MODEL.RESNETS.RES2_OUT_CHANNELS", 8, "MODEL.ODE.STEP_SIZE_TRAIN", 1.0],
}


def _model(name, channels, opts=()):
    cfg = build_classifier_cfg(name, num_classes=5, pixel_mean=[100.0] * channels,
                               pixel_std=[50.0] * channels, opts=list(opts))
    return build_model(cfg)


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_backward_every_family(name):
    if name not in available_models():
        pytest.skip(f"{name}: its backbone builder is not registered")
    channels = 3 if name.startswith("d2-") or not name.startswith("mnist") else 1
    model = _model(name, channels, TINY[name])
    # ODE dynamics start at f = 0 (zero-init last norm); make them non-trivial so every
    # parameter is on the gradient path.
    for _, block in iter_ode_blocks(model):
        for m in block.dynamics.modules():
            if isinstance(m, torch.nn.GroupNorm):
                torch.nn.init.ones_(m.weight)
    x = torch.rand(2, channels, 16, 16) * 255
    logits = model.logits(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


def test_paper_parameter_counts():
    """Table 1: ResNet 0.60M, RK-Net/ODE-Net 0.22M parameters (the reference architecture)."""
    counts = {n: sum(p.numel() for p in _model(n, 1).parameters())
              for n in ("mnist-resnet", "mnist-rknet", "mnist-odenet")}
    assert 0.55e6 < counts["mnist-resnet"] < 0.62e6
    assert 0.19e6 < counts["mnist-odenet"] < 0.23e6
    assert counts["mnist-rknet"] == counts["mnist-odenet"]


def test_rknet_backprops_through_solver_odenet_uses_adjoint():
    x, y = torch.rand(2, 1, 16, 16) * 255, torch.tensor([1, 2])
    nfe = {}
    for name in ("mnist-rknet", "mnist-odenet"):
        model = _model(name, 1, ["MODEL.MNIST_NET.WIDTH", 8])  # rk4, step 0.25: 16 evaluations
        reset_nfe(model)
        torch.nn.functional.cross_entropy(model.logits(x), y).backward()
        nfe[name] = nfe_counts(model)
    assert nfe["mnist-rknet"] == {"forward": 16, "backward": 0}
    assert nfe["mnist-odenet"]["forward"] == 16 and nfe["mnist-odenet"]["backward"] >= 16


def test_detectron2_style_forward():
    model = _model("mnist-resnet", 1, TINY["mnist-resnet"])
    batch = [{"image": torch.rand(1, 16, 16) * 255, "label": 1},
             {"image": torch.rand(1, 16, 16) * 255, "label": 4}]
    losses = model(batch)
    assert set(losses) == {"loss_cls"} and losses["loss_cls"] > 0
    model.eval()
    out = model(batch)
    assert len(out) == 2 and out[0]["logits"].shape == (5,)
    assert out[1]["pred_class"] == int(out[1]["logits"].argmax())


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="MODEL.CIFAR_RESNET.DEPTH must be 6n\\+2"):
        _model("resnet20", 3, ["MODEL.CIFAR_RESNET.DEPTH", 21])
    with pytest.raises(ValueError, match="MODEL.MNIST_NET.BLOCK"):
        _model("mnist-resnet", 1, ["MODEL.MNIST_NET.BLOCK", "dense"])
    with pytest.raises(ValueError, match="unknown model 'resnet-9000'.*mnist-odenet"):
        _model("resnet-9000", 1)
    with pytest.raises(ValueError, match="MODEL.CLASSIFIER.IN_FEATURE"):
        _model("resnet20", 3, TINY["resnet20"] + ["MODEL.CLASSIFIER.IN_FEATURE", "res9"])
    model = _model("mnist-resnet", 1, TINY["mnist-resnet"])
    with pytest.raises(ValueError, match=r"expected images \(N, 1, H, W\)"):
        model.logits(torch.rand(2, 3, 16, 16))

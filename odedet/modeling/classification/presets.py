"""Classifier models by name: each name is a set of config overrides on odedet's defaults.

``build_classifier_cfg("mnist-odenet", num_classes=10, pixel_mean=[..], pixel_std=[..])`` gives
a config whose ``build_model`` is an :class:`ImageClassifier`. Names starting with ``d2-`` use
a detection backbone (detectron2's or odedet's registered builders) with a pooled linear head;
they need 3-channel input, like the detector they can initialise.
"""
from __future__ import annotations

import torch
from detectron2.modeling import BACKBONE_REGISTRY

_MNIST = ["MODEL.BACKBONE.NAME", "build_mnist_paper_backbone"]
# The paper's RK-Net and ODE-Net share the solver (RK4, 4 steps); only the gradient differs:
# backprop through the solver's operations (RK-Net) or the adjoint (ODE-Net).
_ODE_RK4 = ["MODEL.MNIST_NET.BLOCK", "ode", "MODEL.ODE.METHOD_TRAIN", "rk4",
            "MODEL.ODE.METHOD_TEST", "rk4", "MODEL.ODE.STEP_SIZE_TRAIN", 0.25,
            "MODEL.ODE.STEP_SIZE_TEST", 0.25, "MODEL.ODE.NORM", "GN"]
_CIFAR = ["MODEL.BACKBONE.NAME", "build_cifar_resnet_backbone"]


def _d2_resnet(depth, fpn=False, name="build_resnet_backbone"):
    """Detection ResNet trained from scratch as a classifier: BN (not FrozenBN), nothing frozen."""
    opts = ["MODEL.BACKBONE.NAME", name, "MODEL.RESNETS.DEPTH", depth,
            "MODEL.RESNETS.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", 0,
            "MODEL.RESNETS.RES2_OUT_CHANNELS", 64 if depth in (18, 34) else 256]
    if fpn:
        res = ["res2", "res3", "res4", "res5"]
        opts += ["MODEL.RESNETS.OUT_FEATURES", res, "MODEL.FPN.IN_FEATURES", res]
    else:
        opts += ["MODEL.RESNETS.OUT_FEATURES", ["res5"]]
    return opts


# name -> (one-line description, config overrides)
MODEL_PRESETS = {
    "mnist-resnet": ("paper Table 1 ResNet: stem + 6 residual blocks", _MNIST),
    "mnist-rknet": ("paper Table 1 RK-Net: one ODE block, backprop through RK4",
                    _MNIST + _ODE_RK4 + ["MODEL.ODE.ADJOINT", False]),
    "mnist-odenet": ("paper Table 1 ODE-Net: one ODE block, adjoint gradients",
                     _MNIST + _ODE_RK4 + ["MODEL.ODE.ADJOINT", True]),
    "resnet20": ("CIFAR ResNet-20 (3x3 basic blocks, 16/32/64)", _CIFAR),
    "resnet56": ("CIFAR ResNet-56", _CIFAR + ["MODEL.CIFAR_RESNET.DEPTH", 56]),
    "resnet110": ("CIFAR ResNet-110", _CIFAR + ["MODEL.CIFAR_RESNET.DEPTH", 110]),
    "ode-resnet": ("ODE counterpart of CIFAR ResNet-20/56/110: transition + ODE block per stage",
                   _CIFAR + ["MODEL.CIFAR_RESNET.ODE", True]),
    "d2-resnet18": ("detectron2 ResNet-18 backbone + pooled linear head", _d2_resnet(18)),
    "d2-resnet50": ("detectron2 ResNet-50 backbone + pooled linear head", _d2_resnet(50)),
    "d2-resnet18-fpn": ("detectron2 ResNet-18-FPN backbone (head on p6)",
                        _d2_resnet(18, True, "build_resnet_fpn_backbone")),
    "d2-ode-resnet18": ("odedet ODE-ResNet-18 detection backbone", _d2_resnet(18, False,
                        "build_ode_resnet_backbone")),
    "d2-ode-resnet50": ("odedet ODE-ResNet-50 detection backbone", _d2_resnet(50, False,
                        "build_ode_resnet_backbone")),
    "d2-ode-resnet18-fpn": ("odedet ODE-ResNet-18-FPN detection backbone",
                            _d2_resnet(18, True, "build_ode_resnet_fpn_backbone")),
}


def _backbone_name(opts) -> str:
    return opts[opts.index("MODEL.BACKBONE.NAME") + 1]


def available_models() -> list:
    """Preset names whose backbone builder is registered (ODE detection backbones appear once
    their module is imported by ``import odedet``)."""
    return [n for n, (_, o) in MODEL_PRESETS.items() if _backbone_name(o) in BACKBONE_REGISTRY]


def input_channels(name: str | None) -> int | None:
    """Channels a model needs: 3 for detection backbones (``d2-*`` presets, or ``None`` = a
    detector config file), so gray data is repeated; None = the data's own channels."""
    return 3 if name is None or name.startswith("d2-") else None


def build_classifier_cfg(
    name: str | None, *, num_classes: int, pixel_mean, pixel_std, config_file: str = "",
    opts: list | None = None,
):
    """A frozen config for an ImageClassifier: preset ``name`` (or ``config_file``, any
    detectron2/odedet yaml whose MODEL.BACKBONE is used), then ``opts`` (KEY VALUE pairs)."""
    from odedet.config import get_odedet_cfg  # here: odedet.config imports this package

    cfg = get_odedet_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    if name:
        if name not in MODEL_PRESETS:
            raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
        preset = MODEL_PRESETS[name][1]
        if _backbone_name(preset) not in BACKBONE_REGISTRY:
            raise KeyError(
                f"model {name!r} needs the backbone {_backbone_name(preset)!r}, which is not "
                f"registered; available: {', '.join(available_models())}"
            )
        cfg.merge_from_list(list(preset))
    cfg.MODEL.META_ARCHITECTURE = "ImageClassifier"
    cfg.MODEL.CLASSIFIER.NUM_CLASSES = num_classes
    cfg.MODEL.PIXEL_MEAN = [float(v) for v in pixel_mean]
    cfg.MODEL.PIXEL_STD = [float(v) for v in pixel_std]
    cfg.INPUT.FORMAT = "RGB" if len(pixel_mean) == 3 else "L"
    # detectron2's default is "cuda"; fall back to the CPU where there is no GPU (opts win).
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    cfg.merge_from_list(list(opts or []))
    cfg.freeze()
    return cfg

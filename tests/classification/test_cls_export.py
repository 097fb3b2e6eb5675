"""A classifier's backbone exported as a detectron2 checkpoint loads into a detector (and a depth
model) through DetectionCheckpointer / MODEL.WEIGHTS with no missing or unexpected backbone keys
and with equal weights."""
import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import META_ARCH_REGISTRY, build_model

import odedet  # noqa: F401
from odedet.config import get_odedet_cfg
from odedet.modeling.classification import build_classifier_cfg, export_backbone_checkpoint

# ResNet-50 structure at small widths (fast on CPU); the detector's C4 head holds res5.
R50_SMALL = ["MODEL.RESNETS.DEPTH", 50, "MODEL.RESNETS.STEM_OUT_CHANNELS", 16,
             "MODEL.RESNETS.RES2_OUT_CHANNELS", 32, "MODEL.RESNETS.WIDTH_PER_GROUP", 8]
ODE_R18_SMALL = ["MODEL.BACKBONE.NAME", "build_ode_resnet_backbone", "MODEL.RESNETS.DEPTH", 18,
                 "MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 16,
                 "MODEL.ODE.GN_GROUPS", 8, "MODEL.ODE.METHOD_TRAIN", "euler",
                 "MODEL.ODE.STEP_SIZE_TRAIN", 1.0, "MODEL.ODE.METHOD_TEST", "euler",
                 "MODEL.ODE.STEP_SIZE_TEST", 1.0]


def _trained_classifier(opts):
    cfg = build_classifier_cfg(None, num_classes=4, pixel_mean=[100.0] * 3, pixel_std=[50.0] * 3,
                               opts=opts + ["MODEL.RESNETS.NORM", "BN",
                                            "MODEL.RESNETS.OUT_FEATURES", ["res5"],
                                            "MODEL.BACKBONE.FREEZE_AT", 0])
    model = build_model(cfg)
    with torch.no_grad():  # stand-in for training: every weight and BN statistic changes
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        model.train()
        model.logits(torch.rand(4, 3, 32, 32) * 255)
    return model


def _detector(opts):
    cfg = get_odedet_cfg()
    cfg.merge_from_list(opts + ["MODEL.DEVICE", "cpu"])
    return build_model(cfg)


def _load(model, path):
    """What MODEL.WEIGHTS does (the public load()), keeping the incompatible-keys report.

    load() itself, not _load_file()/_load_model() called directly: detectron2 main asserts that
    _load_file runs inside load()."""
    ckpt = DetectionCheckpointer(model)
    report = {}
    load_model = ckpt._load_model

    def spy(checkpoint):
        report["incompatible"] = load_model(checkpoint)
        return report["incompatible"]

    ckpt._load_model = spy
    ckpt.load(path, checkpointables=[])
    return report["incompatible"]


def _assert_round_trip(classifier, target, path, prefixes):
    summary = export_backbone_checkpoint(classifier, path, target)
    incompatible = _load(target, path)
    missing = [k for k in incompatible.missing_keys if k.startswith(prefixes)]
    assert not missing and not incompatible.unexpected_keys and not incompatible.incorrect_shapes
    target_state = target.state_dict()
    src = classifier.backbone.state_dict()
    saved = torch.load(path, weights_only=True)["model"]
    assert len(saved) == summary["tensors"] > 0
    for key, value in saved.items():
        source_key = key.split(".", 1)[1] if key.startswith("backbone.") else key
        source_key = source_key.removeprefix("bottom_up.").removeprefix("roi_heads.")
        assert torch.equal(target_state[key], src[source_key]), key
    return summary


def test_export_resnet50_into_c4_faster_rcnn(tmp_path):
    classifier = _trained_classifier(["MODEL.BACKBONE.NAME", "build_resnet_backbone"] + R50_SMALL)
    detector = _detector(R50_SMALL)  # detectron2 defaults: R-50 C4, FrozenBN, res5 in ROI head
    path = str(tmp_path / "backbone.pth")
    summary = _assert_round_trip(classifier, detector, path, ("backbone.", "roi_heads.res5."))
    assert summary["uncovered_target_backbone_keys"] == []
    saved = torch.load(path, weights_only=True)["model"]
    assert any(k.startswith("roi_heads.res5.") for k in saved)
    # The public path (cfg.MODEL.WEIGHTS -> DetectionCheckpointer.load) gives the same weights.
    fresh = _detector(R50_SMALL)
    DetectionCheckpointer(fresh).load(path)
    w = classifier.backbone.state_dict()["res5.2.conv3.weight"]
    assert torch.equal(fresh.state_dict()["roi_heads.res5.2.conv3.weight"], w)


def test_export_ode_resnet_into_fpn_detector_and_depth_model(tmp_path):
    classifier = _trained_classifier(ODE_R18_SMALL)
    fpn_opts = ODE_R18_SMALL + [
        "MODEL.BACKBONE.NAME", "build_ode_resnet_fpn_backbone",
        "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
        "MODEL.FPN.IN_FEATURES", ["res2", "res3", "res4", "res5"], "MODEL.FPN.OUT_CHANNELS", 16,
        "MODEL.ROI_HEADS.IN_FEATURES", ["p2", "p3", "p4", "p5"],
        "MODEL.RPN.IN_FEATURES", ["p2", "p3", "p4", "p5", "p6"],
        "MODEL.ANCHOR_GENERATOR.SIZES", [[32], [64], [128], [256], [512]],
        "MODEL.ROI_HEADS.NAME", "StandardROIHeads", "MODEL.ROI_BOX_HEAD.NAME", "FastRCNNConvFCHead",
        "MODEL.ROI_BOX_HEAD.NUM_FC", 2, "MODEL.ROI_BOX_HEAD.FC_DIM", 32,
    ]
    detector = _detector(fpn_opts)
    summary = _assert_round_trip(classifier, detector, str(tmp_path / "fpn.pth"),
                                 ("backbone.bottom_up.",))
    # Only the FPN's own (new) layers are left at their initialisation.
    assert summary["uncovered_target_backbone_keys"]
    assert all(k.startswith("backbone.fpn_") for k in summary["uncovered_target_backbone_keys"])
    depth_yaml = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "Depth",
                              "ode_resnet18_scenes.yaml")
    if "DepthEstimator" not in META_ARCH_REGISTRY or not os.path.exists(depth_yaml):
        pytest.skip("the depth model or its config is not available in this tree")
    cfg = get_odedet_cfg()
    cfg.merge_from_file(depth_yaml)
    cfg.merge_from_list(ODE_R18_SMALL + ["MODEL.DEVICE", "cpu"])
    depth = build_model(cfg)
    summary = _assert_round_trip(classifier, depth, str(tmp_path / "depth.pth"), ("backbone.",))
    assert summary["uncovered_target_backbone_keys"] == []

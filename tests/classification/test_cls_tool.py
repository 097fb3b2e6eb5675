"""tools/train_cifar.py end to end (a few batches) and the trainer's checkpoint/resume."""
import importlib.util
import json
import os

import pytest
import torch
from detectron2.modeling import build_model

import odedet  # noqa: F401
from odedet.data.classification import build_loaders, load_classification_data
from odedet.engine import classification as engine
from odedet.modeling.classification import build_classifier_cfg

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "train_cifar.py")


def _tool():
    spec = importlib.util.spec_from_file_location("train_cifar_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tool_writes_the_report(tmp_path):
    out = tmp_path / "run"
    report = _tool().main([
        "--model", "mnist-odenet", "--epochs", "1", "--max-iters-per-epoch", "2",
        "--batch-size", "64", "--image-size", "12", "--tolerances", "0.1", "0.001",
        "--output-dir", str(out), "--quiet", "--latency-repeats", "1", "--no-memory",
        "MODEL.MNIST_NET.WIDTH", "8",
        "MODEL.ODE.STEP_SIZE_TRAIN", "0.5", "MODEL.ODE.STEP_SIZE_TEST", "0.5",
    ])
    for name in ("report.json", "report.md", "confusion.png", "training.png",
                 "tolerance_sweep.png", "config.yaml", "last_checkpoint.pth"):
        assert (out / name).is_file(), name
    for png in ("confusion.png", "training.png", "tolerance_sweep.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "report.json").read_text())
    assert saved["test"]["top1"] == report["test"]["top1"]
    assert saved["test"]["num_images"] == 359 and len(saved["test"]["per_class"]) == 10
    assert saved["cost"]["params"] > 0 and saved["cost"]["flops_per_image"] > 0
    assert saved["train"]["nfe_forward"] == 8 and saved["train"]["nfe_backward"] >= 8
    assert saved["train"]["images_per_s"] > 0 and saved["latency"]["ms_per_batch"] > 0
    assert saved["memory"] is None  # --no-memory (the fresh-process meter: test_cls_metrics)
    assert [r["rtol"] for r in saved["tolerance_sweep"]] == [0.1, 0.001]
    md = (out / "report.md").read_text()
    assert "top-1 accuracy" in md and "| dopri5 | 0.001 |" in md and "| peak training memory | not measured |" in md


def _setup(tmp_path):
    torch.manual_seed(0)
    data = load_classification_data("digits", image_size=10)
    cfg = build_classifier_cfg("resnet20", num_classes=10, pixel_mean=data.pixel_mean,
                               pixel_std=data.pixel_std, opts=["MODEL.CIFAR_RESNET.WIDTH", 4,
                                                               "MODEL.CIFAR_RESNET.DEPTH", 8])
    return build_model(cfg), build_loaders(data, 64, seed=0)


def test_resume_after_interruption_gives_the_same_weights(tmp_path, monkeypatch):
    kw = dict(epochs=2, num_classes=10, max_iters_per_epoch=2, quiet=True, log=False,
              signature={"model": "resnet20"})
    model, loaders = _setup(tmp_path)
    straight = engine.train_classifier(model, loaders, out_dir=str(tmp_path / "a"), **kw)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    calls = {"n": 0}
    real_eval = engine.evaluate_classifier

    def eval_then_die(*a, **k):  # the process "dies" right after the 2nd epoch's training
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_eval(*a, **k)

    model, loaders = _setup(tmp_path)
    monkeypatch.setattr(engine, "evaluate_classifier", eval_then_die)
    with pytest.raises(KeyboardInterrupt):
        engine.train_classifier(model, loaders, out_dir=str(tmp_path / "b"), **kw)
    monkeypatch.setattr(engine, "evaluate_classifier", real_eval)
    saved = torch.load(tmp_path / "b" / engine.CHECKPOINT, weights_only=True)
    assert saved["epoch"] == 0 and len(saved["history"]) == 1
    assert not [f for f in os.listdir(tmp_path / "b") if ".tmp-" in f]

    model, loaders = _setup(tmp_path)  # a new process: fresh model and loaders
    resumed = engine.train_classifier(model, loaders, out_dir=str(tmp_path / "b"), resume=True,
                                      **kw)
    assert [h["epoch"] for h in resumed] == [1, 2]
    for key in ("train_loss", "train_top1", "val_top1", "nfe_forward", "images"):
        assert resumed[0][key] == straight[0][key]
    assert resumed[1]["train_loss"] == pytest.approx(straight[1]["train_loss"], rel=1e-5)
    for k, v in model.state_dict().items():
        assert torch.allclose(v.float(), reference[k].float(), atol=1e-6), k

    with pytest.raises(ValueError, match="cannot resume.*other"):
        engine.train_classifier(model, loaders, out_dir=str(tmp_path / "b"), resume=True,
                                **dict(kw, signature={"model": "other"}))

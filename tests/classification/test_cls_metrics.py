"""Metrics against hand-computed cases; FLOPs and the tolerance sweep on a tiny ODE model."""
import pytest
import torch
from detectron2.modeling import build_model
from torch.utils.data import DataLoader, TensorDataset

import odedet  # noqa: F401
from odedet.evaluation.classification import ClassificationEvaluator, classification_metrics
from odedet.evaluation.classification_bench import params_and_flops, tolerance_sweep
from odedet.modeling.classification import build_classifier_cfg
from odedet.ode import iter_ode_blocks


def test_metrics_hand_computed():
    # true 0 0 1 1 2 / pred 0 1 1 1 0
    m = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 3, ["a", "b", "c"])
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["top1"] == pytest.approx(3 / 5)
    a, b, c = m["per_class"]
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((0.5, 0.5, 0.5, 2))
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((2 / 3, 1.0, 0.8))
    assert (c["precision"], c["recall"], c["f1"], c["class"]) == (0.0, 0.0, 0.0, "c")
    assert m["macro_precision"] == pytest.approx((0.5 + 2 / 3) / 3)
    assert m["macro_recall"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx(1.3 / 3)
    with pytest.raises(ValueError, match="equal-length"):
        classification_metrics([0, 1], [0], 2)


def test_evaluator_reports_percentages():
    ev = ClassificationEvaluator(2)
    ev.process([{"label": 0}, {"label": 1}], [{"pred_class": 0}, {"pred_class": 0}])
    ev.process([{"label": 1}], [{"pred_class": 1}])
    out = ev.evaluate()["classification"]
    assert out["top1"] == pytest.approx(200 / 3)
    assert out["macro_recall"] == pytest.approx(75.0)  # class 0: 1/1, class 1: 1/2


def _tiny_odenet(step=0.25):
    cfg = build_classifier_cfg("mnist-odenet", num_classes=3, pixel_mean=[100.0],
                               pixel_std=[50.0], opts=["MODEL.MNIST_NET.WIDTH", 8,
                                                       "MODEL.ODE.STEP_SIZE_TEST", step])
    model = build_model(cfg)
    torch.manual_seed(0)
    for _, block in iter_ode_blocks(model):  # non-trivial dynamics (the init is f = 0)
        for p in block.dynamics.parameters():
            torch.nn.init.normal_(p, std=0.5)
    return model


def test_flops_count_the_solver_steps():
    x = torch.rand(2, 1, 16, 16) * 255
    f = {s: params_and_flops(_tiny_odenet(s), x) for s in (1.0, 0.5, 0.25)}
    assert [f[s]["nfe_forward_traced"] for s in (1.0, 0.5, 0.25)] == [4, 8, 16]
    per_eval = (f[0.5]["flops_per_image"] - f[1.0]["flops_per_image"]) / 4
    assert per_eval > 0
    assert f[0.25]["flops_per_image"] - f[0.5]["flops_per_image"] == pytest.approx(8 * per_eval)
    assert f[1.0]["params"] == sum(p.numel() for p in _tiny_odenet().parameters())


def test_tolerance_sweep_tiny_model():
    model = _tiny_odenet()
    data = TensorDataset(torch.rand(6, 1, 16, 16) * 255, torch.tensor([0, 1, 2, 0, 1, 2]))
    loader = DataLoader(data, batch_size=3)
    before = [b.test_solver for _, b in iter_ode_blocks(model)]
    rows = tolerance_sweep(model, loader, 3, tolerances=(1e-1, 1e-5))
    assert [r["rtol"] for r in rows] == [1e-1, 1e-5] and all(r["method"] == "dopri5" for r in rows)
    assert rows[1]["nfe_forward_per_batch"] > rows[0]["nfe_forward_per_batch"] >= 2
    assert all(0 <= r["top1"] <= 1 and r["latency_ms_per_batch"] > 0 for r in rows)
    assert [b.test_solver for _, b in iter_ode_blocks(model)] == before  # restored
    resnet = build_model(build_classifier_cfg(
        "mnist-resnet", num_classes=3, pixel_mean=[0.0], pixel_std=[1.0],
        opts=["MODEL.MNIST_NET.WIDTH", 8]))
    assert tolerance_sweep(resnet, loader, 3) == []


def test_tolerance_sweep_reports_solver_failures():
    model = _tiny_odenet()
    for _, b in iter_ode_blocks(model):
        b.test_solver = b.test_solver.replace(max_num_steps=1)
    loader = DataLoader(TensorDataset(torch.rand(2, 1, 16, 16) * 255, torch.tensor([0, 1])))
    rows = tolerance_sweep(model, loader, 3, tolerances=(1e-6,))
    assert "step guard" in rows[0]["error"] and "top1" not in rows[0]


def test_memory_meter_target_trains_the_saved_model(tmp_path):
    """The step the fresh-process memory meter runs: same config and weights, real SGD steps."""
    from odedet.evaluation.classification_bench import classifier_train_step

    model = _tiny_odenet()
    cfg_path, weights = tmp_path / "c.yaml", tmp_path / "w.pth"
    cfg = build_classifier_cfg("mnist-odenet", num_classes=3, pixel_mean=[100.0],
                               pixel_std=[50.0], opts=["MODEL.MNIST_NET.WIDTH", 8])
    cfg_path.write_text(cfg.dump())
    torch.save(model.state_dict(), weights)
    step = classifier_train_step(str(cfg_path), str(weights), [2, 1, 12, 12], steps=1)
    inner = step.__closure__  # the rebuilt model holds the saved weights before the step
    built = next(c.cell_contents for c in inner if isinstance(c.cell_contents, torch.nn.Module))
    w0 = {k: v.clone() for k, v in built.state_dict().items()}
    assert all(torch.equal(w0[k], v) for k, v in model.state_dict().items())
    step()
    assert not torch.equal(built.head.weight, w0["head.weight"])

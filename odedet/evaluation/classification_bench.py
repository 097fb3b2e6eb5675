"""Cost measurements of a classifier: parameters and FLOPs (fvcore), inference latency, peak
training memory, and the evaluation-time tolerance sweep of its ODE blocks.

Every number is measured on the model given; nothing is estimated from a formula.
"""
from __future__ import annotations

import os
import statistics
import tempfile

import torch
from fvcore.nn import FlopCountAnalysis, parameter_count
from torch import nn
from torch.nn import functional as F

from odedet.ode import ODESolverError, iter_ode_blocks, nfe_counts, reset_nfe, set_solver

from .classification import _now, evaluate_classifier
from .meters import measure_peak_memory


class _Logits(nn.Module):
    """``model.logits`` as a module's forward, so fvcore can trace it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model.logits(images)


@torch.no_grad()
def params_and_flops(model, images: torch.Tensor) -> dict:
    """Parameter count and FLOPs of one eval-mode forward on ``images`` (fvcore counts one
    fused multiply-add as one flop). ODE blocks are traced through the solver, so their FLOPs
    are the dynamics' FLOPs times the forward NFE of the test solver on this input."""
    was_training = model.training
    model.eval()
    try:
        reset_nfe(model)
        flops = FlopCountAnalysis(_Logits(model), (images.to(model.device),))
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = flops.total()
        nfe = nfe_counts(model)["forward"]
    finally:
        model.train(was_training)
    return {
        "params": int(parameter_count(model)[""]),
        "flops_per_image": float(total) / images.shape[0],
        "nfe_forward_traced": int(nfe),
    }


@torch.no_grad()
def inference_latency(model, images: torch.Tensor, repeats: int = 5) -> dict:
    """Median wall-clock ms of an eval forward on ``images`` (after one warm-up run)."""
    was_training = model.training
    model.eval()
    images = images.to(model.device)
    try:
        model.logits(images)
        times = []
        for _ in range(repeats):
            t0 = _now(model)
            model.logits(images)
            times.append(_now(model) - t0)
    finally:
        model.train(was_training)
    ms = 1000 * statistics.median(times)
    return {"batch_size": int(images.shape[0]), "ms_per_batch": ms,
            "ms_per_image": ms / images.shape[0]}


def tolerance_sweep(model, loader, num_classes: int, tolerances=(1e-1, 1e-2, 1e-3, 1e-4),
                    method: str = "dopri5") -> list:
    """Accuracy, forward NFE and latency per batch at each rtol = atol in ``tolerances`` with
    the adaptive ``method``, by changing only the test solver (no retraining). The blocks'
    test solvers are restored afterwards. A model without ODE blocks gives []. A tolerance at
    which the solver fails (step guard, underflow) gives a row with "error" instead."""
    blocks = [b for _, b in iter_ode_blocks(model)]
    if not blocks:
        return []
    saved = [b.test_solver for b in blocks]
    rows = []
    try:
        for tol in tolerances:
            set_solver(model, "test", method=method, rtol=float(tol), atol=float(tol), step_size=0)
            try:
                ev = evaluate_classifier(model, loader, num_classes)
            except ODESolverError as e:  # e.g. the step guard at a tight tolerance: report it
                rows.append({"method": method, "rtol": float(tol), "atol": float(tol),
                             "error": str(e)})
                continue
            rows.append({
                "method": method, "rtol": float(tol), "atol": float(tol), "top1": ev["top1"],
                "nfe_forward_per_batch": ev["nfe_forward_per_batch"],
                "latency_ms_per_batch": ev["latency_ms_per_batch"],
            })
    finally:
        for b, s in zip(blocks, saved):
            b.test_solver = s
    return rows


def classifier_train_step(config_yaml: str, weights: str, shape: list, steps: int = 2):
    """Build target of :func:`odedet.evaluation.meters.measure_peak_memory`: the classifier of
    ``config_yaml`` with ``weights`` (so an adaptive solver takes the trained model's steps)
    and a random batch of ``shape``; returns a step running ``steps`` SGD iterations."""
    from detectron2.modeling import build_model

    from odedet.config import get_odedet_cfg

    cfg = get_odedet_cfg()
    cfg.merge_from_file(config_yaml)
    model = build_model(cfg)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = torch.rand(tuple(shape), device=model.device) * 255
    labels = torch.randint(0, cfg.MODEL.CLASSIFIER.NUM_CLASSES, (shape[0],), device=model.device)
    model.train()

    def step():
        for _ in range(steps):
            loss = F.cross_entropy(model.logits(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()

    return step


def peak_training_memory(model, cfg, batch_shape, steps: int = 2) -> dict:
    """Peak memory (MiB) of ``steps`` SGD steps of ``model`` on a batch of ``batch_shape``,
    over the memory held after building it: activations, gradients and optimizer state.

    Measured by :func:`odedet.evaluation.meters.measure_peak_memory` in a fresh process (CPU:
    peak resident set via VmHWM; CUDA: ``max_memory_allocated``) on the same config and
    weights.
    """
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path, weights = os.path.join(tmp, "config.yaml"), os.path.join(tmp, "weights.pth")
        with open(cfg_path, "w") as f:
            f.write(cfg.dump())
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, weights)
        out = measure_peak_memory(
            "odedet.evaluation.classification_bench:classifier_train_step",
            dict(config_yaml=cfg_path, weights=weights, shape=list(batch_shape), steps=steps),
            device=str(model.device),
        )
    return {"peak_train_memory_mb": out["peak_mb"], "method": out["method"] + ", fresh process",
            "steps": steps}

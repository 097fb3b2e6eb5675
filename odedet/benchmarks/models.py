"""``benchmark.py models``: parameters, FLOPs, CPU inference latency and training-step time of
ODE-Net and ResNet Faster R-CNNs at equal input size, with NFE for the ODE models."""
from __future__ import annotations

import logging

import torch
from tqdm import tqdm

from odedet.evaluation.meters import measure_latency
from odedet.ode import nfe_counts, reset_nfe

from .output import environment, new_figure, save_figure, table, write_outputs
from .zoo import build_detector, synthetic_detection_batch

logger = logging.getLogger(__name__)


def count_params(module: torch.nn.Module) -> float:
    """Parameters in millions."""
    return sum(p.numel() for p in module.parameters()) / 1e6


def backbone_gflops(model, size: int, device: str) -> float:
    """fvcore FLOPs of the backbone on one normalised size x size image (1 multiply-add = 1)."""
    from fvcore.nn import FlopCountAnalysis

    x = torch.zeros(1, 3, size, size, device=device)
    counter = FlopCountAnalysis(model.backbone, x)
    counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    counter.tracer_warnings("none")
    return counter.total() / 1e9


class _InferenceBoxes(torch.nn.Module):
    """image tensor -> (boxes, scores) through the detector's inference: fvcore traces tensors
    only (detectron2's own wrapper needs its caffe2 export package, absent here)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        inst = self.model.inference([{"image": image}], do_postprocess=False)[0]
        return inst.pred_boxes.tensor, inst.scores


def model_gflops(model, batch) -> float:
    """fvcore FLOPs of the whole detector's inference on one image (1 multiply-add = 1)."""
    from fvcore.nn import FlopCountAnalysis

    counter = FlopCountAnalysis(_InferenceBoxes(model), batch[0]["image"])
    counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    counter.tracer_warnings("none")
    return counter.total() / 1e9


def _timed_train_step(model, batch):
    from detectron2.utils.events import EventStorage

    def step():
        model.zero_grad(set_to_none=True)
        with EventStorage(0):
            losses = model(batch)
        sum(losses.values()).backward()

    return step


def measure_model(name: str, args) -> dict:
    model = build_detector(name, device=args.device, config=args.model_configs.get(name, ""))
    batch = synthetic_detection_batch(args.size, device=args.device)
    row = dict(model=name, input=f"{args.size}x{args.size}", params_m=count_params(model),
               backbone_params_m=count_params(model.backbone))
    bottom_up = getattr(model.backbone, "bottom_up", None)  # FPN: the ResNet part alone
    if bottom_up is not None:
        row["bottom_up_params_m"] = count_params(bottom_up)
    model.eval()
    with torch.no_grad():
        row["backbone_gflops"] = backbone_gflops(model, args.size, args.device)
        try:
            row["model_gflops"] = model_gflops(model, batch)
        except Exception as e:  # tracing a detector can fail on data-dependent ops: say so
            logger.warning(f"fvcore could not trace {name}: {e}")
            row["model_gflops"] = float("nan")
        reset_nfe(model)
        model([{"image": batch[0]["image"]}])
        row["nfe_infer"] = nfe_counts(model)["forward"]
        lat = measure_latency(lambda: model([{"image": batch[0]["image"]}]), warmup=args.warmup,
                              repeat=args.repeat, device=args.device)
    row["infer_ms"] = 1e3 * lat.median
    model.train()
    step = _timed_train_step(model, batch)
    reset_nfe(model)
    step()
    counts = nfe_counts(model)
    row["nfe_train_fwd"], row["nfe_train_bwd"] = counts["forward"], counts["backward"]
    row["train_step_ms"] = 1e3 * measure_latency(step, warmup=args.warmup, repeat=args.repeat,
                                                 device=args.device).median
    return row


def summarize(rows) -> dict:
    by = {r["model"]: r for r in rows}
    out = {}
    if "ODE-FPN" in by and "R-101-FPN" in by:
        out["ODE-FPN backbone params / R-101-FPN backbone params"] = (
            by["ODE-FPN"]["backbone_params_m"] / by["R-101-FPN"]["backbone_params_m"])
        if "bottom_up_params_m" in by["ODE-FPN"]:
            out["ODE-FPN bottom-up params / R-101-FPN bottom-up params"] = (
                by["ODE-FPN"]["bottom_up_params_m"] / by["R-101-FPN"]["bottom_up_params_m"])
    if "ODE-FPN" in by and "R-50-FPN" in by:
        out["ODE-FPN backbone params / R-50-FPN backbone params"] = (
            by["ODE-FPN"]["backbone_params_m"] / by["R-50-FPN"]["backbone_params_m"])
    return out


def plot(rows, out_dir, env) -> str:
    fig, ax = new_figure("Detector cost", "backbone parameters (M)", "inference latency (ms/image)")
    for r in rows:
        ax.scatter(r["backbone_params_m"], r["infer_ms"], s=40)
        ax.annotate(r["model"], (r["backbone_params_m"], r["infer_ms"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    return save_figure(fig, out_dir, "models_cost.png", env)


def run(args) -> dict:
    env = environment()
    rows, skipped = [], []
    for name in tqdm(args.models, desc="models", unit="model"):
        try:
            rows.append(measure_model(name, args))
        except (FileNotFoundError, KeyError) as e:  # a model whose config is not available
            skipped.append(f"{name}: {e}")
    notes = [
        f"One synthetic {args.size}x{args.size} image, batch 1, random init (cost only). FLOPs by "
        "fvcore (a multiply-add counts as one). Latency: median of "
        f"{args.repeat} runs after {args.warmup} warm-up(s); train step = forward + backward.",
    ] + [f"Skipped {s}" for s in skipped]
    plots = [plot(rows, args.out, env)] if rows else []
    return write_outputs(args.out, "models", title="Model cost",
                         tables=[table("Model cost", rows)], extra=summarize(rows),
                         notes=notes, plots=plots, env=env)

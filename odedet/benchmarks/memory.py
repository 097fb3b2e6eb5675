"""``benchmark.py memory``: peak training memory vs depth, and of whole detectors.

Every point runs in a fresh subprocess (:func:`odedet.evaluation.meters.measure_peak_memory`);
the step builders below are what those subprocesses import.
"""
from __future__ import annotations

import torch
from tqdm import tqdm

from odedet.evaluation.meters import measure_peak_memory

from .output import environment, new_figure, save_figure, table, write_outputs
from .stacks import ResidualStack, block_input, make_dynamics, ode_block

BLOCK_VARIANTS = ("resnet", "ode-direct", "ode-adjoint")


def block_train_step(variant: str, depth: int, batch: int = 16, channels: int = 64,
                     size: int = 32, device: str = "cpu"):
    """Build a training step: L-block residual stack, or one ODE block with K = depth Euler steps
    (direct backprop or adjoint); forward, sum-loss, backward."""
    if variant == "resnet":
        model = ResidualStack(depth, channels)
    elif variant in ("ode-direct", "ode-adjoint"):
        model = ode_block(make_dynamics(channels), "euler", 1.0 / depth, variant == "ode-adjoint")
    else:
        raise ValueError(f"unknown variant {variant!r}; use one of {BLOCK_VARIANTS}")
    model.to(device).train()
    x = block_input(batch, channels, size).to(device)

    def step():
        model(x).sum().backward()

    return step


def detector_train_step(model: str, size: int = 512, device: str = "cpu", config: str = ""):
    """Build a Faster R-CNN training step on one synthetic ``size`` x ``size`` image."""
    from detectron2.utils.events import EventStorage

    from .zoo import build_detector, synthetic_detection_batch

    detector = build_detector(model, device=device, config=config)
    detector.train()
    batch = synthetic_detection_batch(size, device=device)

    def step():
        with EventStorage(0):  # detectron2's losses log into an event storage
            losses = detector(batch)
        sum(losses.values()).backward()

    return step


def run_block_points(depths, variants, args, progress) -> list[dict]:
    rows = []
    for variant in variants:
        for depth in depths:
            kwargs = dict(variant=variant, depth=depth, batch=args.batch, channels=args.channels,
                          size=args.size, device=args.device)
            m = measure_peak_memory("odedet.benchmarks.memory:block_train_step", kwargs,
                                    device=args.device, threads=args.threads)
            rows.append(dict(variant=variant, depth=depth, peak_mb=m["peak_mb"],
                             step_s=m["step_seconds"], method=m["method"]))
            progress.update(1)
    return rows


def run_detector_points(models, args, progress) -> list[dict]:
    rows = []
    for name in models:
        kwargs = dict(model=name, size=args.det_size, device=args.device,
                      config=args.model_configs.get(name, ""))
        m = measure_peak_memory("odedet.benchmarks.memory:detector_train_step", kwargs,
                                device=args.device, threads=args.threads)
        rows.append(dict(model=name, input=f"{args.det_size}x{args.det_size}",
                         peak_mb=m["peak_mb"], step_s=m["step_seconds"]))
        progress.update(1)
    return rows


def _ratio(rows, variant, depths):
    peaks = {r["depth"]: r["peak_mb"] for r in rows if r["variant"] == variant}
    lo, hi = min(depths), max(depths)
    return peaks[hi] / peaks[lo] if peaks.get(lo) else float("nan")


def summarize(block_rows, det_rows, depths) -> dict:
    """Ratios the targets are stated in (adjoint flat, unrolled grows; ODE-FPN vs R-101-FPN)."""
    lo, hi = min(depths), max(depths)
    summary = {f"{v} peak(K={hi})/peak(K={lo})": _ratio(block_rows, v, depths)
               for v in BLOCK_VARIANTS if any(r["variant"] == v for r in block_rows)}
    det = {r["model"]: r["peak_mb"] for r in det_rows}
    if "ODE-FPN" in det and "R-101-FPN" in det:
        summary["ODE-FPN / R-101-FPN training peak"] = det["ODE-FPN"] / det["R-101-FPN"]
    return summary


def plot_blocks(rows, depths, out_dir, env) -> str:
    fig, ax = new_figure("Peak training memory vs depth", "blocks L / solver steps K",
                         "peak memory over baseline (MB)")
    for variant in BLOCK_VARIANTS:
        pts = sorted((r["depth"], r["peak_mb"]) for r in rows if r["variant"] == variant)
        if pts:
            ax.plot(*zip(*pts), marker="o", label=variant)
    ax.set_xscale("log", base=2)
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.legend()
    return save_figure(fig, out_dir, "memory_vs_depth.png", env)


def plot_detectors(rows, out_dir, env) -> str:
    fig, ax = new_figure("Faster R-CNN training-step peak memory", "model", "peak memory (MB)")
    ax.bar([r["model"] for r in rows], [r["peak_mb"] for r in rows], color="tab:blue")
    return save_figure(fig, out_dir, "memory_detectors.png", env)


def run(args) -> dict:
    """Entry point of the subcommand; ``args`` from ``tools/benchmark.py memory``."""
    env = environment()
    total = len(args.depths) * len(args.variants) + len(args.models)
    with tqdm(total=total, desc="memory points", unit="pt") as progress:
        block_rows = run_block_points(args.depths, args.variants, args, progress)
        det_rows = run_detector_points(args.models, args, progress)
    plots = [plot_blocks(block_rows, args.depths, args.out, env)] if block_rows else []
    if det_rows:
        plots.append(plot_detectors(det_rows, args.out, env))
    notes = [
        f"Block input {args.batch}x{args.channels}x{args.size}x{args.size}, GroupNorm conv "
        "dynamics (ConvODEFunc); ODE blocks use Euler with K steps on [0, 1]. Each point is one "
        "training step (forward, sum loss, backward) in a fresh process after one warm-up step; "
        "peak = peak RSS (CPU) or max_memory_allocated (CUDA) minus the level before the step "
        "(model, input and one-time allocations excluded).",
    ]
    tables = [table("ODE block vs residual stack", block_rows,
                    ["variant", "depth", "peak_mb", "step_s", "method"])]
    if det_rows:
        tables.append(table("Faster R-CNN training step", det_rows))
    return write_outputs(args.out, "memory", title="Peak training memory", tables=tables,
                         extra=summarize(block_rows, det_rows, args.depths or [1]),
                         notes=notes, plots=plots, env=env)

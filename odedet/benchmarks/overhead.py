"""``benchmark.py overhead``: forward+backward time of a fixed-step ODE block vs the unrolled
weight-tied stack that performs exactly the same function evaluations, as ratios in one run.

The candidates are timed interleaved (:func:`odedet.evaluation.meters.compare_latency`), so the
ratios are robust to the load drift of a shared machine. Plain ``torchdiffeq.odeint`` /
``odeint_adjoint`` on the same dynamics are timed too, as the reference the ODE block's own
fixed-grid path is measured against.
"""
from __future__ import annotations

import os
import statistics

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint
from tqdm import tqdm

from odedet.evaluation.meters import compare_latency

from .output import environment, new_figure, save_figure, table, write_outputs
from .stacks import UnrolledFixedGrid, block_input, make_dynamics, ode_block


class TorchdiffeqBlock(nn.Module):
    """Plain torchdiffeq on [0, 1] with a fixed grid: the reference implementation."""

    def __init__(self, dynamics, method, step_size, adjoint):
        super().__init__()
        self.dynamics, self.adjoint = dynamics, adjoint
        self.kwargs = dict(method=method, options=dict(step_size=step_size))

    def forward(self, x):
        t = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
        if self.adjoint:
            return odeint_adjoint(self.dynamics, x, t, adjoint_params=tuple(
                self.dynamics.parameters()), adjoint_options=self.kwargs["options"], **self.kwargs)[-1]
        return odeint(self.dynamics, x, t, **self.kwargs)[-1]


def candidates(method: str, steps: int, channels: int) -> dict:
    """name -> module; all share ONE dynamics module, so they compute the same function."""
    dyn = make_dynamics(channels)
    h = 1.0 / steps
    return {
        "unrolled": UnrolledFixedGrid(dyn, method, h),
        "ode-direct": ode_block(dyn, method, h, adjoint=False),
        "ode-adjoint": ode_block(dyn, method, h, adjoint=True),
        "torchdiffeq-direct": TorchdiffeqBlock(dyn, method, h, adjoint=False),
        "torchdiffeq-adjoint": TorchdiffeqBlock(dyn, method, h, adjoint=True),
    }


def train_step(module: nn.Module, x: torch.Tensor):
    """One forward+backward: a callable for the latency meter."""

    def step():
        for p in module.parameters():
            p.grad = None
        x.grad = None
        module(x).sum().backward()

    return step


def profile_steps(steps: dict, out_dir: str, tag: str) -> str:
    """torch.profiler table (top ops by self CPU time) of one step of each candidate."""
    from torch.profiler import ProfilerActivity, profile

    path = os.path.join(out_dir, f"overhead_profile_{tag}.txt")
    with open(path, "w") as f:
        for name, step in steps.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step()
            f.write(f"==== {name} ====\n")
            f.write(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
            f.write("\n")
    return os.path.basename(path)


def measure(method, steps, args, progress) -> list[dict]:
    mods = candidates(method, steps, args.channels)
    x = block_input(args.batch, args.channels, args.size).to(args.device).requires_grad_(True)
    for m in mods.values():
        m.to(args.device).train()
    fns = {name: train_step(m, x) for name, m in mods.items()}
    stats = compare_latency(fns, warmup=args.warmup, repeat=args.repeat, device=args.device,
                            progress=progress)
    base = stats["unrolled"]
    rows = []
    for name, s in stats.items():
        # Paired per-round ratios: both runs of a round saw the same machine load.
        paired = statistics.median(a / b for a, b in zip(s.times, base.times))
        paired_cpu = statistics.median(a / b for a, b in zip(s.cpu_times, base.cpu_times))
        rows.append(dict(method=method, steps=steps, variant=name, median_ms=1e3 * s.median,
                         min_ms=1e3 * s.min, ratio_vs_unrolled=paired,
                         ratio_of_mins=s.min / base.min, cpu_ratio=paired_cpu))
    if args.profile:
        profile_steps(fns, args.out, f"{method}_{steps}")
    return rows


def plot(rows, out_dir, env) -> str:
    fig, ax = new_figure("Fixed-grid ODE block vs unrolled weight-tied stack",
                         "variant", "forward+backward time / unrolled")
    labels = [f"{r['variant']}\n{r['method']} K={r['steps']}" for r in rows]
    ax.bar(range(len(rows)), [r["ratio_vs_unrolled"] for r in rows], color="tab:orange")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    return save_figure(fig, out_dir, "overhead.png", env)


def run(args) -> dict:
    env = environment()
    configs = [(m, k) for m in args.methods for k in args.steps]
    with tqdm(total=len(configs) * args.repeat, desc="overhead rounds", unit="round") as progress:
        rows = [r for m, k in configs for r in measure(m, k, args, progress)]
    summary = {}
    for r in rows:
        if r["variant"] != "unrolled":
            key = f"{r['variant']} / unrolled ({r['method']}, K={r['steps']})"
            summary[key + " wall"] = r["ratio_vs_unrolled"]
            summary[key + " CPU"] = r["cpu_ratio"]
    notes = [
        f"Input {args.batch}x{args.channels}x{args.size}x{args.size}, GroupNorm conv dynamics; "
        f"forward + sum-loss backward; median of {args.repeat} interleaved rounds after "
        f"{args.warmup} warm-up rounds; ratio_vs_unrolled is the median of per-round ratios "
        "(each round runs every variant once, so both sides of a ratio saw the same load); cpu_ratio is "
        "the same with process CPU time, which other processes' load barely affects. All variants share one dynamics module and perform the "
        "same evaluations; the adjoint variants additionally re-evaluate f in the backward solve.",
    ]
    return write_outputs(args.out, "overhead", title="Solver overhead (fixed grid)",
                         tables=[table("Solver overhead (fixed grid)", rows)],
                         extra=summary, notes=notes, plots=[plot(rows, args.out, env)], env=env)

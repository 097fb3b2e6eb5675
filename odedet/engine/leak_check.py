"""Resident-memory growth over many iterations of an ODE model (training and evaluation).

A leak shows as RSS growing linearly with the iteration count: tensors kept alive by a graph
held across iterations, counters accumulating, caches keyed by step. :func:`measure_rss` runs
warm-up iterations (allocator pools and lazy init settle), then samples RSS every ``every``
iterations and fits a least-squares slope, reported in MiB per 1000 iterations.

CLI: ``python tools/leak_check.py`` (see ``--help``).
"""
from __future__ import annotations

import gc
from typing import Callable

import numpy as np
import psutil
import torch
from torch import nn

from odedet.ode import ConvODEFunc, ODEBlock, SolverOptions

MIB = 2**20


class TinyODENet(nn.Module):
    """Conv stem -> ODEBlock(ConvODEFunc) -> global pool -> linear: the smallest model that runs
    the whole ODE machinery (adjoint or direct backprop, NFE counters)."""

    def __init__(self, channels: int = 16, classes: int = 10, solver: SolverOptions | None = None):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.ode = ODEBlock(ConvODEFunc(channels, norm="GN"), train_solver=solver)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.ode(self.stem(x)).mean(dim=(2, 3)))


def tiny_steps(model: nn.Module, batch: int = 8, size: int = 16, lr: float = 0.01):
    """(train_step, eval_step) closures over random data for :class:`TinyODENet`."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, model.head.out_features, (batch,))

    def train_step():
        model.train()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def eval_step():
        model.eval()
        model(x)

    return train_step, eval_step


def measure_rss(step: Callable[[], None], iters: int, warmup: int = 10, every: int = 5) -> dict:
    """Run ``step`` ``warmup + iters`` times; returns RSS samples (MiB), the fitted slope
    (MiB / 1000 iterations) and the total growth (MiB) over the measured iterations."""
    proc = psutil.Process()
    for _ in range(warmup):
        step()
    samples, xs = [], []
    for i in range(iters + 1):
        if i % every == 0:
            gc.collect()
            samples.append(proc.memory_info().rss / MIB)
            xs.append(i)
        if i < iters:
            step()
    slope = float(np.polyfit(xs, samples, 1)[0]) * 1000 if len(xs) > 1 else 0.0
    mid = len(samples) // 2
    halves = (samples[mid] - samples[0], samples[-1] - samples[mid])
    return {
        "iterations": iters, "rss_start_mib": samples[0], "rss_end_mib": samples[-1],
        "growth_mib": samples[-1] - samples[0], "slope_mib_per_1k_iters": slope,
        # A leak grows RSS in both halves of the run; machine noise (an allocator arena or a
        # page-cache hiccup) is a one-off step in one of them. The smaller half's growth is the
        # noise-robust leak figure: a 1 MiB/iteration leak adds iters/2 MiB to it.
        "growth_halves_mib": list(halves), "min_half_growth_mib": min(halves),
        "samples_mib": samples,
    }

"""The ResNet-side references of the block-level benchmarks.

* :class:`ResidualStack`: L residual blocks ``h <- h + f_l(h)`` with separate weights (a ResNet
  stage), the memory reference of an ODE block with K = L steps.
* :class:`UnrolledFixedGrid`: ONE dynamics module called exactly as a fixed-grid ODE solver
  calls it (same time grid, same Euler / midpoint / RK4-3/8 updates in the same floating-point
  order as torchdiffeq), written as a plain weight-tied loop. It computes the same function as an
  ``ODEBlock`` with that solver, so timing both isolates the solver machinery's overhead.
"""
from __future__ import annotations

import torch
from torch import nn

from odedet.ode import ConvODEFunc, ODEBlock, SolverOptions

UNROLLED_METHODS = ("euler", "midpoint", "rk4")
_ONE_THIRD = 1 / 3
_TWO_THIRDS = 2 / 3


def make_dynamics(channels: int, seed: int = 0) -> ConvODEFunc:
    """GroupNorm conv dynamics (the paper's), not zero-initialised so gradients are non-trivial."""
    torch.manual_seed(seed)
    return ConvODEFunc(channels, norm="GN", zero_init=False)


def time_grid(t_end: float, step_size: float, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """The grid torchdiffeq's fixed-grid solvers use for ``step_size`` on [0, t_end]."""
    t = torch.tensor([0.0, t_end], dtype=dtype, device=device)
    niters = int(torch.ceil((t[1] - t[0]) / step_size + 1).item())
    grid = torch.arange(0, niters, dtype=dtype, device=device) * step_size + t[0]
    grid[-1] = t[-1]
    return grid


class ResidualStack(nn.Module):
    """``depth`` residual blocks with their own weights: h <- h + f_l(0, h)."""

    def __init__(self, depth: int, channels: int, seed: int = 0):
        super().__init__()
        self.blocks = nn.ModuleList(make_dynamics(channels, seed + i) for i in range(depth))

    def forward(self, h):
        t = h.new_zeros(())
        for f in self.blocks:
            h = h + f(t, h)
        return h


class UnrolledFixedGrid(nn.Module):
    """A weight-tied residual stack performing a fixed-grid solver's evaluations of ``dynamics``."""

    def __init__(self, dynamics: nn.Module, method: str = "euler", step_size: float = 0.125,
                 t_end: float = 1.0):
        super().__init__()
        if method not in UNROLLED_METHODS:
            raise ValueError(f"unrolled stack supports {UNROLLED_METHODS}, got {method!r}")
        self.dynamics, self.method = dynamics, method
        self.step_size, self.t_end = step_size, t_end

    def forward(self, h):
        grid = time_grid(self.t_end, self.step_size, h.dtype, h.device)
        f = self.dynamics
        for t0, t1 in zip(grid[:-1], grid[1:]):
            dt = t1 - t0
            if self.method == "euler":
                dy = dt * f(t0, h)
            elif self.method == "midpoint":
                half_dt = 0.5 * dt
                dy = dt * f(t0 + half_dt, h + f(t0, h) * half_dt)
            else:
                k1 = f(t0, h)
                k2 = f(t0 + dt * _ONE_THIRD, h + dt * k1 * _ONE_THIRD)
                k3 = f(t0 + dt * _TWO_THIRDS, h + dt * (k2 - k1 * _ONE_THIRD))
                k4 = f(t1, h + dt * (k1 - k2 + k3))
                dy = (k1 + 3 * (k2 + k3) + k4) * dt * 0.125
            h = h + dy
        return h


def ode_block(dynamics: nn.Module, method: str, step_size: float, adjoint: bool) -> ODEBlock:
    """An ODE block integrating ``dynamics`` over [0, 1] with a fixed-grid solver."""
    opts = SolverOptions(method=method, step_size=step_size, adjoint=adjoint)
    return ODEBlock(dynamics, t_end=1.0, train_solver=opts, test_solver=opts)


def block_input(batch: int, channels: int, size: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, size, size, generator=g)

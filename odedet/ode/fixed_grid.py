"""A lean fixed-grid integrator and adjoint that reproduce torchdiffeq's results bit for bit.

torchdiffeq is general (tuples, events, perturbation, interpolation at any output times); for an
ODE block on a fixed grid over [0, T] that generality costs time on every evaluation:
``y.abs()`` on the whole state (to pick the time dtype), a copy of every output into a solution
buffer, and in the adjoint a ``torch.cat`` of (t, y, adj_y, every parameter) into one flat vector
plus a negation of it at every evaluation. This module performs exactly the same floating-point
operations on the state, in the same order, without that machinery:

* the time grid is built as torchdiffeq builds it (``arange * step + t0``, last point = T);
* Euler, midpoint and RK4 (torchdiffeq's 3/8-rule ``rk4``) steps use torchdiffeq's expressions;
* the adjoint integrates the same augmented system (y, adj_y, adj_params) backwards with the same
  method and grid. torchdiffeq negates time and the dynamics to integrate "forwards" in -t; here
  the grid is negated instead (dt < 0). Negation is exact in IEEE arithmetic, so every product
  and sum is the same number up to sign, and the results are identical.

Adaptive methods and the other fixed-grid methods keep using torchdiffeq.
"""
from __future__ import annotations

import torch

FAST_METHODS = ("euler", "midpoint", "rk4")
_ONE_THIRD = 1 / 3
_TWO_THIRDS = 2 / 3


def fixed_grid(t0: torch.Tensor, t1: torch.Tensor, step_size: float) -> torch.Tensor:
    """torchdiffeq's ``_grid_constructor_from_step_size`` for an increasing interval [t0, t1]."""
    niters = torch.ceil((t1 - t0) / step_size + 1).item()
    grid = torch.arange(0, niters, dtype=t0.dtype, device=t0.device) * step_size + t0
    grid[-1] = t1
    return grid


def rk_step(method: str, func, t0, dt, t1, y: list, n_feed: int) -> list:
    """One step's increment ``dy`` for the state list ``y``.

    ``func(t, y[:n_feed]) -> list`` returns derivatives for ALL components of ``y``; components
    past ``n_feed`` are integrals only (they never feed back into ``func``), so their stage
    states are not formed: only their increments, exactly as torchdiffeq computes them.
    """
    feed = y[:n_feed]
    if method == "euler":
        return [dt * k for k in func(t0, feed)]
    if method == "midpoint":
        half_dt = 0.5 * dt
        k1 = func(t0, feed)
        k2 = func(t0 + half_dt, [y_ + f * half_dt for y_, f in zip(feed, k1)])
        return [dt * k for k in k2]
    if method == "rk4":  # torchdiffeq's rk4_alt_step_func (3/8 rule)
        k1 = func(t0, feed)
        k2 = func(t0 + dt * _ONE_THIRD, [y_ + dt * a * _ONE_THIRD for y_, a in zip(feed, k1)])
        k3 = func(t0 + dt * _TWO_THIRDS,
                  [y_ + dt * (b - a * _ONE_THIRD) for y_, a, b in zip(feed, k1, k2)])
        k4 = func(t1, [y_ + dt * (a - b + c) for y_, a, b, c in zip(feed, k1, k2, k3)])
        return [(a + 3 * (b + c) + d) * dt * 0.125 for a, b, c, d in zip(k1, k2, k3, k4)]
    raise ValueError(f"lean fixed-grid path supports {FAST_METHODS}, got {method!r}")


def integrate(method: str, func, y: list, grid: torch.Tensor, n_feed: int) -> list:
    """Integrate the state list ``y`` over ``grid`` (increasing or decreasing)."""
    for t0, t1 in zip(grid[:-1], grid[1:]):
        dy = rk_step(method, func, t0, t1 - t0, t1, y, n_feed)
        y = [y_ + d for y_, d in zip(y, dy)]
    return y


def time_dtype(state_dtype: torch.dtype) -> torch.dtype:
    """The time grid's dtype: the state's (as torchdiffeq), but at least float32, so that a
    bfloat16/float16 state under autocast does not round the grid (0.1 is not a bf16 number)."""
    if state_dtype in (torch.float32, torch.float64):
        return state_dtype
    return torch.float32


class _AutocastState:
    """The autocast state of a forward, re-entered by the adjoint's backward re-evaluations so
    they compute f in the same precision (autograd runs backward outside the forward's
    ``torch.autocast`` block; without this a bf16 state meets fp32 weights and fails)."""

    def __init__(self, device_type: str):
        self.device_type = device_type if device_type in ("cpu", "cuda", "xpu", "mps") else "cpu"
        self.enabled = torch.is_autocast_enabled(self.device_type)
        self.dtype = torch.get_autocast_dtype(self.device_type)

    def __call__(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


def odeint_fixed(func, y0: torch.Tensor, t_end: float, step_size: float, method: str):
    """y(T) of dy/dt = func(t, y), y(0) = y0, backpropagated through the solver's operations."""
    t = torch.tensor([0.0, t_end], dtype=time_dtype(y0.dtype), device=y0.device)
    grid = fixed_grid(t[0], t[1], step_size)
    return integrate(method, lambda s, ys: [func(s, ys[0])], [y0], grid, 1)[0]


def odeint_fixed_adjoint(func, y0: torch.Tensor, t_end: float, step_size: float, method: str,
                         params: tuple):
    """y(T) as :func:`odeint_fixed`, with gradients by the adjoint method (memory O(1) in the
    number of steps): the result torchdiffeq's ``odeint_adjoint`` gives for these settings."""
    params = tuple(p for p in params if p.requires_grad)
    return _FixedGridAdjoint.apply(y0, func, float(t_end), float(step_size), method, *params)


class _FixedGridAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y0, func, t_end, step_size, method, *params):
        with torch.no_grad():
            yT = odeint_fixed(func, y0, t_end, step_size, method)
        ctx.func, ctx.t_end, ctx.step_size, ctx.method = func, t_end, step_size, method
        ctx.autocast = _AutocastState(y0.device.type)
        ctx.save_for_backward(yT, *params)
        return yT

    @staticmethod
    def backward(ctx, grad_yT):
        yT, *params = ctx.saved_tensors
        func = ctx.func
        # torchdiffeq's backward grid: built on the negated interval [-T, -0], then negated back.
        s = -torch.tensor([ctx.t_end, 0.0], dtype=time_dtype(yT.dtype), device=yT.device)
        grid = -fixed_grid(s[0], s[1], ctx.step_size)
        grad_yT = grad_yT.to(yT.dtype)

        def augmented(t, state):
            y, adj_y = state
            with torch.enable_grad(), ctx.autocast():
                y = y.detach().requires_grad_(True)
                f = func(t.detach(), y)
                vjps = torch.autograd.grad(f, (y, *params), -adj_y.to(f.dtype),
                                           allow_unused=True)
            vjps = [torch.zeros_like(x) if v is None else v.to(x.dtype)
                    for x, v in zip((y, *params), vjps)]
            return [f.detach().to(y.dtype), *vjps]

        with torch.no_grad():
            state = [yT, grad_yT, *[torch.zeros_like(p) for p in params]]
            state = integrate(ctx.method, augmented, state, grid, 2)
        return (state[1], None, None, None, None, *state[2:])

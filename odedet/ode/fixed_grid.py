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

import functools

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


def rk_step(method: str, func, t0, dt, t1, y: list, n_feed: int, unit_dt: bool = False) -> list:
    """One step's increment ``dy`` for the state list ``y``.

    ``func(t, y[:n_feed]) -> list`` returns derivatives for ALL components of ``y``; components
    past ``n_feed`` are integrals only (they never feed back into ``func``), so their stage
    states are not formed: only their increments, exactly as torchdiffeq computes them.
    ``unit_dt`` says ``dt`` is exactly 1: the products of a state by ``dt`` are skipped (x * 1
    is x in IEEE arithmetic, so the numbers are the same, one full-size multiply fewer).
    """
    feed = y[:n_feed]

    def times_dt(x):
        return x if unit_dt else dt * x

    if method == "euler":
        return [times_dt(k) for k in func(t0, feed)]
    if method == "midpoint":
        half_dt = 0.5 * dt
        k1 = func(t0, feed)
        k2 = func(t0 + half_dt, [y_ + f * half_dt for y_, f in zip(feed, k1)])
        return [times_dt(k) for k in k2]
    if method == "rk4":  # torchdiffeq's rk4_alt_step_func (3/8 rule)
        k1 = func(t0, feed)
        k2 = func(t0 + dt * _ONE_THIRD, [y_ + times_dt(a) * _ONE_THIRD for y_, a in zip(feed, k1)])
        k3 = func(t0 + dt * _TWO_THIRDS,
                  [y_ + times_dt(b - a * _ONE_THIRD) for y_, a, b in zip(feed, k1, k2)])
        y4 = [y_ + times_dt(a - b + c) for y_, a, b, c in zip(feed, k1, k2, k3)]
        # torchdiffeq sums (k1 + 3 (k2 + k3)) + k4 left to right: its first two terms are formed
        # before k4 is evaluated (the same operations in the same order), so k1..k3 are freed
        # first and the 4th evaluation holds 3 maps per component (y, its input, the partial
        # sum) instead of 5. Outputs components past n_feed (integrals only) likewise.
        if torch.is_grad_enabled():
            partial = [a + 3 * (b + c) for a, b, c in zip(k1, k2, k3)]
        else:  # one new tensor per component: the same three operations (IEEE + and * commute)
            partial = [(b + c).mul_(3).add_(a) for a, b, c in zip(k1, k2, k3)]
        del k1, k2, k3
        k4 = func(t1, y4)
        del y4
        return [times_dt(p + d) * 0.125 for p, d in zip(partial, k4)]
    raise ValueError(f"lean fixed-grid path supports {FAST_METHODS}, got {method!r}")


def grid_steps(grid: torch.Tensor, find_unit: bool = False) -> list:
    """The steps ``(t0, dt, t1, unit_dt)`` of ``grid`` (``dt = t1 - t0`` as torchdiffeq forms
    it). ``find_unit`` reads each ``dt`` to flag the steps of exactly 1 (a device sync on CUDA;
    done once per cached grid, see :func:`cached_grid_steps`)."""
    steps = []
    for t0, t1 in zip(grid[:-1], grid[1:]):
        dt = t1 - t0
        steps.append((t0, dt, t1, bool(find_unit and dt.item() == 1.0)))
    return steps


_STEPS_CACHE: dict = {}
_STEPS_CACHE_SIZE = 64


def cached_grid_steps(t_end: float, step_size: float, dtype: torch.dtype, device) -> list:
    """:func:`grid_steps` of the forward grid over [0, t_end], built once per setting.

    Building the grid (``ceil``, ``item``, ``arange``) and slicing it cost tens of microseconds
    per block call, several percent of a small ODE block's evaluation. The cached 0-d tensors
    are never modified in place. Bounded: a random end time per iteration (STEER) would
    otherwise grow it without end.
    """
    key = (float(t_end), float(step_size), dtype, torch.device(device))
    steps = _STEPS_CACHE.get(key)
    if steps is None:
        t = torch.tensor([0.0, t_end], dtype=dtype, device=device)
        steps = grid_steps(fixed_grid(t[0], t[1], step_size), find_unit=True)
        if len(_STEPS_CACHE) >= _STEPS_CACHE_SIZE:
            _STEPS_CACHE.clear()
        _STEPS_CACHE[key] = steps
    return steps


def integrate(method: str, func, y: list, grid, n_feed: int) -> list:
    """Integrate the state list ``y`` over ``grid`` (increasing or decreasing), a time tensor or
    the steps of :func:`grid_steps`."""
    steps = grid_steps(grid) if isinstance(grid, torch.Tensor) else grid
    owned = False  # after the first step the state tensors are ours (the caller holds y0)
    for t0, dt, t1, unit_dt in steps:
        dy = rk_step(method, func, t0, dt, t1, y, n_feed, unit_dt)
        if owned and not torch.is_grad_enabled():
            y = [_add_into(y_, d) for y_, d in zip(y, dy)]
        else:
            y = [y_ + d for y_, d in zip(y, dy)]
        del dy  # else the increment stays alive through the next step's evaluations
        owned = True
    return y


def _add_into(y: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``y + d``, written into ``y`` when that gives the same tensor (same shape and dtype): the
    same kernel and numbers, without a new state alongside the old one. Outside autograd only,
    on states the integrator made itself. With the adjoint's backward solve this keeps its peak
    at K steps equal to one step's (the initial state stays alive, held by autograd)."""
    if d.shape == y.shape and d.dtype == y.dtype and not d.is_set_to(y):
        return y.add_(d)
    return y + d


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
    steps = cached_grid_steps(t_end, step_size, time_dtype(y0.dtype), y0.device)
    return integrate(method, lambda s, ys: [func(s, ys[0])], [y0], steps, 1)[0]


def odeint_fixed_adjoint(func, y0: torch.Tensor, t_end: float, step_size: float, method: str,
                         params: tuple, release_end_state: bool = False, chunk: int = 0,
                         func_uncounted=None):
    """y(T) as :func:`odeint_fixed`, with gradients by the adjoint method (memory O(1) in the
    number of steps): the result torchdiffeq's ``odeint_adjoint`` gives for these settings.

    ``release_end_state``: keep y(T) for the backward pass outside autograd's saved tensors, so
    the backward solve can free it after its first step (saved tensors live until the node is
    done). The same numbers; one backward pass per graph (a second raises); an in-place change
    of the output before backward is detected by its version counter, as autograd would.

    ``chunk``: solve the backward pass for ``chunk`` samples (along dim 0) at a time (0 = all),
    so its buffers scale with the chunk instead of the batch. Valid when ``func`` treats samples
    independently; the gradients equal the whole-batch ones to float tolerance (not bit for
    bit: the parameter gradients are summed chunk by chunk). ``func_uncounted``: ``func`` without
    its evaluation counter, called for every chunk after the first, so each evaluation of the
    whole batch counts once."""
    params = tuple(p for p in params if p.requires_grad)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
        raise ValueError(f"chunk must be an integer >= 0, got {chunk!r}")
    return _FixedGridAdjoint.apply(y0, func, float(t_end), float(step_size), method,
                                   (bool(release_end_state), chunk, func_uncounted), *params)


class _FixedGridAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y0, func, t_end, step_size, method, settings, *params):
        release, ctx.chunk, ctx.func_uncounted = settings
        with torch.no_grad():
            yT = odeint_fixed(func, y0, t_end, step_size, method)
        ctx.func, ctx.t_end, ctx.step_size, ctx.method = func, t_end, step_size, method
        ctx.autocast = _AutocastState(y0.device.type)
        ctx.release = release
        if release:  # a detached alias: no reference cycle, same storage and version counter
            ctx.end_state, ctx.end_version = [yT.detach()], yT._version
            ctx.save_for_backward(*params)
        else:
            ctx.save_for_backward(yT, *params)
        return yT

    @staticmethod
    def backward(ctx, grad_yT):
        if ctx.release:
            params = list(ctx.saved_tensors)
            if not ctx.end_state:
                raise RuntimeError(
                    "backward through an ODE block's adjoint a second time: with "
                    "MODEL.ODE.RELEASE_END_STATE (release_end_state) its h(T) is freed by the "
                    "first backward pass, so retain_graph / gradcheck are not supported; turn "
                    "the option off for them")
            if ctx.end_state[0]._version != ctx.end_version:
                raise RuntimeError(
                    "an ODE block's output h(T), needed by its adjoint backward pass, was "
                    "modified by an in-place operation after the block ran; use an out-of-place "
                    "operation on it (e.g. F.relu(x) instead of F.relu_(x))")
            held = ctx.end_state  # emptied below, so the solve holds h(T) only until step 1
        else:
            yT, *params = ctx.saved_tensors
            held = [yT]
            del yT
        func = ctx.func
        # torchdiffeq's backward grid: built on the negated interval [-T, -0], then negated back.
        dtype, device = held[0].dtype, held[0].device
        s = -torch.tensor([ctx.t_end, 0.0], dtype=time_dtype(dtype), device=device)
        grid = -fixed_grid(s[0], s[1], ctx.step_size)
        grad_yT = grad_yT.to(dtype)

        def augmented(t, state, func=func):
            y, adj_y = state
            with torch.enable_grad(), ctx.autocast():
                y = y.detach().requires_grad_(True)
                f = func(t.detach(), y)
                # -vjp(a) instead of torchdiffeq's vjp(-a): a vector-Jacobian product is sums of
                # products with a, and IEEE negation commutes exactly with both, so the numbers
                # are identical; but no negated copy of the adjoint (a full state map) is held
                # while the dynamics' graph is alive. The negation runs after the graph is freed.
                vjps = torch.autograd.grad(f, (y, *params), adj_y.to(f.dtype), allow_unused=True)
                f = f.detach()
            vjps = [torch.zeros_like(x) if v is None else torch.neg(v).to(x.dtype)
                    for x, v in zip((y, *params), vjps)]
            return [f.to(y.dtype), *vjps]

        batch = grad_yT.shape[0] if grad_yT.dim() else 1
        if ctx.chunk and ctx.chunk < batch:
            return (*_chunked_backward(ctx, augmented, held.pop(), grad_yT, params, grid),)
        with torch.no_grad():
            # the list is integrate's only reference to h(T): it is dropped after the first step
            state = integrate(ctx.method, augmented,
                              [held.pop(), grad_yT, *[torch.zeros_like(p) for p in params]],
                              grid, 2)
        return (state[1], None, None, None, None, None, *state[2:])


def _chunked_backward(ctx, augmented, yT, grad_yT, params, grid):
    """The adjoint's backward solve, ``ctx.chunk`` samples at a time: each chunk's input
    gradient is written into one preallocated tensor, the parameter gradients are summed in
    chunk order. Only the first chunk's evaluations are counted (one per whole-batch f)."""
    uncounted = ctx.func_uncounted or ctx.func
    grad_y0 = torch.empty_like(grad_yT)
    total = None
    with torch.no_grad():
        for i, start in enumerate(range(0, grad_yT.shape[0], ctx.chunk)):
            part = slice(start, start + ctx.chunk)
            fn = augmented if i == 0 else functools.partial(augmented, func=uncounted)
            state = integrate(ctx.method, fn,
                              [yT[part], grad_yT[part], *[torch.zeros_like(p) for p in params]],
                              grid, 2)
            grad_y0[part].copy_(state[1])
            total = state[2:] if total is None else [a.add_(b) for a, b in zip(total, state[2:])]
            del state
    return (grad_y0, None, None, None, None, None, *total)

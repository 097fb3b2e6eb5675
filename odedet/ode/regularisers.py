"""Kinetic-energy and Jacobian-Frobenius regularisers of an ODE solve (Finlay et al., ICML 2020).

RNODE ("How to train your neural ODE") penalises two integrals along the trajectory h(t):

* kinetic energy ``KE = integral_0^T ||f(t, h)||^2 dt``: straight trajectories at constant speed,
  which a solver integrates with few steps;
* Jacobian Frobenius norm ``JF = integral_0^T ||df/dh||_F^2 dt``: a smooth, non-stiff vector
  field. ``||df/dh||_F^2`` is estimated by Hutchinson's trick, ``E_eps ||eps^T df/dh||^2`` with
  ``E[eps eps^T] = I``, one ``eps`` (Gaussian or Rademacher) per solve and one vector-Jacobian
  product per evaluation of f.

Both integrals are solved *with* the state, as extra components of an augmented state
``(h, KE, JF)`` whose derivatives never feed back into f (RNODE's construction). So they are
integrated by the same method, grid and stages as h, cost no extra evaluation of f (JF costs one
vector-Jacobian product per evaluation), and work with backprop through the solver and with the
adjoint alike (the adjoint then carries the integrals' adjoints too).

Normalisation: both integrands are divided by the number of state elements (N * C * H * W,
augmented channels included), so a block's value does not grow with batch size or resolution.
For dh/dt = A h applied per pixel over the channels, the expectation of JF is
``T * ||A||_F^2 / C``.
"""
from __future__ import annotations

import torch
from torchdiffeq import odeint, odeint_adjoint

from .fixed_grid import FAST_METHODS, fixed_grid, integrate, time_dtype
from .solver import SolverOptions

NOISE_KINDS = ("gaussian", "rademacher")
REGULARISERS = ("kinetic", "jacobian")


def hutchinson_noise(x: torch.Tensor, kind: str = "gaussian") -> torch.Tensor:
    """A probe ``eps`` shaped like ``x`` with E[eps eps^T] = I (from torch's global RNG)."""
    if kind == "gaussian":
        return torch.randn_like(x)
    if kind == "rademacher":
        return torch.randint_like(x, 0, 2).mul_(2).sub_(1)
    raise ValueError(f"Hutchinson noise must be one of {NOISE_KINDS}, got {kind!r}")


def regulariser_integrands(func, names: tuple, eps: torch.Tensor | None):
    """``aug(t, h) -> [f, *integrands]`` for the regularisers in ``names`` (subset of
    :data:`REGULARISERS`, in that order).

    The Jacobian term needs d f / d h even where the solver runs without gradients (torchdiffeq's
    adjoint forward solve), so f is evaluated under ``enable_grad``, at a fresh leaf copy of ``h``
    where no gradient flows back through the call; the graph of the vector-Jacobian product is
    kept only when the caller records gradients.
    """
    jacobian = "jacobian" in names

    def aug(t, h):
        if not jacobian:
            f = func(t, h)
            return [f, _mean_square(f)]
        outer = torch.is_grad_enabled()
        with torch.enable_grad():
            # Without outer gradients (or a state that needs none) differentiate at a fresh leaf.
            h_ = h if (outer and h.requires_grad) else h.detach().requires_grad_(True)
            f = func(t, h_)
            (vjp,) = torch.autograd.grad(f, h_, eps, create_graph=outer, allow_unused=True)
        if vjp is None:  # f does not depend on h: a zero Jacobian
            vjp = torch.zeros_like(h)
        if not outer:
            f = f.detach()
        out = [f]
        if "kinetic" in names:
            out.append(_mean_square(f))
        out.append(_mean_square(vjp))
        return out

    return aug


def _mean_square(x: torch.Tensor) -> torch.Tensor:
    """sum(x^2) / numel, accumulated in at least float32 (a bf16 state under autocast)."""
    return x.to(time_dtype(x.dtype)).pow(2).sum() / x.numel()


def odeint_regularised(
    func, x: torch.Tensor, t_end: float, opts: SolverOptions, names: tuple,
    eps: torch.Tensor | None = None, params: tuple = (),
) -> tuple[torch.Tensor, dict]:
    """h(T) and ``{name: integral}`` for the regularisers in ``names``.

    ``func`` is the (counted) dynamics; ``eps`` the Hutchinson probe (needed for "jacobian");
    ``params`` the parameters the adjoint differentiates (``opts.adjoint`` only). Euler/midpoint/
    rk4 without the adjoint use odedet's lean fixed-grid loop; every other setting (adaptive
    methods, the adjoint) calls torchdiffeq on the tuple state.
    """
    names = tuple(n for n in REGULARISERS if n in names)
    if "jacobian" in names and eps is None:
        raise ValueError("the Jacobian regulariser needs a Hutchinson probe eps")
    aug = regulariser_integrands(func, names, eps)
    zeros = [x.new_zeros((), dtype=time_dtype(x.dtype)) for _ in names]
    adjoint = opts.adjoint and torch.is_grad_enabled()
    if opts.method in FAST_METHODS and not adjoint:
        t = torch.tensor([0.0, t_end], dtype=time_dtype(x.dtype), device=x.device)
        grid = fixed_grid(t[0], t[1], opts.step_size)
        out = integrate(opts.method, lambda s, ys: aug(s, ys[0]), [x, *zeros], grid, 1)
    else:
        def tuple_func(s, state):
            return tuple(aug(s, state[0]))

        t = torch.tensor([0.0, t_end], dtype=x.dtype, device=x.device)
        kwargs = opts.torchdiffeq_kwargs()
        if adjoint:
            sol = odeint_adjoint(tuple_func, (x, *zeros), t, adjoint_params=tuple(params), **kwargs)
        else:
            kwargs.pop("adjoint_options", None)
            sol = odeint(tuple_func, (x, *zeros), t, **kwargs)
        out = [s[-1] for s in sol]
    return out[0], dict(zip(names, out[1:]))

"""ODEBlock: integrate dh/dt = f(t, h) over [0, T] with torchdiffeq; the ODE-Net layer."""
from __future__ import annotations

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from .fixed_grid import FAST_METHODS, _AutocastState, odeint_fixed, odeint_fixed_adjoint
from .regularisers import NOISE_KINDS, REGULARISERS, hutchinson_noise, odeint_regularised
from .solver import ODESolverError, SolverOptions


def _all_finite(x: torch.Tensor) -> bool:
    """``torch.isfinite(x).all()``, usually for the price of one sum: a NaN or inf anywhere makes
    the sum NaN or inf, so a finite sum proves every element finite. Only a non-finite sum (also
    reached by finite values that overflow when added) pays for the element-wise test."""
    with torch.no_grad():
        if torch.isfinite(x.sum()):
            return True
        return bool(torch.isfinite(x).all())


class _CountedDynamics(nn.Module):
    """Calls the dynamics and counts evaluations, split by the pass they belong to.

    Evaluations made while the block's forward is solving count as forward NFE; any made later
    (the adjoint's backward solve) count as backward NFE, and leave BatchNorm running statistics
    untouched (:meth:`_reevaluate`). Backpropagating directly through the
    solver evaluates no f in the backward pass, so its backward NFE stay 0.
    """

    def __init__(self, dynamics: nn.Module):
        super().__init__()
        self.dynamics = dynamics
        self.in_forward = False
        self.nfe_forward = 0
        self.nfe_backward = 0

    def forward(self, t, h):
        if self.in_forward:
            self.nfe_forward += 1
            return self.dynamics(t, h)
        self.nfe_backward += 1
        return self._reevaluate(t, h)

    def _reevaluate(self, t, h):
        """f(t, h) for the adjoint's backward solve. BatchNorm layers of the dynamics still
        normalise with batch statistics there (as in the forward, so the gradients are those of
        the forward's function), but do not update their running statistics: those must come
        from the forward solve only, not from the states the backward solve reconstructs."""
        norms = [m for m in self.dynamics.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
                 and m.track_running_stats]
        if not norms:
            return self.dynamics(t, h)
        for m in norms:
            m.track_running_stats = False
        try:
            return self.dynamics(t, h)
        finally:
            for m in norms:
                m.track_running_stats = True


class ODEBlock(nn.Module):
    """h(T) = h(0) + integral_0^T f(t, h(t)) dt, integrated by torchdiffeq.

    Args:
        dynamics: an ``nn.Module`` computing f(t, h) for h of shape (N, C + augment, H, W).
        t_end: the end time T of the integration interval [0, T].
        train_solver: solver used while ``self.training`` is True.
        test_solver: solver used in eval mode; defaults to ``train_solver``. Evaluation-time
            tolerance is the accuracy/speed knob: change it with :meth:`set_solver` on a trained
            model, no retraining needed.
        augment_channels: Augmented Neural ODE channels (Dupont et al. 2019): zeros appended to
            the state before integrating, dropped after.

    Training-only settings (see :mod:`odedet.ode.training`, all off by default):

    * ``train_draw``: ``(SolverOptions, T)`` replacing ``train_solver`` and ``t_end`` for the
      next training forwards (solver sampling, random end time); ``None`` = use them.
    * :meth:`set_regularisers`: integrate the kinetic-energy / Jacobian-Frobenius integrals with
      the state in training forwards; each forward leaves them in ``self.regularisers``.

    ``last_setting`` is the ``(SolverOptions, T)`` the last forward integrated with.

    The state dict holds only the dynamics' parameters (``dynamics.*``); counters and solver
    settings are not parameters and are not saved.
    """

    def __init__(
        self,
        dynamics: nn.Module,
        *,
        t_end: float = 1.0,
        train_solver: SolverOptions | None = None,
        test_solver: SolverOptions | None = None,
        augment_channels: int = 0,
        name: str = "",
    ):
        super().__init__()
        if not t_end > 0:
            raise ValueError(f"ODE integration end time must be > 0 (MODEL.ODE.T_END), got {t_end}")
        if augment_channels < 0:
            raise ValueError(f"augment_channels must be >= 0, got {augment_channels}")
        self.dynamics = dynamics
        self.t_end = float(t_end)
        self.train_solver = train_solver or SolverOptions()
        self.test_solver = test_solver or self.train_solver
        self.augment_channels = int(augment_channels)
        self.name = name or type(dynamics).__name__
        # Not registered as a submodule: it only wraps self.dynamics for counting, and the state
        # dict must keep the plain ``dynamics.*`` keys.
        self.__dict__["_counted"] = _CountedDynamics(dynamics)
        self.train_draw: tuple[SolverOptions, float] | None = None
        self.regulariser_names: tuple[str, ...] = ()
        self.noise = "gaussian"
        self.regularisers: dict[str, torch.Tensor] = {}
        self.last_setting: tuple[SolverOptions, float] | None = None

    # -- solver settings -------------------------------------------------------------------
    @property
    def solver(self) -> SolverOptions:
        """The solver the next forward will use (train or test, by ``self.training``)."""
        return self.setting[0]

    @property
    def setting(self) -> tuple[SolverOptions, float]:
        """(solver, end time T) of the next forward: evaluation always uses ``test_solver`` and
        ``t_end``; training uses ``train_draw`` when set, else ``train_solver`` and ``t_end``."""
        if not self.training:
            return self.test_solver, self.t_end
        if self.train_draw is not None:
            return self.train_draw
        return self.train_solver, self.t_end

    def set_regularisers(self, names=(), noise: str = "gaussian") -> None:
        """Regularisers integrated in training forwards: any of "kinetic", "jacobian"; ``noise``
        is the Hutchinson probe of "jacobian" ("gaussian" or "rademacher")."""
        bad = [n for n in names if n not in REGULARISERS]
        if bad:
            raise ValueError(f"unknown ODE regulariser(s) {bad}; use any of {REGULARISERS}")
        if noise not in NOISE_KINDS:
            raise ValueError(f"Hutchinson noise must be one of {NOISE_KINDS}, got {noise!r}")
        self.regulariser_names = tuple(n for n in REGULARISERS if n in names)
        self.noise = noise
        self.regularisers = {}

    def set_solver(self, phase: str = "test", **changes) -> None:
        """Change solver settings, e.g. ``set_solver("test", method="dopri5", rtol=1e-2)``.

        ``phase`` is "train", "test" or "both". Values are validated at once.
        """
        if phase not in ("train", "test", "both"):
            raise ValueError(f"phase must be 'train', 'test' or 'both', got {phase!r}")
        if phase in ("train", "both"):
            self.train_solver = self.train_solver.replace(**changes)
        if phase in ("test", "both"):
            self.test_solver = self.test_solver.replace(**changes)

    # -- NFE -------------------------------------------------------------------------------
    @property
    def nfe_forward(self) -> int:
        return self._counted.nfe_forward

    @property
    def nfe_backward(self) -> int:
        return self._counted.nfe_backward

    def reset_nfe(self) -> None:
        self._counted.nfe_forward = 0
        self._counted.nfe_backward = 0

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        opts, t_end = self.setting
        self.last_setting = (opts, t_end)
        if self.augment_channels:
            pad = x.new_zeros(x.shape[0], self.augment_channels, *x.shape[2:])
            x = torch.cat([x, pad], dim=1)
        counted = self._counted
        counted.in_forward = True
        try:
            if self.training and self.regulariser_names:
                out, self.regularisers = self._integrate_regularised(x, opts, t_end)
            else:
                out = self._integrate(x, opts, t_end)
        except AssertionError as e:
            raise self._solver_error(e, opts) from e
        finally:
            counted.in_forward = False
        if not _all_finite(out):
            raise self._solver_error(AssertionError("non-finite values in state"), opts)
        if self.augment_channels:
            out = out[:, : out.shape[1] - self.augment_channels]
        return out

    def _integrate(self, x: torch.Tensor, opts: SolverOptions, t_end: float) -> torch.Tensor:
        """h(T). With the adjoint, the solve runs inside :class:`_AdjointGuard`, so failures of
        the adjoint's backward solve raise the same ODESolverError as the forward's."""
        if opts.adjoint and torch.is_grad_enabled():
            params = tuple(p for p in self.dynamics.parameters() if p.requires_grad)
            solve = lambda x_: (self._solve(x_, opts, t_end),)  # noqa: E731
            return _AdjointGuard.apply(self, opts, solve, x, *params)[0]
        return self._solve(x, opts, t_end)

    def _solve(self, x: torch.Tensor, opts: SolverOptions, t_end: float) -> torch.Tensor:
        """h(T). Euler/midpoint/rk4 take the lean fixed-grid path (same numbers as torchdiffeq,
        less overhead: see :mod:`odedet.ode.fixed_grid`); everything else calls torchdiffeq."""
        counted = self._counted
        adjoint = opts.adjoint and torch.is_grad_enabled()
        if opts.method in FAST_METHODS:
            if adjoint:
                if opts.adjoint_chunk:
                    self._check_chunkable(opts.adjoint_chunk)
                return odeint_fixed_adjoint(counted, x, t_end, opts.step_size, opts.method,
                                            tuple(self.dynamics.parameters()),
                                            release_end_state=opts.release_end_state,
                                            chunk=opts.adjoint_chunk,
                                            func_uncounted=counted._reevaluate)
            return odeint_fixed(counted, x, t_end, opts.step_size, opts.method)
        t = torch.tensor([0.0, t_end], dtype=x.dtype, device=x.device)
        kwargs = opts.torchdiffeq_kwargs()
        if adjoint:
            params = tuple(self.dynamics.parameters())
            return odeint_adjoint(counted, x, t, adjoint_params=params, **kwargs)[-1]
        kwargs.pop("adjoint_options", None)
        return odeint(counted, x, t, **kwargs)[-1]

    def _check_chunkable(self, chunk: int) -> None:
        """A chunked backward solve needs dynamics that treat each image on its own."""
        norms = [type(m).__name__ for m in self.dynamics.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
        if norms:
            raise ValueError(
                f"MODEL.ODE.ADJOINT_CHUNK = {chunk} solves the adjoint's backward pass a few "
                f"images at a time, but the dynamics of ODE block '{self.name}' contain "
                f"{norms[0]}, whose batch statistics depend on the whole batch: set "
                "MODEL.ODE.ADJOINT_CHUNK 0, or use GroupNorm dynamics (MODEL.ODE.NORM \"GN\")")

    def _integrate_regularised(self, x, opts: SolverOptions, t_end: float):
        """h(T) and the regularisers' integrals (augmented state, :mod:`.regularisers`); an
        adjoint solve runs inside :class:`_AdjointGuard` as in :meth:`_integrate`."""
        names = self.regulariser_names
        if opts.adjoint and opts.adjoint_chunk:
            raise ValueError(
                f"MODEL.ODE.ADJOINT_CHUNK = {opts.adjoint_chunk} applies to odedet's fixed-grid "
                f"adjoint, but ODE block '{self.name}' integrates the regularisers "
                f"({', '.join(names)}) with torchdiffeq's adjoint: set MODEL.ODE.ADJOINT_CHUNK 0 "
                "or turn the regularisers off")
        eps = hutchinson_noise(x, self.noise) if "jacobian" in names else None
        params = tuple(p for p in self.dynamics.parameters() if p.requires_grad)

        def solve(x_):
            out, regs = odeint_regularised(self._counted, x_, t_end, opts, names, eps, params)
            return (out, *(regs[n] for n in names))

        if opts.adjoint and torch.is_grad_enabled():
            out, *values = _AdjointGuard.apply(self, opts, solve, x, *params)
        else:
            out, *values = solve(x)
        return out, dict(zip(names, values))

    def _solver_error(self, err: AssertionError, opts: SolverOptions,
                      backward: bool = False) -> ODESolverError:
        phase = "TRAIN" if self.training or backward else "TEST"
        msg = str(err)
        solve = "the adjoint's backward solve" if backward else "forward solve"
        where = f"ODE block '{self.name}' ({opts.describe()}, {phase.lower()} solver, {solve})"
        if "underflow in dt" in msg and ("nan" in msg or "inf" in msg):
            msg = "non-finite values in state (step size became NaN/inf)"
        if "max_num_steps" in msg:
            return ODESolverError(
                f"{where} exceeded the step guard of {opts.max_num_steps} steps. The dynamics are "
                f"stiff at this tolerance: loosen MODEL.ODE.RTOL_{phase}/ATOL_{phase} (now "
                f"{opts.rtol:g}/{opts.atol:g}), raise MODEL.ODE.MAX_NUM_STEPS, or use a "
                f"fixed-grid method (MODEL.ODE.METHOD_{phase} rk4)."
            )
        if "underflow" in msg:
            return ODESolverError(
                f"{where}: step size underflow ({msg}). The dynamics are too stiff or non-smooth "
                f"for rtol={opts.rtol:g}, atol={opts.atol:g}: loosen MODEL.ODE.RTOL_{phase}/"
                f"ATOL_{phase} or use a fixed-grid method (MODEL.ODE.METHOD_{phase} rk4)."
            )
        if "non-finite" in msg:
            what = "the adjoint state (gradients)" if backward else "the ODE state"
            return ODESolverError(
                f"{where}: {what} became NaN/inf. Training has diverged or the input is "
                f"not finite: lower SOLVER.BASE_LR, enable SOLVER.CLIP_GRADIENTS, or use a "
                f"smaller MODEL.ODE.STEP_SIZE_{phase}"
                + (f" / tighter MODEL.ODE.RTOL_{phase}/ATOL_{phase}." if not opts.fixed_grid
                   else ".")
            )
        return ODESolverError(f"{where}: {msg}")

    def extra_repr(self) -> str:
        s = f"t_end={self.t_end:g}, train={self.train_solver.describe()}, test={self.test_solver.describe()}"
        if self.augment_channels:
            s += f", augment_channels={self.augment_channels}"
        if self.regulariser_names:
            s += f", regularisers={'+'.join(self.regulariser_names)}"
        return s


class _AdjointGuard(torch.autograd.Function):
    """Runs an adjoint solve (torchdiffeq's ``odeint_adjoint`` or the lean fixed-grid adjoint)
    in a nested graph, so that its backward solve runs inside :meth:`backward` here: a step
    guard / step underflow there, or a NaN/inf adjoint state, becomes the block's ODESolverError
    (naming the block and the MODEL.ODE keys) instead of a bare AssertionError or NaN gradients.
    The nested graph holds only what the adjoint saves anyway (the end state), so memory stays
    O(1) in the number of solver steps.

    ``solve(x) -> tuple of tensors``: h(T) alone, or h(T) and the regularisers' integrals; the
    guard returns the same tuple."""

    @staticmethod
    def forward(ctx, block, opts, solve, x, *params):
        with torch.enable_grad():
            # The nested graph's input is reached by its gradient edge, not held as a tensor: a
            # leaf would keep x's storage (a full feature map) alive from the forward pass to
            # this block's backward, although the adjoint needs only h(T).
            inner_x = _Alias.apply(x.detach(), _anchor(x)) if x.requires_grad else x.detach()
            edge = torch.autograd.graph.get_gradient_edge(inner_x) if x.requires_grad else None
            outs = tuple(solve(inner_x))
        # The nested outputs are kept by their gradient edges too: holding the tensors would
        # keep h(T)'s storage alive through the backward solve, which may free it after its
        # first step (MODEL.ODE.RELEASE_END_STATE).
        out_edges = tuple(torch.autograd.graph.get_gradient_edge(o) if o.requires_grad else None
                          for o in outs)
        ctx.block, ctx.opts, ctx.inner, ctx.params = block, opts, (edge, out_edges), params
        ctx.autocast = _AutocastState(x.device.type)
        ctx.x_shape, ctx.x_dtype, ctx.x_device = x.shape, x.dtype, x.device
        return tuple(o.detach() for o in outs)

    @staticmethod
    def backward(ctx, *grad_outs):
        if ctx.inner is None:
            raise RuntimeError(
                f"backward through the adjoint ODE block '{ctx.block.name}' a second time "
                "(retain_graph=True, gradcheck): its nested graph is freed by the first backward "
                "pass; for repeated backward passes set MODEL.ODE.ADJOINT False")
        edge, out_edges = ctx.inner
        block, opts = ctx.block, ctx.opts
        ctx.inner = None  # free the nested graph once used
        wrt = ([edge] if edge is not None else []) + list(ctx.params)
        if not all(torch.isfinite(g).all() for g in grad_outs):
            # NaN/inf from the loss or a later layer: the gradients are undefined, and solving
            # backwards with them would blame this block; detectron2's NaN-loss check (or the
            # optimizer's) reports the divergence instead.
            nan = [torch.full_like(w, float("nan")) for w in ctx.params]
            grad_x = None
            if edge is not None:
                grad_x = torch.full(ctx.x_shape, float("nan"), dtype=ctx.x_dtype, device=ctx.x_device)
            return (None, None, None, grad_x, *nan)  # block, opts, t_end: no gradient
        pairs = [(e, g) for e, g in zip(out_edges, grad_outs) if e is not None]
        del grad_outs  # the engine's reference remains; ours would outlive the solve's need
        if not pairs:  # nothing in the solve required a gradient
            return (None, None, None, None, *[None] * len(ctx.params))
        try:
            with ctx.autocast():  # backward re-evaluations in the forward's precision
                grads = torch.autograd.grad([e for e, _ in pairs], wrt, [g for _, g in pairs],
                                            allow_unused=True)
        except AssertionError as e:
            raise block._solver_error(e, opts, backward=True) from e
        if not all(
            g is None or torch.isfinite(g).all() for g in grads
        ):
            raise block._solver_error(AssertionError("non-finite values in state"), opts,
                                      backward=True)
        grads = list(grads)
        grad_x = grads.pop(0) if edge is not None else None
        return (None, None, None, grad_x, *grads)


def _anchor(x: torch.Tensor) -> torch.Tensor:
    """A scalar leaf that makes :class:`_Alias`'s output part of a graph."""
    return torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)


class _Alias(torch.autograd.Function):
    """``x`` (a view of it), as the start of a nested graph that saves nothing: unlike a leaf
    ``x.detach().requires_grad_()``, whose gradient accumulator would hold ``x``, nothing in the
    graph refers to x's storage once the forward solve is done. Gradients are read at this
    node's output edge (:func:`torch.autograd.graph.get_gradient_edge`)."""

    @staticmethod
    def forward(ctx, x, anchor):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad, None

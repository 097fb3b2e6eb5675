"""Solver settings for ODE blocks: validated once, turned into torchdiffeq keyword arguments."""
from __future__ import annotations

import dataclasses
import difflib
import math

from torchdiffeq._impl.odeint import SOLVERS as _TORCHDIFFEQ_SOLVERS

# torchdiffeq's fixed-grid methods take ``step_size``; the rest adapt their step to rtol/atol.
FIXED_GRID_METHODS = (
    "euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams",
    "fixed_adams",
)
# scipy_solver is excluded: it runs in numpy and cannot be backpropagated through.
ADAPTIVE_METHODS = tuple(
    m for m in _TORCHDIFFEQ_SOLVERS if m not in FIXED_GRID_METHODS and m != "scipy_solver"
)
VALID_METHODS = FIXED_GRID_METHODS + ADAPTIVE_METHODS


class ODESolverError(RuntimeError):
    """An ODE solve that cannot give a usable answer (step guard, non-finite state, underflow)."""


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """How one ODE block integrates.

    Attributes:
        method: a torchdiffeq method name (see ``VALID_METHODS``).
        rtol, atol: tolerances of adaptive methods (ignored by fixed-grid methods).
        step_size: step of fixed-grid methods (ignored by adaptive ones).
        first_step: first step of adaptive methods when > 0 (0: the solver picks it); ignored by
            fixed-grid methods. Separate from ``step_size`` so that switching a fixed-grid model
            to an adaptive method (e.g. at test time) does not silently impose a first step.
        max_num_steps: step guard of adaptive methods (forward and adjoint solves).
        adjoint: backpropagate with ``odeint_adjoint`` (O(1) memory) instead of through the solver.
        release_end_state: fixed-grid adjoint only: its backward pass takes h(T) out of the
            graph and frees it after the first backward step instead of keeping it to the end
            (one feature map less from the second step on; same numbers). A graph built this
            way can be backpropagated once (no ``retain_graph``); a second pass raises.
        adjoint_chunk: fixed-grid adjoint only: the backward solve runs on this many images of
            the batch at a time (0 = all at once), so its buffers scale with the chunk; the same
            gradients to float tolerance. The dynamics must treat images independently (no
            training-mode BatchNorm; the block checks).
    """

    method: str = "rk4"
    rtol: float = 1e-3
    atol: float = 1e-3
    step_size: float = 0.25
    max_num_steps: int = 1000
    adjoint: bool = True
    first_step: float = 0.0
    release_end_state: bool = False
    adjoint_chunk: int = 0

    def __post_init__(self):
        validate_solver_options(self)

    @property
    def fixed_grid(self) -> bool:
        return self.method in FIXED_GRID_METHODS

    def replace(self, **changes) -> "SolverOptions":
        return dataclasses.replace(self, **changes)

    def torchdiffeq_kwargs(self) -> dict:
        """Keyword arguments for ``odeint``/``odeint_adjoint`` (besides func, y0, t)."""
        if self.fixed_grid:
            kwargs = dict(method=self.method, options=dict(step_size=self.step_size))
            if self.adjoint:
                kwargs["adjoint_options"] = dict(step_size=self.step_size)
            return kwargs
        options = dict(max_num_steps=self.max_num_steps)
        if self.first_step > 0:
            options["first_step"] = self.first_step
        kwargs = dict(method=self.method, rtol=self.rtol, atol=self.atol, options=options)
        if self.adjoint:
            # Seminorm (Kidger et al. 2021): the parameter-gradient part of the adjoint state is
            # an integral that need not drive step-size control; same answers, fewer steps.
            kwargs["adjoint_options"] = dict(options, norm="seminorm")
        return kwargs

    def describe(self) -> str:
        how = "adjoint" if self.adjoint else "direct"
        if self.fixed_grid:
            return f"{self.method}(step={self.step_size:g}, {how})"
        return f"{self.method}(rtol={self.rtol:g}, atol={self.atol:g}, {how})"


def validate_solver_options(opts, key_names: dict | None = None) -> None:
    """Raise ``ValueError`` naming the bad setting.

    ``opts`` has SolverOptions' fields; ``key_names`` maps a field to the name the user set it
    by (a config key), so the message says what to fix.
    """
    key_names = key_names or {}

    def name(field):
        return key_names.get(field, field)

    if opts.method not in VALID_METHODS:
        close = difflib.get_close_matches(str(opts.method), VALID_METHODS, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown ODE solver method {opts.method!r} ({name('method')}).{hint} Valid methods: "
            f"fixed-grid {', '.join(FIXED_GRID_METHODS)}; adaptive {', '.join(ADAPTIVE_METHODS)}."
        )
    for field in ("rtol", "atol"):
        value = getattr(opts, field)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name(field)} must be a positive finite number, got {value!r}")
    step = opts.step_size
    if not (isinstance(step, (int, float)) and math.isfinite(step)) or step < 0:
        raise ValueError(f"{name('step_size')} must be a finite number >= 0, got {step!r}")
    first = getattr(opts, "first_step", 0.0)
    if not (isinstance(first, (int, float)) and math.isfinite(first)) or first < 0:
        raise ValueError(f"{name('first_step')} must be a finite number >= 0 (0: the adaptive "
                         f"solver picks its first step), got {first!r}")
    if opts.method in FIXED_GRID_METHODS and step <= 0:
        raise ValueError(
            f"{name('step_size')} must be > 0 for the fixed-grid method {opts.method!r}, got {step!r}"
        )
    release = getattr(opts, "release_end_state", False)
    if not isinstance(release, bool):
        raise ValueError(f"{name('release_end_state')} must be True or False, got {release!r}")
    chunk = getattr(opts, "adjoint_chunk", 0)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
        raise ValueError(f"{name('adjoint_chunk')} must be an integer >= 0 (0: the whole batch), "
                         f"got {chunk!r}")
    from .fixed_grid import FAST_METHODS

    if chunk and opts.method not in FAST_METHODS:
        raise ValueError(
            f"{name('adjoint_chunk')} = {chunk} needs one of odedet's fixed-grid adjoint methods "
            f"({', '.join(FAST_METHODS)}), got {name('method')} = {opts.method!r} (solved by "
            "torchdiffeq's adjoint, whose adaptive steps depend on the whole batch); set it to 0")
    if not isinstance(opts.max_num_steps, int) or opts.max_num_steps < 1:
        raise ValueError(f"{name('max_num_steps')} must be an integer >= 1, got {opts.max_num_steps!r}")

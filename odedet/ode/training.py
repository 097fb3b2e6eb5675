"""Training that keeps a model a valid ODE at every solver setting (issue 11, section 1).

A model trained with one coarse fixed solver becomes tied to that discretisation: it is a ResNet
with an ODE's name, and changing the test solver changes its answers (Ott et al., ICLR 2021;
Queiruga et al. 2020). Three remedies, each off by default and set by ``MODEL.ODE.*`` keys
(:func:`add_ode_training_config`):

* **solver sampling** (``TRAIN_SOLVERS``, ``TRAIN_SAMPLE_PER``): every iteration (or every block
  of every iteration) trains with a fixed-grid setting drawn from a list, so no single
  discretisation is learnt;
* **random end time** (``T_END_SPREAD``; STEER, Ghosh et al., NeurIPS 2020): training integrates
  to T ~ U[T_END - b, T_END + b]; evaluation always to T_END;
* **kinetic-energy and Jacobian-Frobenius regularisation** (``KINETIC_WEIGHT``,
  ``JACOBIAN_WEIGHT``, ``JACOBIAN_NOISE``; RNODE, Finlay et al., ICML 2020): dynamics that are
  cheap to solve. See :mod:`odedet.ode.regularisers`.

Draws are a pure function of (seed, iteration, block index) (:meth:`ODETrainingOptions.draw`),
so every DDP rank draws the same setting and a resumed run draws what the uninterrupted run
would have. :func:`attach_ode_training` prepares a model; :func:`apply_draw` (called before every
training step by ``odedet.engine.hooks.ODETrainingHook``) sets the drawn settings; the weighted
regularisers join the model's loss dict as ``loss_ode_kinetic`` / ``loss_ode_jacobian``.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn

from .block import ODEBlock
from .fixed_grid import fixed_grid
from .regularisers import NOISE_KINDS
from .solver import FIXED_GRID_METHODS, SolverOptions

SAMPLE_PER = ("iteration", "block")
LOSS_KEYS = {"kinetic": "loss_ode_kinetic", "jacobian": "loss_ode_jacobian"}


def add_ode_training_config(cfg):
    """MODEL.ODE training-only keys: solver sampling, random end time, RNODE regularisers.
    The defaults switch all of them off (training exactly as before)."""
    _C = cfg
    # Solver sampling: fixed-grid settings "method:steps" (steps of T/steps over [0, T]) drawn at
    # random during training, e.g. ["euler:1", "midpoint:1", "rk4:1"]; repeat an entry to draw it
    # more often. Only fixed-grid methods (euler, midpoint, rk4, heun2, ...), steps >= 1. The
    # adjoint flag and step guard still come from MODEL.ODE.ADJOINT / MAX_NUM_STEPS. Empty = off:
    # every iteration trains with METHOD_TRAIN / STEP_SIZE_TRAIN. Evaluation is not affected.
    _C.MODEL.ODE.TRAIN_SOLVERS = []
    # What one draw of TRAIN_SOLVERS and of the random end time covers: "iteration" (all ODE
    # blocks of the model share it) or "block" (each block draws its own). Draws are seeded by
    # SEED and the iteration (a random shared seed when SEED < 0), identical on all DDP ranks.
    _C.MODEL.ODE.TRAIN_SAMPLE_PER = "iteration"
    # Random end time (STEER, Ghosh et al. 2020): training integrates to T drawn uniformly from
    # [T_END - T_END_SPREAD, T_END + T_END_SPREAD]; evaluation always integrates to T_END. Fixed-
    # grid steps scale with T (a "rk4:2" draw always takes 2 steps). 0 = off; must be < T_END.
    _C.MODEL.ODE.T_END_SPREAD = 0.0
    # RNODE regularisers (Finlay et al. 2020), integrated with the state in training: the kinetic
    # energy integral_0^T ||f||^2 dt and the Jacobian Frobenius norm integral_0^T ||df/dh||_F^2 dt
    # (Hutchinson estimate, one probe per solve), each divided by the state's element count and
    # summed over the ODE blocks. Their weighted values are the losses "loss_ode_kinetic" and
    # "loss_ode_jacobian" (summed into the training loss, logged in metrics.json). 0 = off (no
    # cost). They work with every solver, with and without MODEL.ODE.ADJOINT.
    _C.MODEL.ODE.KINETIC_WEIGHT = 0.0
    _C.MODEL.ODE.JACOBIAN_WEIGHT = 0.0
    # Hutchinson probe of the Jacobian regulariser: "gaussian" or "rademacher" (lower variance).
    _C.MODEL.ODE.JACOBIAN_NOISE = "gaussian"


@dataclasses.dataclass(frozen=True)
class SolverChoice:
    """One entry of MODEL.ODE.TRAIN_SOLVERS: a fixed-grid method and its number of steps."""

    method: str
    steps: int

    @classmethod
    def parse(cls, entry, key: str = "MODEL.ODE.TRAIN_SOLVERS") -> "SolverChoice":
        text = str(entry).strip()
        method, sep, steps = text.partition(":")
        method = method.strip()
        if not sep or not steps.strip().isdigit():
            raise ValueError(
                f"{key} entry {entry!r} must be 'method:steps' with an integer number of steps "
                f">= 1, e.g. 'rk4:2'"
            )
        if method not in FIXED_GRID_METHODS:
            raise ValueError(
                f"{key} entry {entry!r}: {method!r} is not a fixed-grid method; use one of "
                f"{', '.join(FIXED_GRID_METHODS)} (adaptive solvers cannot be drawn: their cost "
                f"is not a setting)"
            )
        n = int(steps)
        if n < 1:
            raise ValueError(f"{key} entry {entry!r}: the number of steps must be >= 1, got {n}")
        return cls(method, n)

    def __str__(self):
        return f"{self.method}:{self.steps}"


def step_size_for(t_end: float, steps: int) -> float:
    """A step size whose grid over [0, t_end] (torchdiffeq's construction, in float32 and float64
    time) has exactly ``steps`` steps: T / steps, nudged up where rounding would add a sliver."""
    size = t_end / steps
    ts = [torch.tensor([0.0, t_end], dtype=d) for d in (torch.float32, torch.float64)]
    for _ in range(64):
        if all(len(fixed_grid(t[0], t[1], size)) == steps + 1 for t in ts):
            return size
        size *= 1 + 2**-20
    raise AssertionError(f"no step size gives {steps} steps over [0, {t_end}]")  # unreachable


@dataclasses.dataclass(frozen=True)
class ODETrainingOptions:
    """The training-only ODE settings; :meth:`from_cfg` validates them, naming the keys.

    Attributes:
        solvers: fixed-grid settings to draw from; empty = the block's own train solver.
        sample_per: "iteration" or "block".
        t_end_spread: STEER's b (0 = off).
        kinetic_weight, jacobian_weight: RNODE loss weights (0 = off).
        noise: Hutchinson probe, "gaussian" or "rademacher".
        seed: seed of the draws.
    """

    solvers: tuple[SolverChoice, ...] = ()
    sample_per: str = "iteration"
    t_end_spread: float = 0.0
    kinetic_weight: float = 0.0
    jacobian_weight: float = 0.0
    noise: str = "gaussian"
    seed: int = 0

    @classmethod
    def from_cfg(cls, cfg, seed: int | None = None) -> "ODETrainingOptions":
        """Options from MODEL.ODE.*; ``seed`` defaults to ``cfg.SEED`` (0 when negative: pass a
        shared random seed then, as :func:`odedet.engine.hooks.ODETrainingHook` does)."""
        ode = cfg.MODEL.ODE
        solvers = ode.TRAIN_SOLVERS
        if isinstance(solvers, str):
            raise ValueError(
                f"MODEL.ODE.TRAIN_SOLVERS must be a list such as ['euler:1', 'rk4:1'], got the "
                f"string {solvers!r}"
            )
        choices = tuple(SolverChoice.parse(e) for e in solvers)
        if ode.TRAIN_SAMPLE_PER not in SAMPLE_PER:
            raise ValueError(
                f"MODEL.ODE.TRAIN_SAMPLE_PER must be one of {SAMPLE_PER}, got "
                f"{ode.TRAIN_SAMPLE_PER!r}"
            )
        b = ode.T_END_SPREAD
        if not (_finite(b) and 0 <= b < ode.T_END):
            raise ValueError(
                f"MODEL.ODE.T_END_SPREAD must be >= 0 and < MODEL.ODE.T_END ({ode.T_END:g}): "
                f"training end times are drawn from [T_END - b, T_END + b]; got {b!r}"
            )
        for key in ("KINETIC_WEIGHT", "JACOBIAN_WEIGHT"):
            if not (_finite(ode[key]) and ode[key] >= 0):
                raise ValueError(f"MODEL.ODE.{key} must be a finite number >= 0, got {ode[key]!r}")
        if ode.JACOBIAN_NOISE not in NOISE_KINDS:
            raise ValueError(
                f"MODEL.ODE.JACOBIAN_NOISE must be one of {NOISE_KINDS}, got {ode.JACOBIAN_NOISE!r}"
            )
        if seed is None:
            seed = cfg.SEED if cfg.SEED >= 0 else 0
        return cls(
            solvers=choices, sample_per=ode.TRAIN_SAMPLE_PER, t_end_spread=float(b),
            kinetic_weight=float(ode.KINETIC_WEIGHT), jacobian_weight=float(ode.JACOBIAN_WEIGHT),
            noise=ode.JACOBIAN_NOISE, seed=int(seed),
        )

    @property
    def samples(self) -> bool:
        """Whether training draws solvers or end times (i.e. :func:`apply_draw` does anything)."""
        return bool(self.solvers) or self.t_end_spread > 0

    @property
    def regulariser_weights(self) -> dict[str, float]:
        """{name: weight} of the regularisers that are on."""
        w = {"kinetic": self.kinetic_weight, "jacobian": self.jacobian_weight}
        return {k: v for k, v in w.items() if v > 0}

    def draw(self, iteration: int, n_blocks: int) -> list[tuple[int | None, float]]:
        """Per block: (index into ``solvers`` or None when not sampling, end-time offset in
        [-b, b]). A pure function of (seed, iteration, n_blocks): the same on every rank."""
        rng = np.random.default_rng([self.seed, iteration])
        n = 1 if self.sample_per == "iteration" else n_blocks
        draws = []
        for _ in range(n):
            idx = int(rng.integers(len(self.solvers))) if self.solvers else None
            b = self.t_end_spread
            dt = float(rng.uniform(-b, b)) if b else 0.0
            draws.append((idx, dt))
        return draws * n_blocks if self.sample_per == "iteration" else draws


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def ode_blocks(model: nn.Module) -> list[ODEBlock]:
    """The model's ODE blocks in a fixed order (module registration order: same on all ranks)."""
    return [m for m in model.modules() if isinstance(m, ODEBlock)]


def block_setting(
    block: ODEBlock, options: ODETrainingOptions, idx, dt
) -> tuple[SolverOptions, float]:
    """The (solver, T) a block trains with for one draw."""
    t_end = block.t_end + dt
    if idx is None:
        opts = block.train_solver
        if dt and opts.fixed_grid:  # keep the number of steps of the configured grid
            steps = max(1, round(block.t_end / opts.step_size))
            opts = opts.replace(step_size=step_size_for(t_end, steps))
        return opts, t_end
    choice = options.solvers[idx]
    opts = block.train_solver.replace(
        method=choice.method, step_size=step_size_for(t_end, choice.steps)
    )
    return opts, t_end


def apply_draw(model: nn.Module, options: ODETrainingOptions, iteration: int) -> list:
    """Set every ODE block's ``train_draw`` for ``iteration``; returns the draws
    [(index or None, T)] per block. Does nothing (returns []) when nothing is sampled."""
    if not options.samples:
        return []
    blocks = ode_blocks(model)
    draws = options.draw(iteration, len(blocks))
    out = []
    for block, (idx, dt) in zip(blocks, draws):
        block.train_draw = block_setting(block, options, idx, dt)
        out.append((idx, block.train_draw[1]))
    return out


def clear_draw(model: nn.Module) -> None:
    for block in ode_blocks(model):
        block.train_draw = None


def regulariser_losses(model: nn.Module, weights: dict[str, float]) -> dict:
    """{"loss_ode_kinetic": w * sum over blocks, ...} from the blocks' last training forward;
    the blocks' values are consumed (a later call without a new forward returns {})."""
    losses = {}
    for block in ode_blocks(model):
        values, block.regularisers = block.regularisers, {}
        for name, value in values.items():
            key = LOSS_KEYS[name]
            term = weights[name] * value
            losses[key] = losses[key] + term if key in losses else term
    return losses


def _add_regulariser_losses(weights):
    def hook(module, inputs, output):
        if not module.training or not isinstance(output, dict):
            return output
        extra = regulariser_losses(module, weights)
        if not extra:
            return output
        return {**output, **extra}

    return hook


def attach_ode_training(model: nn.Module, options: ODETrainingOptions) -> nn.Module:
    """Prepare ``model`` (a meta-architecture returning a loss dict in training) for the options:
    the ODE blocks integrate the regularisers that are on, and a forward hook adds their weighted
    values to the returned loss dict. A no-op when no regulariser is on. Returns ``model``."""
    weights = options.regulariser_weights
    if not weights:
        return model
    for block in ode_blocks(model):
        block.set_regularisers(tuple(weights), options.noise)
    model.register_forward_hook(_add_regulariser_losses(weights))
    return model

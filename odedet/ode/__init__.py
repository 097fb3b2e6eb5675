"""The ODE core: dynamics, ODE blocks, solver settings, NFE counters.

Model-level helpers work on any ``nn.Module`` that contains :class:`ODEBlock` s (a detector, a
classifier, a depth model, wrapped in DDP or not).
"""
from __future__ import annotations

import types
from typing import Iterator

from torch import nn

from .block import ODEBlock
from .dynamics import BottleneckODEFunc, ConcatConv2d, ConvODEFunc, build_dynamics, make_norm
from .solver import (
    ADAPTIVE_METHODS,
    FIXED_GRID_METHODS,
    VALID_METHODS,
    ODESolverError,
    SolverOptions,
    validate_solver_options,
)

__all__ = [
    "ODEBlock", "ConvODEFunc", "BottleneckODEFunc", "ConcatConv2d", "build_dynamics", "make_norm",
    "SolverOptions", "ODESolverError", "validate_solver_options", "VALID_METHODS",
    "FIXED_GRID_METHODS", "ADAPTIVE_METHODS", "iter_ode_blocks", "nfe_counts", "reset_nfe",
    "set_solver", "solver_options_from_cfg",
]


def iter_ode_blocks(model: nn.Module) -> Iterator[tuple[str, ODEBlock]]:
    """(qualified name, block) for every ODEBlock in ``model``; names the blocks for errors."""
    for name, module in model.named_modules():
        if isinstance(module, ODEBlock):
            module.name = name or module.name
            yield name, module


def nfe_counts(model: nn.Module, per_block: bool = False) -> dict:
    """Function evaluations since the last reset: {"forward": n, "backward": m} summed over the
    model, plus {"blocks": {name: {"forward", "backward"}}} with ``per_block``."""
    total = {"forward": 0, "backward": 0}
    blocks = {}
    for name, block in iter_ode_blocks(model):
        total["forward"] += block.nfe_forward
        total["backward"] += block.nfe_backward
        blocks[name] = {"forward": block.nfe_forward, "backward": block.nfe_backward}
    if per_block:
        total["blocks"] = blocks
    return total


def reset_nfe(model: nn.Module) -> None:
    for _, block in iter_ode_blocks(model):
        block.reset_nfe()


def set_solver(model: nn.Module, phase: str = "test", **changes) -> int:
    """Change solver settings of every ODE block in ``model``; returns how many were changed."""
    n = 0
    for _, block in iter_ode_blocks(model):
        block.set_solver(phase, **changes)
        n += 1
    return n


def solver_options_from_cfg(cfg, phase: str) -> SolverOptions:
    """SolverOptions from the ``MODEL.ODE.*_TRAIN`` or ``*_TEST`` keys; errors name the key."""
    if phase not in ("TRAIN", "TEST"):
        raise ValueError(f"phase must be 'TRAIN' or 'TEST', got {phase!r}")
    ode = cfg.MODEL.ODE
    keys = {
        "method": f"METHOD_{phase}", "rtol": f"RTOL_{phase}", "atol": f"ATOL_{phase}",
        "step_size": f"STEP_SIZE_{phase}", "max_num_steps": "MAX_NUM_STEPS", "adjoint": "ADJOINT",
    }
    if "RELEASE_END_STATE" in ode:
        keys["release_end_state"] = "RELEASE_END_STATE"
    if "ADJOINT_CHUNK" in ode and phase == "TRAIN":  # the adjoint runs in training only
        keys["adjoint_chunk"] = "ADJOINT_CHUNK"
    if f"FIRST_STEP_{phase}" in ode:  # absent from configs built without odedet's full keys
        keys["first_step"] = f"FIRST_STEP_{phase}"
    fields = types.SimpleNamespace(**{field: ode[key] for field, key in keys.items()})
    validate_solver_options(fields, {f: f"MODEL.ODE.{k}" for f, k in keys.items()})
    return SolverOptions(**vars(fields))

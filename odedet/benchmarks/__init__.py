"""Benchmarks behind ``tools/benchmark.py`` and ``tools/report.py``: memory, solver overhead,
model cost, tolerance sweeps, the compute dial, and the ResNet vs ODE-Net comparison report.

Not imported by ``import odedet`` (nothing here registers components); the subcommand modules
are imported on demand.
"""
from __future__ import annotations

import importlib

SUBCOMMANDS = {
    "memory": "odedet.benchmarks.memory",
    "detector-memory": "odedet.benchmarks.detector_memory",
    "overhead": "odedet.benchmarks.overhead",
    "models": "odedet.benchmarks.models",
    "tolerance": "odedet.benchmarks.tolerance",
    "dial": "odedet.benchmarks.dial",
}


def run_subcommand(name: str, args) -> dict:
    """Run one benchmark; returns the JSON document it wrote into ``args.out``."""
    if name not in SUBCOMMANDS:
        raise KeyError(f"unknown benchmark {name!r}: use one of {sorted(SUBCOMMANDS)}")
    return importlib.import_module(SUBCOMMANDS[name]).run(args)

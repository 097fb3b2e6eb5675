#!/usr/bin/env python
"""Benchmarks of ODE-Nets vs ResNets; each subcommand writes JSON, a markdown table and PNG plots.

  python tools/benchmark.py memory     # peak training memory vs depth, and of whole detectors
  python tools/benchmark.py detector-memory   # detector training steps at 2 x 800x1333: peak,
                                              # breakdown by part, curves, steps, batch in budget
  python tools/benchmark.py overhead   # fixed-grid ODE block vs unrolled weight-tied stack
  python tools/benchmark.py models     # params, FLOPs, latency, train step, NFE per detector
  python tools/benchmark.py tolerance --config-file CFG --weights W   # accuracy vs NFE/latency
  python tools/benchmark.py dial --weights ODE.pth --baseline ResNet-18-FPN CFG W ...
                                       # one ODE detector over a solver ladder vs ResNets

Outputs go to ``--out`` (default ``output/benchmarks/<subcommand>``). Every result records the
machine, thread count and library versions. Defaults are the issue's settings; ``--quick`` shrinks
every subcommand to a seconds-long smoke run.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch


def _kv_pairs(items) -> dict:
    out = {}
    for item in items or ():
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--model-config expects NAME=path.yaml, got {item!r}")
        try:
            out[name] = _config(path)
        except argparse.ArgumentTypeError as e:
            raise SystemExit(f"--model-config {item}: {e}") from None
    return out


def _config(value):
    from odedet.config_check import config_file_arg  # a path, or a name under configs/

    return config_file_arg(value)


def _common(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--out", default=os.path.join("output", "benchmarks", name),
                   help="output folder for JSON/markdown/PNG")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")


def _detector_args(p) -> None:
    p.add_argument("--models", nargs="*", default=None,
                   help="detectors: R-50-FPN R-101-FPN R-50-C4 R-101-C4 ODE-FPN ODE-C4")
    p.add_argument("--model-config", action="append", metavar="NAME=YAML",
                   help="use this config file for detector NAME (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("memory", help="peak training memory vs depth and per detector")
    _common(p, "memory")
    p.add_argument("--depths", type=int, nargs="*", default=None)
    p.add_argument("--variants", nargs="*", default=["resnet", "ode-direct", "ode-adjoint"])
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--channels", type=int, default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--det-size", type=int, default=None, help="detector input side (pixels)")
    _detector_args(p)

    p = sub.add_parser("detector-memory",
                       help="whole-detector training-step memory at training sizes (docs/memory.md)")
    _common(p, "detector_memory")
    p.add_argument("--studies", nargs="*", default=None,
                   help="any of default steps batch size budget (in this order of priority)")
    p.add_argument("--models", nargs="*", default=None, help="models of the default-size table")
    p.add_argument("--curve-models", nargs="*", default=None, help="models of the curves")
    p.add_argument("--budget-models", nargs="*", default=None)
    p.add_argument("--default-batch", type=int, default=None)
    p.add_argument("--default-short", type=int, default=None, help="image height (shorter side)")
    p.add_argument("--default-long", type=int, default=None, help="image width (longer side)")
    p.add_argument("--batches", type=int, nargs="*", default=None)
    p.add_argument("--shorts", type=int, nargs="*", default=None,
                   help="shorter sides of the size curve (longer side = short * 1333 / 800)")
    p.add_argument("--ode-steps", type=int, nargs="*", default=None,
                   help="solver steps per ODE block of the steps study")
    p.add_argument("--steps-model", default=None)
    p.add_argument("--steps-method", default=None, help="fixed-grid method of the steps study")
    p.add_argument("--budget-gib", type=float, default=None, help="memory budget (GiB)")
    p.add_argument("--budget-max-batch", type=int, default=None)
    p.add_argument("--cap-gib", type=float, default=None,
                   help="stop any other point whose training memory passes this (GiB; 0 = no "
                        "cap) and record it as '> cap' instead of letting it exhaust the machine")
    p.add_argument("--jobs", type=int, default=None, help="point processes run at once")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="launch no new point after this many minutes (0 = no limit); rerun the "
                        "same command to continue: finished points are reused")
    p.add_argument("--warmup-size", type=int, default=None, help="side of the warm-up image")
    p.add_argument("--extra-opts", nargs="*", default=None,
                   help="config overrides KEY VALUE ... applied to every point")

    p = sub.add_parser("overhead", help="ODE block vs unrolled weight-tied stack, time ratio")
    _common(p, "overhead")
    p.add_argument("--methods", nargs="*", default=["euler"], help="euler, midpoint, rk4")
    p.add_argument("--steps", type=int, nargs="*", default=None, help="solver steps K")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--channels", type=int, default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeat", type=int, default=None)
    p.add_argument("--profile", action="store_true", help="also write torch.profiler tables")

    p = sub.add_parser("models", help="params, FLOPs, latency, train step time, NFE")
    _common(p, "models")
    p.add_argument("--size", type=int, default=None, help="input side (pixels)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeat", type=int, default=None)
    _detector_args(p)

    p = sub.add_parser("tolerance", help="accuracy vs NFE/latency over evaluation tolerances")
    _common(p, "tolerance")
    p.add_argument("--config-file", required=True, type=_config,
                   help="config of the trained model (a path, or a name under configs/)")
    p.add_argument("--weights", required=True, help="checkpoint (.pth) of the trained model")
    p.add_argument("--tolerances", type=float, nargs="*", default=None)
    p.add_argument("--method", default="dopri5", help="adaptive method used for the sweep")
    p.add_argument("--max-images", type=int, default=None,
                   help="evaluate at most N images (0 = all)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    p = sub.add_parser("dial", help="one ODE detector over test-time solvers vs ResNets")
    _common(p, "dial")
    p.add_argument("--config-file", default=None,
                   help="config of the trained ODE detector (default: the quickstart ODE model)")
    p.add_argument("--weights", required=True, help="its checkpoint (loaded strictly)")
    p.add_argument("--baseline", dest="baselines", nargs=3, action="append", default=None,
                   metavar=("NAME", "CONFIG", "WEIGHTS"),
                   help="a ResNet detector trained with the same recipe (repeatable)")
    p.add_argument("--settings", nargs="*", default=None,
                   help="solver ladder: METHOD:STEPS (euler:1, rk4:2) or METHOD:TOL (dopri5:1e-2)")
    p.add_argument("--repeat", type=int, default=None, help="timed latency rounds")
    p.add_argument("--latency-images", type=int, default=None,
                   help="held-out images timed per round (batch 1)")
    p.add_argument("--max-images", type=int, default=None,
                   help="evaluate accuracy on at most N images (0 = all)")
    p.add_argument("--dataset", default=None, help="evaluate on this registered dataset")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser


# Full defaults (the settings) and what --quick shrinks them to; a value given on the
# command line always wins.
_FULL = {
    "memory": dict(depths=[2, 4, 8, 16, 32], batch=16, channels=64, size=32, det_size=512,
                   models=["ODE-FPN", "R-50-FPN", "R-101-FPN"]),
    "detector-memory": dict(
        studies=["default", "steps", "batch", "size", "budget"],
        models=["ODE-R50-FPN-lean", "R-101-FPN", "R-50-FPN", "ODE-R50-FPN", "ODE-R50-FPN-direct"],
        curve_models=["ODE-R50-FPN-lean", "R-50-FPN", "R-101-FPN"],
        budget_models=["ODE-R50-FPN-lean", "R-50-FPN", "R-101-FPN"],
        default_batch=2, default_short=800, default_long=1333, batches=[1, 2, 4],
        shorts=[512, 800, 1024], ode_steps=[1, 16, 4, 2, 8], steps_model="ODE-R50-FPN-lean",
        steps_method="euler", budget_gib=8.0, budget_max_batch=32, cap_gib=16.0, jobs=2,
        max_minutes=0.0,
        warmup_size=64, extra_opts=[]),
    "overhead": dict(batch=16, channels=64, size=32, steps=[8], warmup=2, repeat=7),
    "models": dict(size=512, warmup=1, repeat=3, models=["ODE-FPN", "ODE-C4", "R-50-FPN",
                                                         "R-101-FPN", "R-50-C4", "R-101-C4"]),
    "tolerance": dict(tolerances=[0.0001, 0.001, 0.01, 0.1, 1.0], max_images=0),
    "dial": dict(settings=["euler:1", "midpoint:1", "rk4:1", "rk4:2", "dopri5:1e-2",
                           "dopri5:1e-3"], repeat=7, latency_images=10, max_images=0,
                 config_file="configs/quickstart/ode_faster_rcnn_R_18_FPN_shapes.yaml",
                 baselines=[]),
}
_QUICK = {
    "memory": dict(depths=[2, 4], batch=2, channels=8, size=8, det_size=128, models=["R-50-FPN"]),
    "detector-memory": dict(
        models=["ODE-R50-FPN-lean", "R-50-FPN"], curve_models=["ODE-R50-FPN-lean"],
        budget_models=["R-50-FPN"], default_short=96, default_long=128, batches=[1, 2],
        shorts=[64, 96], ode_steps=[1, 2], budget_gib=0.9, budget_max_batch=2, warmup_size=64,
        default_batch=1, extra_opts=["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
                                     "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64"]),
    "overhead": dict(batch=2, channels=8, size=8, steps=[2], warmup=1, repeat=2),
    "models": dict(size=128, models=["R-50-FPN"], warmup=0, repeat=1),
    "tolerance": dict(tolerances=[1e-3, 1e-1], max_images=2),
    "dial": dict(settings=["euler:1", "rk4:1", "dopri5:1e-1"], repeat=1, latency_images=1,
                 max_images=2),
}


def _apply_defaults(args) -> None:
    """Fill every option left unset (None) from _FULL or, with --quick, from _QUICK."""
    quick = _QUICK.get(args.command, {}) if args.quick else {}
    for name, value in _FULL.get(args.command, {}).items():
        if getattr(args, name) is None:
            setattr(args, name, quick.get(name, value))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    _apply_defaults(args)
    args.model_configs = _kv_pairs(getattr(args, "model_config", None))
    if args.command == "detector-memory":
        args.budget_mb = args.budget_gib * 1024.0
        args.cap_mb = args.cap_gib * 1024.0 if args.cap_gib else None
    os.makedirs(args.out, exist_ok=True)
    from odedet.benchmarks import run_subcommand
    from odedet.benchmarks.output import render_markdown

    doc = run_subcommand(args.command, args)
    print(render_markdown(doc))
    print(f"[benchmark] wrote {os.path.abspath(args.out)}/{args.command.replace('-', '_')}.json, .md and plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())

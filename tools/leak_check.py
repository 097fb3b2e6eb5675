#!/usr/bin/env python
"""Check that training and evaluation of an ODE model keep resident memory flat.

  python tools/leak_check.py                         # tiny ODE-Net, adjoint, 300 + 300 iterations
  python tools/leak_check.py --iters 2000 --no-adjoint --json out.json

Prints RSS at the start and end of the measured iterations and the fitted growth in MiB per 1000
iterations, for a training loop (forward, backward, SGD step) and an evaluation loop; exits 1 if a
slope exceeds ``--max-slope`` while the total growth exceeds ``--min-growth``.
"""
import argparse
import json
import sys

import torch

from odedet.engine.leak_check import TinyODENet, measure_rss, tiny_steps
from odedet.ode import SolverOptions


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--iters", type=int, default=300, help="measured iterations per loop")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured iterations first")
    p.add_argument("--method", default="rk4", help="torchdiffeq method of the ODE block")
    p.add_argument("--no-adjoint", action="store_true", help="backprop through the solver")
    p.add_argument("--max-slope", type=float, default=20.0,
                   help="fail above this growth, MiB per 1000 iterations")
    p.add_argument("--min-growth", type=float, default=2.0,
                   help="...and only when RSS grew more than this many MiB in total (short runs "
                   "have noisy slopes)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--json", help="also write the results to this file")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    solver = SolverOptions(method=args.method, adjoint=not args.no_adjoint)
    train_step, eval_step = tiny_steps(TinyODENet(solver=solver))
    results = {}
    for name, step in (("train", train_step), ("eval", eval_step)):
        r = measure_rss(step, args.iters, warmup=args.warmup)
        results[name] = r
        print(f"{name}: {r['iterations']} iterations, RSS {r['rss_start_mib']:.1f} -> "
              f"{r['rss_end_mib']:.1f} MiB, slope {r['slope_mib_per_1k_iters']:+.2f} MiB/1k it")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), **results}, f, indent=2)
    bad = [n for n, r in results.items()
           if r["slope_mib_per_1k_iters"] > args.max_slope and r["growth_mib"] > args.min_growth]
    if bad:
        print(f"memory grows in {bad} (more than {args.max_slope} MiB per 1000 iterations)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""The ResNet vs ODE-Net report: studies and benchmarks into REPORT.md and README's Results.

One command for the study: detection, depth and classification on the embedded datasets, plus
memory/overhead/model-cost benchmarks, into one markdown report.

  python tools/report.py                 # run missing studies, reuse finished ones, write report
  python tools/report.py --quick         # smoke run: tiny settings everywhere (minutes)
  python tools/report.py --rerun         # recompute everything
  python tools/report.py --update-readme # also refresh README.md's generated Results block
  python tools/report.py --cls-dataset cifar10 --cls-args="--data-root datasets"  # your data

Each study is the project's own tool (tools/quickstart.py --baseline, tools/quickstart_depth.py,
tools/train_cifar.py paper-table, tools/benchmark.py memory/overhead/models); their arguments can
be extended (--detection-args/--depth-args/--cls-args, e.g. config overrides for COCO, VOC, NYU or
KITTI). A tolerance sweep written to <out>/benchmarks/tolerance/ (tools/benchmark.py tolerance
--out ...) is included when present. Output: <out>/REPORT.md next to every study's files.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="output/report", help="report folder")
    p.add_argument("--quick", action="store_true", help="tiny settings for every study")
    p.add_argument("--rerun", action="store_true", help="recompute studies even if present")
    p.add_argument("--only", nargs="*", default=None,
                   help="studies to run: detection depth classification memory overhead models")
    p.add_argument("--cls-dataset", default="digits", help="train_cifar.py dataset")
    for name in ("detection", "depth", "cls"):
        p.add_argument(f"--{name}-args", default="", help=f"extra arguments for the {name} tool")
    p.add_argument("--update-readme", action="store_true", help="refresh README.md's results")
    args = p.parse_args(argv)
    args.out = os.path.abspath(args.out)
    for name in ("detection_args", "depth_args", "cls_args"):
        setattr(args, name, shlex.split(getattr(args, name)))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    from odedet.benchmarks.report import run_studies, update_readme, write_report

    paths = run_studies(args, args.only)
    text = write_report(args, paths)
    print(text)
    print(f"[report] wrote {os.path.join(args.out, 'REPORT.md')}")
    if args.update_readme:
        update_readme(text, args.out, os.path.join(ROOT, "README.md"))
        print("[report] updated README.md's Results block")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""The ResNet vs ODE-Net report: studies and benchmarks into REPORT.md and README's Results.

The committed result files docs/results/<study>.json (each with the machine, load and command it
was measured with) are the source: without --run nothing is computed, so on any clone

  python tools/report.py                  # REPORT.md + docs/figures/*.png from docs/results
  python tools/report.py --update-readme  # also the Results blocks of README, docs/benchmarks.md

regenerates the report, the figures and the README block. To measure again:

  python tools/report.py --run memory overhead --publish --update-readme
  python tools/report.py --run models --models-args="--size 256 --repeat 1" --publish
  python tools/report.py --run depth --depth-args="--models ode_resnet18" --publish
  python tools/report.py --run all --quick          # smoke run into --out, nothing published

Studies: detection (tools/quickstart.py --baseline), depth (tools/quickstart_depth.py),
classification (tools/train_cifar.py paper-table), memory / overhead / models
(tools/benchmark.py); --<study>-args extends a study's command (config overrides for COCO, VOC,
NYU or KITTI, benchmark sizes). --run writes into --out (default output/report); --publish copies
what was run (or --publish-from NAME=JSON, a study's own JSON) into docs/results. A tolerance
sweep (tools/benchmark.py tolerance) is published with --publish-from tolerance=.../tolerance.json.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDIES = ("detection", "depth", "classification", "memory", "overhead", "models")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="output/report", help="where --run writes and REPORT.md goes")
    p.add_argument("--results", default=None, help="committed results (default docs/results)")
    p.add_argument("--figures", default=None, help="figures folder (default docs/figures)")
    p.add_argument("--run", nargs="*", default=[], metavar="STUDY",
                   help="studies to (re)compute: " + " ".join(STUDIES) + ", or all")
    p.add_argument("--quick", action="store_true", help="tiny settings for every study run")
    p.add_argument("--publish", action="store_true",
                   help="copy the results of the studies run into --results")
    p.add_argument("--publish-from", nargs="*", default=[], metavar="NAME=JSON",
                   help="publish a study's JSON written by its tool (e.g. depth=out/x.json)")
    p.add_argument("--cls-dataset", default="digits", help="train_cifar.py dataset")
    for name in ("detection", "depth", "cls", "memory", "overhead", "models"):
        p.add_argument(f"--{name}-args", default="", help=f"extra arguments for the {name} tool")
    p.add_argument("--update-readme", action="store_true", help="refresh README.md's results")
    args = p.parse_args(argv)
    args.out = os.path.abspath(args.out)
    args.results = os.path.abspath(args.results or os.path.join(ROOT, "docs", "results"))
    args.figures = os.path.abspath(args.figures or os.path.join(ROOT, "docs", "figures"))
    for name in ("detection", "depth", "cls", "memory", "overhead", "models"):
        key = f"{name}_args"
        setattr(args, key, shlex.split(getattr(args, key)))
    if "all" in args.run:
        args.run = list(STUDIES)
    unknown = [n for n in args.run if n not in STUDIES]
    if unknown:
        p.error(f"--run: unknown studies {unknown}; choose among {' '.join(STUDIES)} or all")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from odedet.benchmarks.report import (
        draw_figures, load_results, publish, run_studies, update_readme, write_report,
    )

    fresh = run_studies(args, args.run) if args.run else {}
    for item in args.publish_from:
        name, _, path = item.partition("=")
        fresh[name] = os.path.abspath(path)
    if args.publish or args.publish_from:
        for path in publish(fresh, args.results):
            print(f"[report] published {os.path.relpath(path, ROOT)}")
        docs, fig_dir = load_results(args.results), args.figures
    elif fresh:  # unpublished runs: a report in --out, figures beside it; docs/ untouched
        from odedet.benchmarks.report import compact

        docs = load_results(args.results)
        docs.update({n: compact(n, p) for n, p in fresh.items()})
        fig_dir = os.path.join(args.out, "figures")
        if args.update_readme:
            raise SystemExit("--update-readme shows committed results only: add --publish")
    else:
        docs, fig_dir = load_results(args.results), args.figures
    draw_figures(docs, fig_dir)
    text = write_report(docs, args.out, fig_dir)
    print(text)
    print(f"[report] wrote {os.path.join(args.out, 'REPORT.md')}; figures in {fig_dir}")
    if args.update_readme:  # the front page's short block, and the full one in the docs
        update_readme(docs, fig_dir, os.path.join(ROOT, "README.md"), headline=True)
        bench = os.path.join(ROOT, "docs", "benchmarks.md")
        if os.path.isfile(bench):
            update_readme(docs, fig_dir, bench)
        print("[report] updated the Results blocks of README.md and docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""ODE-Net vs ResNet-18/50/101 Faster R-CNN study on the digits benchmark (issue 13).

Six models (eight runs with the second seeds), one shared recipe, from scratch, on the embedded
handwritten-digits benchmark; docs/study.md.

    python tools/study.py                       # every run not finished yet, in order
    python tools/study.py --budget-min 11       # one resumable piece: stop after 11 min of training
    python tools/study.py --models r18_fpn,ode_r18_fpn
    python tools/study.py --time-iters 5        # speed of every model side by side, no training
    python tools/study.py --quick               # smoke test: tiny dataset, 3 iterations, 2 models
    nohup python tools/study.py > output/study.log 2>&1 &   # in the background (tqdm bars in the log)

A finished run (its JSON under --results-dir) is never retrained; an interrupted one resumes
from its last checkpoint. Tables are rewritten after every finished run:
<results-dir>/table.md (per model, seeds aggregated), runs.csv, <run>.json, <run>_per_class.csv.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    from odedet.benchmarks.study import DEFAULT_MAX_ITER, RUNS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=None,
                   help="comma-separated run keys, in order (default: all). Known: "
                   + ", ".join(r.key for r in RUNS))
    p.add_argument("--max-iter", type=int, default=None,
                   help=f"training iterations of every run (default {DEFAULT_MAX_ITER}; --quick 3)")
    p.add_argument("--budget-min", type=float, default=None,
                   help="stop (with a checkpoint) after this many minutes of training; rerun "
                   "to continue")
    p.add_argument("--output-dir", default=None,
                   help="checkpoints and logs (default output/study, --quick output/study_quick)")
    p.add_argument("--results-dir", default=None,
                   help="result JSON/CSV/tables (default docs/results/study; --quick: "
                   "<output-dir>/results)")
    p.add_argument("--dataset-root", default=None,
                   help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    p.add_argument("--time-iters", type=int, default=0,
                   help="only measure speed side by side: N training iterations and "
                   "--latency-images inference images of each model, interleaved in one run "
                   "(the tables' s/iter and ms/img), and estimate the study's duration")
    p.add_argument("--latency-images", type=int, default=20, help="images timed for latency")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 16/8-image dataset under OUTPUT_DIR, 3 iterations, "
                   "the R-18 pair")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p.parse_args(argv)


def prepare_data(args) -> tuple[str, str, dict]:
    from odedet.data.synthetic_digits import (DigitsParams, dataset_dir, ensure,
                                              register_synthetic_digits)

    if args.quick:
        root, params = os.path.join(args.output_dir, "datasets"), DigitsParams(num_train=16,
                                                                               num_val=8)
        names = register_synthetic_digits(root, params, "odedet_digits_quick", replace=True)
    else:
        root, params = args.dataset_root, DigitsParams()
        names = ["odedet_digits_train", "odedet_digits_val"]
        if root is not None:
            register_synthetic_digits(root, replace=True)
    ensure(params, root)
    print(f"Dataset: {os.path.abspath(dataset_dir(root))} ({names[0]}, {names[1]})")
    return names[0], names[1], params.record()


def estimate(timing: dict, specs, max_iter: int) -> dict:
    """Training hours of the full study from measured s/iter (runs of one model share it)."""
    per_run = {s.key: timing[s.model]["median_s"] * max_iter / 3600 for s in specs
               if s.model in timing}
    return dict(max_iter=max_iter, training_hours_per_run=per_run,
                training_hours_total=sum(per_run.values()))


def main(argv=None):
    args = parse_args(argv)
    for key in ("output_dir", "results_dir", "dataset_root"):  # as given, before the chdir
        if getattr(args, key) is not None:
            setattr(args, key, os.path.abspath(getattr(args, key)))
    os.chdir(ROOT)  # configs and the default dataset root are relative to the repository
    from detectron2.utils.logger import setup_logger

    from odedet.benchmarks import study
    from odedet.benchmarks.output import environment, environment_line, markdown_table

    setup_logger(name="odedet")
    setup_logger()
    logging.getLogger("detectron2").setLevel(logging.WARNING)  # tqdm bars carry the progress
    args.output_dir = args.output_dir or os.path.join(
        ROOT, "output", "study_quick" if args.quick else "study")
    args.results_dir = args.results_dir or (
        os.path.join(args.output_dir, "results") if args.quick
        else os.path.join(ROOT, "docs", "results", "study"))
    keys = args.models.split(",") if args.models else (
        list(study.QUICK_RUNS) if args.quick else [r.key for r in study.RUNS])
    specs = study.select_runs(keys)
    max_iter = args.max_iter or (3 if args.quick else study.DEFAULT_MAX_ITER)
    opts = list(args.opts)
    if args.quick:  # 4x cheaper than 128 px; batches of 2
        opts = ["SOLVER.IMS_PER_BATCH", "2", "INPUT.MIN_SIZE_TRAIN", "(64,)",
                "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
                "INPUT.MAX_SIZE_TEST", "64", "DATALOADER.NUM_WORKERS", "0", *opts]
    train_set, val_set, dataset = prepare_data(args)

    if args.time_iters:
        cfgs = {}
        for s in specs:  # one timing per model (seeds cost the same)
            if s.model not in cfgs:
                cfgs[s.model] = study.build_cfg(s, output_dir=args.output_dir, max_iter=max_iter,
                                                train_set=train_set, val_set=val_set, opts=opts)
        timing = study.time_training_steps(cfgs, args.time_iters)
        # inference side by side too: trained weights where a run of the model has finished
        # here (output/study/<run>/model_final.pth), else the initialisation (same work/image)
        weights = {}
        for s in specs:
            path = os.path.join(args.output_dir, s.key, "model_final.pth")
            if os.path.isfile(path) and s.model not in weights:
                weights[s.model] = path
        n_lat = 2 if args.quick else args.latency_images
        latency = study.time_inference(cfgs, val_set, n_lat, weights)
        env = environment()
        out = dict(s_per_iter=timing, estimate=estimate(timing, specs, max_iter),
                   ms_per_image=latency, latency_images=n_lat,
                   iters_timed=args.time_iters, environment=env,
                   image_size=next(iter(cfgs.values())).INPUT.MAX_SIZE_TRAIN,
                   ims_per_batch=next(iter(cfgs.values())).SOLVER.IMS_PER_BATCH)
        os.makedirs(args.results_dir, exist_ok=True)
        with open(os.path.join(args.results_dir, "timing.json"), "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
        rows = [dict(model=m, **{"s/iter (median)": t["median_s"], "min": t["min_s"],
                                 "n": t["n"], "ms/img (median)": 1e3 * latency[m]["median_s"],
                                 "weights": "trained" if m in weights else "init"})
                for m, t in timing.items()]
        print(markdown_table(rows))
        print(f"{environment_line(env)}; estimated training for {max_iter} iterations per run: "
              f"{out['estimate']['training_hours_total']:.1f} h")
        return out

    result = study.run_study(
        specs, output_dir=args.output_dir, results_dir=args.results_dir, max_iter=max_iter,
        train_set=train_set, val_set=val_set, dataset=dataset, budget_min=args.budget_min,
        opts=opts, latency_images=2 if args.quick else args.latency_images,
        memory=not args.no_memory,
        # the tables always cover the whole study (a --models subset is one piece of it)
        table_specs=None if args.quick else study.RUNS)
    print("\n" + result["table"])
    if result["stopped"]:
        print(f"Stopped at {result['stopped']} (budget); run the same command again to continue.")
    print(f"Results: {args.results_dir}; checkpoints: {args.output_dir}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)

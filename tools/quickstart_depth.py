#!/usr/bin/env python
"""Depth quickstart: an ODE-ResNet depth model trained and evaluated on CPU in minutes.

Trains the ODE-ResNet depth model on odedet's synthetic scenes (rendered on first use),
evaluates it on the held-out split next to the trivial predictor (the training set's mean depth
everywhere) and the VGG-16 encoder trained with the same recipe, then shows how the test-time
ODE solver trades NFE and time against AbsRel.

  python tools/quickstart_depth.py                  # ODE + VGG + mean-depth baseline + sweep
  python tools/quickstart_depth.py --models ode_resnet18   # ODE model only
  python tools/quickstart_depth.py --budget-min 3 SOLVER.MAX_ITER 300   # shorter, overrides

Each model trains within --budget-min minutes (default 10): the speed of the first iterations is
measured and, if the recipe's SOLVER.MAX_ITER would not fit, the whole schedule (iterations,
warm-up, cosine) is shortened in proportion, so it still ends properly (odedet.engine.budget;
--budget-min 0 runs the recipe as configured). Results: OUTPUT/quickstart_depth.json, example
figures OUTPUT/examples_*.png, checkpoints OUTPUT/<model>/model_final.pth.
"""
import argparse
import dataclasses
import json
import logging
import os
import time

import numpy as np
import torch
import odedet  # noqa: F401,I001  (first: registers odedet, quiets detectron2 v0.6 warnings)
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import hooks
from detectron2.evaluation import inference_on_dataset
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from odedet.data.depth import read_depth_sample
from odedet.engine import Trainer
from odedet.evaluation.depth import DepthEvaluator
from odedet.modeling.depth.visualize import save_depth_figure
from odedet.ode import nfe_counts, reset_nfe, set_solver, solver_options_from_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"ode_resnet18": "configs/Depth/ode_resnet18_scenes.yaml",
           "vgg16": "configs/Depth/vgg16_scenes.yaml",
           "ode_vgg16": "configs/Depth/ode_vgg16_scenes.yaml",  # issue 17's ODE encoder
           "resnet18": "configs/Depth/resnet18_scenes.yaml"}
# Test-time solvers tried on the trained ODE model after the config's own (label, SolverOptions
# changes).
SWEEP = [("rk4 step 1", dict(method="rk4", step_size=1.0)),
         ("rk4 step 0.5", dict(method="rk4", step_size=0.5)),
         ("euler step 1", dict(method="euler", step_size=1.0)),
         ("euler step 0.5", dict(method="euler", step_size=0.5)),
         ("dopri5 tol 1e-1", dict(method="dopri5", rtol=1e-1, atol=1e-1, step_size=0.0)),
         ("dopri5 tol 1e-3", dict(method="dopri5", rtol=1e-3, atol=1e-3, step_size=0.0))]
logger = logging.getLogger("odedet.quickstart_depth")


class _QuickTrainer(Trainer):
    def build_hooks(self):  # evaluation is done (and timed) by the quickstart itself
        return [h for h in super().build_hooks() if not isinstance(h, hooks.EvalHook)]


def build_cfg(name, output_dir, opts, budget_min=0.0):
    cfg = odedet.get_odedet_cfg()
    cfg.merge_from_file(os.path.join(ROOT, CONFIGS[name]))
    # The schedule (MAX_ITER, warm-up, cosine) is fitted to the measured speed so that training
    # ends within the budget (odedet.engine.budget); an override on the command line wins.
    cfg.SOLVER.TIME_BUDGET.MINUTES = budget_min
    cfg.merge_from_list(opts)
    cfg.OUTPUT_DIR = os.path.join(output_dir, name)
    cfg.freeze()
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    return cfg


def train(cfg):
    """Train from scratch; returns the model, training seconds, iterations run and the budget's
    summary (None without a budget)."""
    # As detectron2's default_setup does: SEED fixes initialisation, data order and augmentation
    # (every model of a comparison starts from the same seed); SEED < 0 draws one.
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)
    trainer = _QuickTrainer(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()  # saves model_final.pth at the (fitted) last iteration
    seconds = time.perf_counter() - start
    budget = trainer.budget.summary if trainer.budget is not None else None
    return trainer.model, seconds, trainer.iter, budget


def evaluate(cfg, model):
    """Metrics on cfg.DATASETS.TEST[0], seconds, and forward NFE per image."""
    name = cfg.DATASETS.TEST[0]
    loader = Trainer.build_test_loader(cfg, name)
    reset_nfe(model)
    start = time.perf_counter()
    res = inference_on_dataset(model, loader, DepthEvaluator(name, distributed=False))
    seconds = time.perf_counter() - start
    n = len(DatasetCatalog.get(name))
    return res["depth"], seconds, nfe_counts(model)["forward"] / n


class _ConstantDepth(torch.nn.Module):
    """The trivial predictor: one depth (metres) everywhere."""

    def __init__(self, value):
        super().__init__()
        self.value = float(value)

    def forward(self, inputs):
        return [{"depth": torch.full((x["height"], x["width"]), self.value)} for x in inputs]


def mean_train_depth(cfg):
    meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
    total, count = 0.0, 0
    for d in DatasetCatalog.get(cfg.DATASETS.TRAIN[0]):
        depth = read_depth_sample(d)[1]
        valid = (depth > meta.min_depth) & (depth <= meta.max_depth)
        total, count = total + float(depth[valid].sum()), count + int(valid.sum())
    return total / count


def solver_sweep(cfg, model):
    """Metrics, seconds and NFE of the config's test solver, then of each SWEEP entry; the model
    is left with the config's test solver."""
    configured = solver_options_from_cfg(cfg, "TEST")
    ode = cfg.MODEL.ODE
    own = (f"{ode.METHOD_TEST} step {ode.STEP_SIZE_TEST:g}" if ode.STEP_SIZE_TEST > 0
           else f"{ode.METHOD_TEST} tol {ode.RTOL_TEST:g}")
    rows = []
    for label, changes in [(f"{own} (config)", {}), *SWEEP]:
        set_solver(model, "test", **changes)
        metrics, seconds, nfe = evaluate(cfg, model)
        rows.append(dict(solver=label, nfe_per_image=nfe, seconds=seconds, **metrics))
        set_solver(model, "test", **dataclasses.asdict(configured))
    return rows


def save_examples(cfg, model, path, count=3):
    import matplotlib.pyplot as plt  # noqa: F401  (fail early if missing)

    mapper = Trainer.build_test_loader(cfg, cfg.DATASETS.TEST[0]).dataset._map_func
    dicts = DatasetCatalog.get(cfg.DATASETS.TEST[0])[:count]
    paths = []
    model.eval()
    for i, d in enumerate(dicts):
        inp = mapper(d)
        with torch.no_grad():
            pred = model([inp])[0]["depth"].cpu().numpy()
        rgb = read_depth_sample(d, "RGB")[0]
        out = path.replace(".png", f"_{i}.png")
        paths.append(save_depth_figure(out, rgb, pred, inp["depth"].numpy(),
                                       max_depth=cfg.MODEL.DEPTH.MAX_DEPTH, title=d["file_name"]))
    return paths


def run_model(name, args):
    cfg = build_cfg(name, args.output_dir, args.opts, args.budget_min)
    model, train_s, iters, budget = train(cfg)
    metrics, eval_s, nfe = evaluate(cfg, model)
    params = sum(p.numel() for p in model.parameters())
    row = dict(model=name, params=params, iters=iters, recipe_iters=cfg.SOLVER.MAX_ITER,
               train_seconds=train_s, s_per_iter=train_s / max(iters, 1), eval_seconds=eval_s,
               nfe_per_image=nfe, **metrics, budget=budget)
    examples = save_examples(cfg, model, os.path.join(args.output_dir, f"examples_{name}.png"))
    return cfg, model, row, examples


def print_table(rows, keys, title):
    print(f"\n{title}")
    print(" | ".join(f"{k:>12}" for k in keys))
    for r in rows:
        print(" | ".join(f"{r[k]:>12.4g}" if isinstance(r[k], float) else f"{str(r[k]):>12}"
                         for k in keys))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="output/quickstart_depth")
    parser.add_argument("--budget-min", type=float, default=10.0,
                        help="wall-clock training budget per model, minutes: the schedule is "
                        "fitted to the measured speed (0: run the recipe's MAX_ITER)")
    parser.add_argument("--models", default="ode_resnet18,vgg16",
                        help=f"comma-separated encoders to train, among {', '.join(CONFIGS)}")
    parser.add_argument("--no-sweep", action="store_true", help="skip the test-solver sweep")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    setup_logger(name="odedet")
    setup_logger(name="detectron2", abbrev_name="d2")
    os.makedirs(args.output_dir, exist_ok=True)

    load_at_start = f"{os.getloadavg()[0]:.1f}"
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        parser.error(f"--models {args.models!r}: choose among {', '.join(CONFIGS)}")
    rows, results = [], {}
    for name in names:
        cfg, model, row, examples = run_model(name, args)
        rows.append(row)
        results.setdefault("examples", []).extend(examples)
        if name == "ode_resnet18" and not args.no_sweep:
            results["solver_sweep"] = solver_sweep(cfg, model)
    mean = mean_train_depth(cfg)
    metrics, _, _ = evaluate(cfg, _ConstantDepth(mean))
    rows.append(dict(model=f"mean {mean:.2f} m", params=0, iters=0, recipe_iters=0,
                     train_seconds=0.0, s_per_iter=0.0, eval_seconds=0.0, nfe_per_image=0.0,
                     **metrics, budget=None))
    results["models"] = rows
    keys = ["model", "params", "iters", "train_seconds", "s_per_iter", "AbsRel", "RMSE", "delta1",
            "delta2", "nfe_per_image"]
    print_table(rows, keys, f"Depth on {cfg.DATASETS.TEST[0]} (held-out split)")
    if "solver_sweep" in results:
        print_table(results["solver_sweep"], ["solver", "nfe_per_image", "seconds", "AbsRel",
                                              "delta1"], "ODE model, test-time solver")
    for row in rows[:-1]:
        ok = row["delta1"] >= 0.80 and row["AbsRel"] <= 0.15
        print(f"Target (delta1 >= 0.80, AbsRel <= 0.15), {row['model']}: "
              f"{'MET' if ok else 'NOT MET'} (delta1 {row['delta1']:.3f}, AbsRel "
              f"{row['AbsRel']:.3f}; {row['iters']} of the recipe's {row['recipe_iters']} "
              f"iterations, {row['train_seconds'] / 60:.1f} min of training at "
              f"{row['s_per_iter']:.3f} s/iter, budget {args.budget_min:g} min)")
    from odedet.benchmarks.output import command_line, environment

    results["environment"], results["command"] = environment(), command_line()
    results["load_average_at_start"] = load_at_start
    with open(os.path.join(args.output_dir, "quickstart_depth.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"Results: {os.path.join(args.output_dir, 'quickstart_depth.json')}; examples: "
          f"{', '.join(results['examples'])}")
    return results


if __name__ == "__main__":
    main()

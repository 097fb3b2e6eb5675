#!/usr/bin/env python
"""Depth-encoder study (issue 17): train named encoder variants on the embedded scenes with the
shared recipe (configs/Depth/Base-Depth-Scenes.yaml), evaluate on the 200 held-out scenes, and
write one small JSON per run under docs/results/depth_encoder/ (resumable: existing runs are skipped).

  python tools/depth_encoder_study.py --list
  python tools/depth_encoder_study.py --variants ode_resnet18,vgg16 --iters 1000 --seed 7
  python tools/depth_encoder_study.py --variants ode_vgg16 --seed 8 --sweep   # full recipe
  python tools/depth_encoder_study.py --table        # markdown tables from the committed JSON

``--iters N`` shortens the schedule (SOLVER.MAX_ITER N, the cosine schedule follows; everything
else as the recipe): the ablations use it, the final comparison uses the full 4500. Run each
call through ``OMP_NUM_THREADS=1 taskset -c 0`` (one pinned core, one thread) so runs are comparable.
"""
import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from odedet.benchmarks.depth_encoder import FULL_ITERS, load_runs  # noqa: E402
from odedet.benchmarks.depth_encoder import paired_table as _paired_table  # noqa: E402
from odedet.benchmarks.depth_encoder import tables as _tables  # noqa: E402
RESULTS = os.path.join(ROOT, "docs", "results", "depth_encoder")

R18 = "configs/Depth/ode_resnet18_scenes.yaml"
VGG = "configs/Depth/vgg16_scenes.yaml"
OVGG = "configs/Depth/ode_vgg16_scenes.yaml"
EULER = ["MODEL.ODE.METHOD_TRAIN", "euler", "MODEL.ODE.METHOD_TEST", "euler"]  # one Euler step
# name: (config, overrides, factor, what the row changes). The first of each factor group is
# the reference the group is compared with.
VARIANTS = {
    "ode_resnet18": (R18, [], "reference", "ODE-ResNet-18 1/4 width (quickstart model)"),
    "vgg16": (VGG, [], "reference", "VGG-16 1/4 width, BN"),
    # decoder skips
    "vgg16_skips4": (VGG, ["MODEL.VGG.OUT_FEATURES", "['vgg2','vgg3','vgg4','vgg5']",
                           "MODEL.DEPTH.IN_FEATURES", "['vgg2','vgg3','vgg4','vgg5']"],
                     "decoder skips", "VGG-16 decoded from vgg2..vgg5 (strides 4-32, 4 skips)"),
    # width at equal parameters
    "ode_resnet18_w20": (R18, ["MODEL.RESNETS.STEM_OUT_CHANNELS", "20",
                               "MODEL.RESNETS.RES2_OUT_CHANNELS", "20"],
                         "width", "ODE-ResNet-18 at width 20 (>= VGG-16's parameters)"),
    # solver and steps (training and test)
    "ode_resnet18_rk4": (R18, ["MODEL.ODE.METHOD_TRAIN", "rk4", "MODEL.ODE.METHOD_TEST", "rk4"],
                         "solver", "ODE-ResNet-18, rk4 one step (4 f-evals/block)"),
    "ode_resnet18_mid2": (R18, ["MODEL.ODE.STEP_SIZE_TRAIN", "0.5",
                                "MODEL.ODE.STEP_SIZE_TEST", "0.5"],
                          "solver", "ODE-ResNet-18, midpoint two steps"),
    "ode_resnet18_euler": (R18, EULER, "solver", "ODE-ResNet-18, euler one step (1 f-eval/block)"),
    # augmented channels
    "ode_resnet18_aug8": (R18, ["MODEL.ODE.AUGMENT_CHANNELS", "8"],
                          "augmented channels", "ODE-ResNet-18, 8 augmented channels per block"),
    # dynamics norm
    "ode_resnet18_nonorm": (R18, ["MODEL.ODE.NORM", ""],
                            "dynamics norm", "ODE-ResNet-18, no norm in the dynamics"),
    # resolution and skip levels: the new ODE-VGG encoder and its ablations
    "ode_vgg16": (OVGG, [], "resolution / skips",
                  "ODE-VGG-16 1/4 width: level 1 at full resolution, 5 skips"),
    # (5 levels at half resolution would end in a 1x1 map at stride 64 that GroupNorm cannot
    # normalise at batch 1: the half-resolution variant keeps levels 1-4, strides 4-32.)
    "ode_vgg16_stride2": (OVGG, ["MODEL.ODE_VGG.STEM_STRIDE", "2",
                                 "MODEL.ODE_VGG.OUT_FEATURES", "['ode1','ode2','ode3','ode4']",
                                 "MODEL.DEPTH.IN_FEATURES", "['ode1','ode2','ode3','ode4']"],
                          "resolution / skips",
                          "ODE-VGG-16 at half resolution: strided first conv, levels 1-4 "
                          "(strides 4-32, 4 skips, as the ODE-ResNet)"),
    "ode_vgg16_skips4": (OVGG, ["MODEL.ODE_VGG.OUT_FEATURES", "['ode2','ode3','ode4','ode5']",
                                "MODEL.DEPTH.IN_FEATURES", "['ode2','ode3','ode4','ode5']"],
                         "resolution / skips", "ODE-VGG-16 decoded from ode2..ode5 (4 skips)"),
    "ode_vgg16_noode": (OVGG, ["MODEL.ODE_VGG.ODE_LEVELS", "[]"], "resolution / skips",
                        "ODE-VGG-16 without ODE blocks (transition convs only)"),
    "ode_vgg16_l2345": (OVGG, ["MODEL.ODE_VGG.ODE_LEVELS", "[2,3,4,5]"], "resolution / skips",
                        "ODE-VGG-16, no ODE block at full resolution (level 1: conv only)"),
    "ode_vgg16_bnode": (OVGG, ["MODEL.ODE.NORM", "BN"], "dynamics norm",
                        "ODE-VGG-16, BatchNorm instead of GroupNorm in the dynamics"),
    "ode_vgg16_euler": (OVGG, EULER, "resolution / skips", "ODE-VGG-16, euler one step"),
    "ode_vgg16_euler_bn": (OVGG, EULER + ["MODEL.ODE.NORM", "BN"], "dynamics norm",
                           "ODE-VGG-16, euler one step, BatchNorm in the dynamics (VGG-16's norm)"),
    "ode_vgg16_euler_zero": (OVGG, EULER + ["MODEL.ODE.ZERO_INIT", "True"], "initialisation",
                             "ODE-VGG-16, euler one step, dynamics zero-initialised (identity "
                             "blocks at the start)"),
    "ode_vgg16_euler_bn_zero": (OVGG, EULER + ["MODEL.ODE.NORM", "BN", "MODEL.ODE.ZERO_INIT",
                                               "True"], "initialisation",
                                "ODE-VGG-16, euler one step, BatchNorm dynamics, "
                                "zero-initialised"),
    "ode_vgg16_vggstem_euler_bn_zero": (OVGG, EULER + [
        "MODEL.ODE.NORM", "BN", "MODEL.ODE.ZERO_INIT", "True", "MODEL.ODE_VGG.ODE_LEVELS",
        "[3,4,5]", "MODEL.ODE_VGG.CONVS_PER_LEVEL", "[2,2,1,1,1]"], "resolution / skips",
        "ODE-VGG-16, VGG-16's stem (levels 1-2: its two convs each), ODE levels 3-5 "
        "(euler one step, BatchNorm dynamics, zero-initialised): VGG-16's compute"),
    "ode_vgg16_euler_bn_zero_post": (OVGG, EULER + ["MODEL.ODE.NORM", "BN", "MODEL.ODE.ZERO_INIT",
                                                    "True", "MODEL.ODE_VGG.POST_ACTIVATION",
                                                    "True"], "post-activation",
                                     "ODE-VGG-16, euler one step, BatchNorm dynamics, "
                                     "zero-initialised, BN-ReLU after each ODE block (VGG-like "
                                     "level outputs)"),
    "ode_vgg16_euler_bn_zero_l2345": (OVGG, EULER + ["MODEL.ODE.NORM", "BN", "MODEL.ODE.ZERO_INIT",
                                                     "True", "MODEL.ODE_VGG.ODE_LEVELS",
                                                     "[2,3,4,5]"], "initialisation",
                                      "ODE-VGG-16, euler one step, BatchNorm dynamics, "
                                      "zero-initialised, no ODE block at full resolution"),
}
# Test-time solvers of --sweep (label, SolverOptions changes), after the config's own.
SWEEP = [("euler step 1", dict(method="euler", step_size=1.0)),
         ("euler step 0.5", dict(method="euler", step_size=0.5)),
         ("midpoint step 0.5", dict(method="midpoint", step_size=0.5)),
         ("rk4 step 1", dict(method="rk4", step_size=1.0)),
         ("dopri5 tol 1e-1", dict(method="dopri5", rtol=1e-1, atol=1e-1, step_size=0.0)),
         ("dopri5 tol 1e-3", dict(method="dopri5", rtol=1e-3, atol=1e-3, step_size=0.0))]


def result_path(variant, iters, seed, budget_min=0.0, results=None, partner=""):
    """The run's JSON; a ``--paired`` run's name ends with its partner (``__vs_<variant>``), so
    one variant paired with several others keeps one file per pairing."""
    budget = f"__b{budget_min:g}min" if budget_min > 0 else ""
    vs = f"__vs_{partner}" if partner else ""
    return os.path.join(results or RESULTS, f"{variant}__it{iters}{budget}__s{seed}{vs}.json")


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    import torch
    return dict(cpu=cpu, cores_visible=os.cpu_count(), affinity=sorted(os.sched_getaffinity(0)),
                torch_threads=torch.get_num_threads(), load_avg=list(os.getloadavg()),
                python=platform.python_version(), torch=torch.__version__)


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def encoder_macs(backbone, height=48, width=64):
    """Multiply-accumulates of one (height x width) image through the encoder, counted on every
    convolution call (so an ODE block counts once per f-evaluation of its test solver), and
    their share by the convolution's output stride."""
    import torch
    from odedet.ode.dynamics import ConcatConv2d

    per, handles = {}, []

    def count(conv, out, in_channels):
        stride = 2 ** round(math.log2(max(1.0, height / out.shape[-2])))
        n = out.shape[-2] * out.shape[-1] * conv.out_channels * in_channels * \
            conv.kernel_size[0] * conv.kernel_size[1] // conv.groups
        per[stride] = per.get(stride, 0) + n

    for m in backbone.modules():
        if isinstance(m, ConcatConv2d):  # F.conv2d on the weight: count the wrapper
            handles.append(m.register_forward_hook(
                lambda mod, i, o: count(mod.conv, o, mod.conv.in_channels - 1)))
        elif isinstance(m, torch.nn.Conv2d):  # (ConcatConv2d's inner conv is never called)
            handles.append(m.register_forward_hook(lambda mod, i, o: count(mod, o, mod.in_channels)))
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        backbone(torch.zeros(1, 3, height, width))
    backbone.train(was_training)
    for h in handles:
        h.remove()
    total = sum(per.values())
    return dict(mmac=total / 1e6, share_by_stride={str(k): v / total for k, v in sorted(per.items())})


class _Stop(Exception):
    pass


def budget_hook(budget_s, recipe_iters, time_iters=(10, 40), refit_every=100):
    """A detectron2 hook that fits the schedule into ``budget_s`` seconds of training: after
    timing iterations ``time_iters`` it sets the cosine schedule's length (LRMultiplier
    ``_max_iter``) to the iterations that fit, re-fits every ``refit_every`` iterations from the
    average speed so far when the projection is off by > 2%, and stops the loop there (never
    beyond the recipe's own iterations). A stand-in for odedet.engine.budget (helper `budget`,
    SOLVER.TIME_BUDGET), used only while that is not in this tree."""
    from detectron2.engine import HookBase

    class _Fit(HookBase):
        def before_train(self):
            self.t0, self.fitted, self.t_mark = time.perf_counter(), recipe_iters, None
            self.refits = []

        def _fit(self, done, s_iter):
            remaining = budget_s - (time.perf_counter() - self.t0)
            fitted = min(recipe_iters, done + max(1, int(remaining / s_iter)))
            if abs(fitted - self.fitted) > 0.02 * self.fitted:
                self.fitted = fitted
                self.trainer.scheduler._max_iter = fitted
                self.refits.append((done, round(s_iter, 4), fitted))

        def after_step(self):
            done = self.trainer.iter + 1
            if done == time_iters[0]:
                self.t_mark = time.perf_counter()
            elif done == time_iters[1] or (done > time_iters[1] and done % refit_every == 0):
                s_iter = (time.perf_counter() - self.t_mark) / (done - time_iters[0])
                self._fit(done, s_iter)
            if done >= self.fitted or time.perf_counter() - self.t0 > 1.02 * budget_s:
                raise _Stop()

    return _Fit()


def run(variant, iters, seed, sweep, output_dir, budget_min=0.0, opts=(), results=None,
        paired_with=""):
    import torch
    from detectron2.engine import hooks
    from detectron2.evaluation import inference_on_dataset
    from detectron2.data import DatasetCatalog
    from detectron2.utils.env import seed_all_rng

    import odedet
    from odedet.engine import Trainer
    from odedet.evaluation.depth import DepthEvaluator
    from odedet.ode import iter_ode_blocks, nfe_counts, reset_nfe, set_solver, \
        solver_options_from_cfg

    threads = int(os.environ.get("ODEDET_HEAVY_THREADS", "0") or 0)
    if threads:
        torch.set_num_threads(threads)
    config, overrides, factor, label = VARIANTS[variant]
    cfg = odedet.get_odedet_cfg()
    cfg.merge_from_file(os.path.join(ROOT, config))
    cfg.merge_from_list(list(overrides) + ["SOLVER.MAX_ITER", str(iters), "SEED", str(seed),
                                           "OUTPUT_DIR", os.path.join(output_dir, variant)]
                        + list(opts))
    # The quickstarts' budget (odedet.engine.budget: times the first iterations and shortens
    # the whole schedule in proportion); the stand-in hook below only where it is missing.
    shared_budget = budget_min > 0 and "TIME_BUDGET" in cfg.SOLVER
    if shared_budget:
        cfg.SOLVER.TIME_BUDGET.MINUTES = budget_min
    cfg.freeze()
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)

    class _StudyTrainer(Trainer):
        def build_hooks(self):  # evaluated below, not by the EvalHook
            return [h for h in super().build_hooks() if not isinstance(h, hooks.EvalHook)]

    start_machine = machine()
    seed_all_rng(cfg.SEED)
    trainer = _StudyTrainer(cfg)
    trainer.resume_or_load(resume=False)
    fit = None
    if budget_min > 0 and not shared_budget:
        fit = budget_hook(budget_min * 60, iters)
        trainer.register_hooks([fit])
    t0 = time.perf_counter()
    try:
        trainer.train()
        done = int(trainer.max_iter)  # the fitted schedule's length under a shared budget
    except _Stop:
        done = trainer.iter + 1  # detectron2's loop has run after_train (finally) already
    train_s = time.perf_counter() - t0
    model = trainer.model
    params = sum(p.numel() for p in model.parameters())
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    name = cfg.DATASETS.TEST[0]
    n = len(DatasetCatalog.get(name))

    def evaluate():
        loader = Trainer.build_test_loader(cfg, name)
        reset_nfe(model)
        t = time.perf_counter()
        res = inference_on_dataset(model, loader, DepthEvaluator(name, distributed=False))
        return res["depth"], time.perf_counter() - t, nfe_counts(model)["forward"] / n

    metrics, eval_s, nfe = evaluate()
    macs = encoder_macs(model.backbone)
    row = dict(variant=variant, label=label, factor=factor, config=config, overrides=overrides,
               iters=done, recipe_iters=iters, budget_min=budget_min,
               budget=getattr(trainer, "budget", None) and trainer.budget.summary,
               budget_refits=fit.refits if fit else [], seed=seed, params=params,
               backbone_params=backbone_params, encoder_macs=macs, train_seconds=train_s,
               s_per_iter=train_s / done, eval_seconds=eval_s, nfe_per_image=nfe,
               metrics=metrics, opts=list(opts), commit=git_commit(),
               paired_with=paired_with, machine_start=start_machine, machine_end=machine(),
               finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    if sweep and list(iter_ode_blocks(model)):
        configured = solver_options_from_cfg(cfg, "TEST")
        rows = [dict(solver="config", nfe_per_image=nfe, seconds=eval_s, **metrics)]
        for lab, changes in SWEEP:
            set_solver(model, "test", **changes)
            m, s, k = evaluate()
            rows.append(dict(solver=lab, nfe_per_image=k, seconds=s, **m))
            set_solver(model, "test", **dataclasses.asdict(configured))
        row["solver_sweep"] = rows
    path = result_path(variant, iters, seed, budget_min, results, paired_with)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(row, f, indent=1)
    print(f"{variant} it{iters} s{seed}: AbsRel {metrics['AbsRel']:.4f} delta1 "
          f"{metrics['delta1']:.4f} params {params} {train_s:.0f}s -> {path}", flush=True)
    return row


def sweep_checkpoint(variant, iters, seed, output_dir, max_images=0, results=None, opts=()):
    """The test-time solver sweep of a run's saved checkpoint (OUTPUT/<variant>/
    model_final.pth from ``--iters/--seed`` of that run) on the first ``max_images`` held-out
    scenes (0: all); written to ``sweep_<variant>__it<iters>__s<seed>__n<images>.json``."""
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.evaluation import inference_on_dataset
    from detectron2.modeling import build_model

    import odedet
    from odedet.engine import Trainer
    from odedet.evaluation.depth import DepthEvaluator
    from odedet.ode import nfe_counts, reset_nfe, set_solver, solver_options_from_cfg

    torch.set_num_threads(int(os.environ.get("ODEDET_HEAVY_THREADS", "1") or 1))
    config, overrides, factor, label = VARIANTS[variant]
    cfg = odedet.get_odedet_cfg()
    cfg.merge_from_file(os.path.join(ROOT, config))
    cfg.merge_from_list(list(overrides) + list(opts))
    name = cfg.DATASETS.TEST[0]
    dicts = DatasetCatalog.get(name)
    if max_images:
        dicts = dicts[:max_images]
        sub = f"{name}_first{max_images}"
        if sub not in DatasetCatalog.list():
            DatasetCatalog.register(sub, lambda d=dicts: d)
            MetadataCatalog.get(sub).set(**{k: v for k, v in MetadataCatalog.get(name).as_dict()
                                            .items() if k != "name"})
        name = sub
    cfg.DATASETS.TEST = (name,)
    cfg.freeze()
    model = build_model(cfg)
    weights = os.path.join(output_dir, variant, "model_final.pth")
    DetectionCheckpointer(model).load(weights)
    model.eval()

    def evaluate():
        loader = Trainer.build_test_loader(cfg, name)
        reset_nfe(model)
        t = time.perf_counter()
        res = inference_on_dataset(model, loader, DepthEvaluator(name, distributed=False))
        return res["depth"], time.perf_counter() - t, nfe_counts(model)["forward"] / len(dicts)

    configured = solver_options_from_cfg(cfg, "TEST")
    m, sec, k = evaluate()
    rows = [dict(solver="config", nfe_per_image=k, seconds=sec, **m)]
    for lab, changes in SWEEP:
        set_solver(model, "test", **changes)
        m, sec, k = evaluate()
        rows.append(dict(solver=lab, nfe_per_image=k, seconds=sec, **m))
        set_solver(model, "test", **dataclasses.asdict(configured))
    row = dict(kind="sweep", variant=variant, label=label, iters=iters, seed=seed,
               images=len(dicts), weights=os.path.relpath(weights, ROOT), solver_sweep=rows,
               commit=git_commit(), machine=machine(),
               finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    path = os.path.join(results or RESULTS,
                        f"sweep_{variant}__it{iters}__s{seed}__n{len(dicts)}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(row, f, indent=1)
    print(f"sweep {variant} it{iters} s{seed} on {len(dicts)} images -> {path}", flush=True)
    return row


def load_results(results=None):
    return load_runs(results or RESULTS)


def tables(rows=None):
    """The markdown tables (odedet.benchmarks.depth_encoder.tables, variants in study order)."""
    return _tables(load_results() if rows is None else rows, order=list(VARIANTS))


BEGIN, END = "<!-- depth-encoder-study:begin -->", "<!-- depth-encoder-study:end -->"


def write_doc(path, text):
    """Replace the generated block of ``path`` (between BEGIN and END) with ``text``."""
    with open(path) as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} block to fill")
    head, rest = doc.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(path, "w") as f:
        f.write(f"{head}{BEGIN}\n<!-- generated by tools/depth_encoder_study.py --table "
                f"--write-doc from docs/results/depth_encoder/*.json; do not edit by hand -->\n\n"
                f"{text}\n{END}{tail}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="", help="comma-separated names (--list)")
    parser.add_argument("--iters", type=int, default=FULL_ITERS)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--budget-min", type=float, default=0.0,
                        help="fit the schedule into this many minutes of training (0: none)")
    parser.add_argument("--sweep", action="store_true", help="test-time solver sweep after")
    parser.add_argument("--sweep-checkpoint", action="store_true",
                        help="only the solver sweep of each variant's saved checkpoint (from the "
                             "run with the same --iters/--seed and --output-dir)")
    parser.add_argument("--max-images", type=int, default=0,
                        help="with --sweep-checkpoint: the first N held-out scenes (0: all)")
    parser.add_argument("--force", action="store_true", help="rerun even if the JSON exists")
    parser.add_argument("--output-dir", default="output/depth_encoder_study")
    parser.add_argument("--results-dir", default=RESULTS, help="where the run JSONs go")
    parser.add_argument("--paired", action="store_true",
                        help="train the (two) --variants at the same time, each in its own "
                             "process on its own core with one thread, so that both get the same "
                             "machine state (the fair form of a time-budget comparison); results "
                             "into <results-dir>/paired unless --results-dir is given")
    parser.add_argument("--paired-with", default="", help=argparse.SUPPRESS)  # set by --paired
    parser.add_argument("--list", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="config overrides KEY VALUE ... after the variant's (e.g. datasets)")
    parser.add_argument("--table", action="store_true", help="print the markdown tables")
    parser.add_argument("--write-doc", default="",
                        help="with --table: fill the generated block of this markdown file")
    args = parser.parse_args(argv)
    if args.list:
        for k, (c, o, f, lab) in VARIANTS.items():
            print(f"{k:22s} [{f}] {lab}: {c} {' '.join(o)}")
        return
    if args.table:
        text = tables(load_results(args.results_dir))
        paired = _paired_table(load_results(os.path.join(args.results_dir, "paired")))
        if paired:
            text = ("Paired runs (`--paired`: both encoders trained at the same time, one "
                    "pinned core each):\n\n" + paired + "\n" + text)
        if args.write_doc:
            write_doc(args.write_doc, text)
        print(text)
        return
    from detectron2.utils.logger import setup_logger
    setup_logger(name="odedet")
    setup_logger(name="detectron2", abbrev_name="d2")
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        parser.error(f"--variants: unknown {unknown}; see --list")
    if args.paired:
        return run_paired(names, args, argv if argv is not None else sys.argv[1:])
    if args.sweep_checkpoint:
        for v in names:
            sweep_checkpoint(v, args.iters, args.seed, args.output_dir, args.max_images,
                             args.results_dir, args.opts)
        return
    for v in names:
        if os.path.exists(result_path(v, args.iters, args.seed, args.budget_min,
                                      args.results_dir, args.paired_with)) and not args.force:
            print(f"skip {v} it{args.iters} s{args.seed}: done", flush=True)
            continue
        run(v, args.iters, args.seed, args.sweep, args.output_dir, args.budget_min, args.opts,
            args.results_dir, paired_with=args.paired_with)


def start_child(cmd, env, core):
    """A child process pinned to ``core`` (set in the child before it execs)."""
    return subprocess.Popen(cmd, env=env, preexec_fn=lambda: os.sched_setaffinity(0, {core}))


def run_paired(names, args, argv):
    """``--paired``: one child process per variant, started together, child i pinned to core
    i (of the cores this process may use) with one torch thread; each JSON records the variant
    it was paired with. Returns the number of children that failed."""
    cores = sorted(os.sched_getaffinity(0))
    if len(names) != 2 or len(cores) < 2:
        raise SystemExit(f"--paired needs 2 --variants and 2 cores; got {names} on cores {cores}")
    results = args.results_dir if args.results_dir != RESULTS else os.path.join(RESULTS, "paired")
    output = os.path.join(args.output_dir, "paired")
    # the parent's own arguments minus the ones it sets per child
    rest, skip = [], {"--variants": 1, "--results-dir": 1, "--output-dir": 1, "--paired": 0}
    it = iter(argv)
    for a in it:
        key = a.split("=", 1)[0]
        if key in skip:
            if skip[key] and "=" not in a:
                next(it, None)
            continue
        rest.append(a)
    children = []
    for core, (v, other) in zip(cores, (names, names[::-1])):
        if os.path.exists(result_path(v, args.iters, args.seed, args.budget_min, results, other)) \
                and not args.force:
            print(f"skip {v} it{args.iters} s{args.seed}: done", flush=True)
            continue
        cmd = [sys.executable, os.path.abspath(__file__), "--variants", v, "--paired-with", other,
               "--results-dir", results, "--output-dir", output, *rest]
        env = dict(os.environ, OMP_NUM_THREADS="1", ODEDET_HEAVY_THREADS="1")
        children.append((v, start_child(cmd, env, core)))
        print(f"{v} (paired with {other}) on core {core}: pid {children[-1][1].pid}", flush=True)
    failed = [v for v, p in children if p.wait() != 0]
    if failed:
        print(f"paired runs failed: {failed}", file=sys.stderr, flush=True)
    return len(failed)


if __name__ == "__main__":
    sys.exit(main())

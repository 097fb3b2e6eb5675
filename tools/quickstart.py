#!/usr/bin/env python
"""Quickstart: an ODE-ResNet Faster R-CNN trained and evaluated on CPU in minutes.

Generates odedet's embedded synthetic-shapes dataset (COCO format) if needed, trains the ODE
Faster R-CNN of configs/quickstart/ with odedet's Trainer, evaluates it on the held-out split
through ``Trainer.test`` (COCO AP by pycocotools, precision/recall/F1), draws detections next to
the ground truth with detectron2's Visualizer, and prints where everything went.

    python tools/quickstart.py                  # the ODE model
    python tools/quickstart.py --baseline       # + the ResNet-18 baseline, side by side
    python tools/quickstart.py --quick          # smoke test: tiny dataset, a few iterations
    python tools/quickstart.py --max-iter 200 MODEL.ODE.METHOD_TEST rk4   # shorter; overrides
    python tools/quickstart.py --budget-min 20  # a 20-minute training budget (default 10)
    python tools/quickstart.py --dial           # the compute dial: ODE + ResNet-18 + shallow
                                                # ResNet, then tools/benchmark.py dial on them

Training keeps a wall-clock budget (--budget-min, default 10 minutes): the speed of the first
iterations is measured and, if the recipe's iterations would not fit on this machine, the whole
schedule (MAX_ITER, LR steps, warm-up) is shortened in proportion (odedet.engine.budget; the log
says what was fitted, the table gives the iterations run and s/iter).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import sys

import cv2
import torch
import odedet  # noqa: F401,I001  (first: registers odedet, quiets detectron2 v0.6 warnings)
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer

from odedet import get_odedet_cfg
from odedet.config_check import config_file_arg
from odedet.data.synthetic_shapes import (
    ShapesParams,
    dataset_dir,
    ensure,
    register_synthetic_shapes,
)
from odedet.engine.atomic_io import atomic_write_text
from odedet.engine.demo import titled_panels
from odedet.engine.runs import scale_schedule, train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {  # table name -> config
    "ODE-ResNet-18-FPN": "configs/quickstart/ode_faster_rcnn_R_18_FPN_shapes.yaml",
    "ResNet-18-FPN (baseline)": "configs/quickstart/faster_rcnn_R_18_FPN_shapes.yaml",
}
SHALLOW = ("ResNet-shallow-FPN", "configs/quickstart/faster_rcnn_R_shallow_FPN_shapes.yaml")
QUICK_PARAMS = ShapesParams(num_train=32, num_val=8)  # --quick: a dataset made in a second


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--output-dir", default="output/quickstart", help="where runs go")
    p.add_argument("--config-file", default=None, type=config_file_arg,
                   help="train this config (a path, or a name under configs/) instead of the "
                   "ODE quickstart model")
    p.add_argument("--baseline", action="store_true", help="also train the ResNet baseline")
    p.add_argument("--dial", action="store_true",
                   help="the compute dial (docs/compute_dial.md): train the ODE model, the "
                   "ResNet-18 baseline and the shallow ResNet (a model whose finished run is in "
                   "OUTPUT_DIR is reused, not retrained), then run tools/benchmark.py dial on "
                   "them into OUTPUT_DIR/dial")
    p.add_argument("--max-iter", type=int, default=None, help="override SOLVER.MAX_ITER")
    p.add_argument("--budget-min", type=float, default=10.0,
                   help="wall-clock training budget per model, minutes: the schedule is fitted "
                   "to the measured speed (0: run the recipe's MAX_ITER as configured)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 32/8-image dataset under OUTPUT_DIR, 10 iterations")
    p.add_argument("--dataset-root", default=None,
                   help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    p.add_argument("--num-vis", type=int, default=8, help="validation images to visualise")
    p.add_argument("--vis-score", type=float, default=0.5, help="score threshold of drawings")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p.parse_args(argv)


def prepare_data(args) -> tuple[str, str]:
    """Generate (if needed) and register the dataset; return (train, val) names."""
    if args.quick:
        root = os.path.join(args.output_dir, "datasets")
        names = register_synthetic_shapes(root, QUICK_PARAMS, "odedet_shapes_quick", replace=True)
        ensure(QUICK_PARAMS, root)
    else:
        names = ["odedet_shapes_train", "odedet_shapes_val"]
        if args.dataset_root is not None:
            register_synthetic_shapes(args.dataset_root, replace=True)
        root = args.dataset_root
        ensure(ShapesParams(), root)
    where = os.path.abspath(dataset_dir(root))
    print(f"Dataset: {where} (COCO json + PNG images; {names[0]}, {names[1]})")
    return names[0], names[1]


def build_cfg(config_file, name, args, train_set, val_set):
    cfg = get_odedet_cfg()
    cfg.merge_from_file(config_file)
    cfg.SOLVER.TIME_BUDGET.MINUTES = 0.0 if args.quick else args.budget_min
    cfg.merge_from_list(args.opts)
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (train_set,), (val_set,)
    cfg.OUTPUT_DIR = os.path.join(args.output_dir, os.path.basename(cfg.OUTPUT_DIR.rstrip("/")))
    max_iter = args.max_iter if args.max_iter is not None else (10 if args.quick else None)
    if max_iter is not None:  # shorten the schedule proportionally
        scale_schedule(cfg, max_iter)
    cfg.freeze()
    return cfg


def visualize(cfg, model, dataset_name, out_dir, num, score):
    """Ground truth (left) and detections scoring >= ``score`` (right) for ``num`` images."""
    os.makedirs(out_dir, exist_ok=True)
    meta = MetadataCatalog.get(dataset_name)
    aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    model.eval()
    for d in DatasetCatalog.get(dataset_name)[:num]:
        rgb = read_image(d["file_name"], format="RGB")
        image = read_image(d["file_name"], format=cfg.INPUT.FORMAT)
        tensor = torch.as_tensor(aug.get_transform(image).apply_image(image).astype("float32"))
        inputs = {"image": tensor.permute(2, 0, 1), "height": rgb.shape[0], "width": rgb.shape[1]}
        with torch.no_grad():
            inst = model([inputs])[0]["instances"].to("cpu")
        inst = inst[inst.scores >= score]
        gt = Visualizer(rgb, meta, scale=3.0).draw_dataset_dict(d).get_image()
        pred = Visualizer(rgb, meta, scale=3.0).draw_instance_predictions(inst).get_image()
        name = os.path.splitext(os.path.basename(d["file_name"]))[0] + ".png"
        both = titled_panels([gt, pred], ["ground truth", f"prediction (score >= {score:g})"])
        cv2.imwrite(os.path.join(out_dir, name), both[:, :, ::-1])
    return out_dir


def print_table(rows: dict) -> None:
    head = f"{'model':<26}{'AP':>7}{'AP50':>7}{'P':>7}{'R':>7}{'F1':>7}{'params':>9}"
    head += f"{'iters':>7}{'train':>8}{'s/iter':>8}{'NFE/it':>8}"
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        r = {k: float("nan") if v is None else v for k, v in r.items()}  # reloaded JSON nulls
        print(
            f"{name:<26}{r['AP']:7.1f}{r['AP50']:7.1f}{r['P']:7.1f}{r['R']:7.1f}{r['F1']:7.1f}"
            f"{r['params'] / 1e6:8.2f}M{r['iters']:7d}{r['train_s']:7.0f}s{r['s_per_iter']:8.2f}"
            f"{r['nfe_forward_per_iter']:8.0f}"
        )


def strict_json(obj) -> str:
    """JSON with undefined metrics (NaN, e.g. AP-large when no large object exists) as null."""
    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o
    return json.dumps(clean(obj), indent=2, allow_nan=False)


def write_summary(path: str, rows: dict, meta: dict) -> None:
    """Add ``rows`` to the summary at ``path``, keeping the models other runs wrote there (two
    quickstarts sharing an --output-dir, one model each, must not overwrite each other's row).
    Read-modify-write under an exclusive lock, replaced atomically; each row records the
    command and environment it was measured with."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = {}
        if os.path.exists(path):
            try:
                with open(path) as f:
                    old = json.load(f)
            except ValueError as e:
                raise SystemExit(f"{path}: not valid JSON ({e}); move it away or pass another "
                                 "--output-dir") from e
        kept = {k: v for k, v in old.items() if not k.startswith("_") and k not in rows}
        new = {k: {**v, "command": meta["_command"]} for k, v in rows.items()}
        atomic_write_text(path, strict_json({**kept, **new, **meta}))


def main(argv=None):
    args = parse_args(argv)
    for key in ("output_dir", "config_file", "dataset_root"):  # as given, before the chdir
        if getattr(args, key) is not None:
            setattr(args, key, os.path.abspath(getattr(args, key)))
    os.chdir(ROOT)  # configs and the default dataset root are relative to the repository
    setup_logger(name="odedet")
    setup_logger()
    train_set, val_set = prepare_data(args)
    configs = dict(MODELS)
    if args.config_file:  # replaces the ODE model; named after its file
        configs.pop("ODE-ResNet-18-FPN")
        configs = {os.path.basename(args.config_file)[: -len(".yaml")]: args.config_file, **configs}
    if args.dial:
        configs[SHALLOW[0]] = SHALLOW[1]
    elif not args.baseline:
        configs.pop("ResNet-18-FPN (baseline)")
    rows = {}
    for name, config_file in configs.items():
        cfg = build_cfg(config_file, name, args, train_set, val_set)
        finished = finished_run(cfg, config_file) if args.dial else None
        if finished is not None:
            print(f"\n== {name}: reusing the finished run in {cfg.OUTPUT_DIR} ==")
            rows[name] = finished
            continue
        budget = cfg.SOLVER.TIME_BUDGET.MINUTES
        print(f"\n== {name}: training {cfg.SOLVER.MAX_ITER} iterations ({config_file})"
              + (f", fitted into a {budget:g}-minute budget ==" if budget > 0 else " =="))
        r = train_and_evaluate(cfg)
        r["vis_dir"] = visualize(cfg, r.pop("model"), val_set, os.path.join(cfg.OUTPUT_DIR, "vis"),
                                 args.num_vis, args.vis_score)
        r["output_dir"], r["config"] = cfg.OUTPUT_DIR, config_file
        rows[name] = r
    print(f"\nHeld-out split {val_set}: COCO box AP/AP50, P/R/F1 at IoU 0.5 (%):")
    print_table(rows)
    summary = os.path.join(args.output_dir, "quickstart_results.json")
    from odedet.benchmarks.output import command_line, environment

    meta = {"_environment": environment(),
            "_command": command_line(__file__, sys.argv[1:] if argv is None else list(argv))}
    for r in rows.values():  # each model's own record, beside its checkpoint
        atomic_write_text(os.path.join(r["output_dir"], "quickstart_result.json"),
                          strict_json({**r, **meta}))
    write_summary(summary, rows, meta)
    for name, r in rows.items():
        r = {k: float("nan") if v is None else v for k, v in r.items()}  # reloaded JSON nulls
        print(f"{name}: checkpoint, metrics.json, TensorBoard events and COCO results in "
              f"{os.path.abspath(r['output_dir'])}; visualised detections in "
              f"{os.path.abspath(r['vis_dir'])}")
    print(f"Summary: {os.path.abspath(summary)}")
    if args.dial:
        run_dial(args, rows)
    return rows


def finished_run(cfg, config_file: str):
    """The row of a finished quickstart run of ``config_file`` in cfg.OUTPUT_DIR (its record and
    final checkpoint both there), or None."""
    record = os.path.join(cfg.OUTPUT_DIR, "quickstart_result.json")
    if not (os.path.isfile(record) and os.path.isfile(os.path.join(cfg.OUTPUT_DIR,
                                                                   "model_final.pth"))):
        return None
    try:
        with open(record) as f:
            row = json.load(f)
    except ValueError as e:
        raise SystemExit(f"{record}: not valid JSON ({e}); delete that run folder to retrain it")
    if row.get("config") != config_file:
        return None
    return {k: v for k, v in row.items() if not k.startswith("_")}


def run_dial(args, rows: dict) -> None:
    """tools/benchmark.py dial on the three trained models (one process, interleaved timing)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("odedet_benchmark_tool",
                                                  os.path.join(ROOT, "tools", "benchmark.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (ode_name, ode), *baselines = rows.items()
    argv = ["dial", "--out", os.path.join(args.output_dir, "dial"),
            "--threads", str(torch.get_num_threads()),
            "--config-file", ode["config"],
            "--weights", os.path.join(ode["output_dir"], "model_final.pth")]
    for name, r in baselines:
        argv += ["--baseline", name.replace(" (baseline)", ""), r["config"],
                 os.path.join(r["output_dir"], "model_final.pth")]
    if args.quick:
        argv.append("--quick")
    print("\n== the compute dial: python tools/benchmark.py " + " ".join(argv) + " ==")
    bench.main(argv)


if __name__ == "__main__":
    main()

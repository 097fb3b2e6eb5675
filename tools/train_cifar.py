#!/usr/bin/env python
"""Train and evaluate image classifiers (ResNet vs ODE-Net) on the detectors' backbone builders.

  python tools/train_cifar.py list                                  # models and datasets
  python tools/train_cifar.py --model mnist-odenet                  # embedded digits, ODE-Net
  python tools/train_cifar.py --model resnet20 --dataset cifar10 --data-root datasets
  python tools/train_cifar.py --model d2-resnet18 --export-backbone-for configs/x.yaml
  python tools/train_cifar.py paper-table                           # the paper's Table 1, digits
  python tools/train_cifar.py --model ode-resnet MODEL.ODE.ADJOINT False   # trailing KEY VALUE

Each run writes into --output-dir: report.json, report.md, confusion.png, training.png,
tolerance_sweep.png (ODE models), config.yaml and last_checkpoint.pth (per epoch; --resume).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
import odedet  # noqa: F401,I001  (first: registers odedet, quiets detectron2 v0.6 warnings)
from detectron2.modeling import build_model

from odedet.config import get_odedet_cfg
from odedet.config_check import config_file_arg
from odedet.data.classification import DATASET_NAMES, build_loaders, load_classification_data
from odedet.engine.classification import train_classifier
from odedet.evaluation.classification import evaluate_classifier
from odedet.evaluation.classification_bench import (
    inference_latency, params_and_flops, peak_training_memory, tolerance_sweep,
)
from odedet.evaluation.classification_report import (
    PAPER_TABLE1, paper_table_markdown, write_report,
)
from odedet.modeling.classification import (
    MODEL_PRESETS, available_models, build_classifier_cfg, export_backbone_checkpoint,
    input_channels,
)

COMMANDS = ("train", "paper-table", "list")


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS + ("-h", "--help"):
        argv.insert(0, "train")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="models and datasets")
    for cmd in ("train", "paper-table"):
        s = sub.add_parser(cmd)
        _common_args(s, paper=cmd == "paper-table")
    return p.parse_args(argv)


def _common_args(s, paper: bool):
    if not paper:
        s.add_argument("--model", default=None,
                       help="a preset (see `list`); default mnist-odenet, or none with "
                            "--config-file (then that file's backbone is used)")
        s.add_argument("--config-file", default="", type=config_file_arg,
                       help="detectron2/odedet yaml (a path, or a name under configs/): its backbone")
        s.add_argument("--export-backbone-for", default="", metavar="DETECTOR_YAML",
                       type=config_file_arg,
                       help="also write backbone_for_detector.pth loadable by MODEL.WEIGHTS")
    s.add_argument("--dataset", default="digits", choices=DATASET_NAMES)
    s.add_argument("--data-root", default=None, help="default: $DETECTRON2_DATASETS or datasets")
    s.add_argument("--download", action="store_true", help="download CIFAR/MNIST if missing")
    s.add_argument("--image-size", type=int, default=16 if paper else None,
                   help="side of digits (default 28; paper-table: 16) / ImageFolder images")
    s.add_argument("--epochs", type=int, default=6 if paper else 10)
    s.add_argument("--batch-size", type=int, default=32 if paper else 128)
    s.add_argument("--lr", type=float, default=0.05 if paper else 0.1)
    s.add_argument("--weight-decay", type=float, default=5e-4)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=0)
    s.add_argument("--max-iters-per-epoch", type=int, default=0, help="0 = whole epoch")
    s.add_argument("--tolerances", type=float, nargs="+", default=[1e-1, 1e-2, 1e-3, 1e-4])
    s.add_argument("--sweep-method", default="dopri5", help="adaptive torchdiffeq method")
    s.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocess")
    s.add_argument("--memory-batch", type=int, default=256 if paper else 0,
                   help="batch of the peak-memory measurement (0 = --batch-size); large enough "
                        "that activations, not weights, dominate")
    s.add_argument("--latency-repeats", type=int, default=5, help="timed eval forwards (median)")
    s.add_argument("--resume", action="store_true", help="continue from last_checkpoint.pth")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("--output-dir", default="output/paper_table1" if paper else "")
    s.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")


def _seed(seed: int):
    torch.manual_seed(seed)
    np.random.seed(seed)


def run_one(args, model_name: str | None, out_dir: str) -> dict:
    """Train one classifier, measure it, write its report into ``out_dir``; return the report."""
    if getattr(args, "export_backbone_for", ""):  # a bad detector yaml fails now, not after training
        get_odedet_cfg().merge_from_file(args.export_backbone_for)
    _seed(args.seed)
    data = load_classification_data(
        args.dataset, args.data_root, seed=args.seed, channels=input_channels(model_name),
        download=args.download, image_size=args.image_size,
    )
    k = len(data.classes)
    cfg = build_classifier_cfg(
        model_name, num_classes=k, pixel_mean=data.pixel_mean, pixel_std=data.pixel_std,
        config_file=getattr(args, "config_file", ""), opts=args.opts,
    )
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    model = build_model(cfg)
    loaders = build_loaders(data, args.batch_size, seed=args.seed, workers=args.workers)
    signature = dict(model=model_name or cfg.MODEL.BACKBONE.NAME, dataset=args.dataset,
                     batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                     image_size=data.image_size[0], max_iters=args.max_iters_per_epoch)
    history = train_classifier(
        model, loaders, epochs=args.epochs, out_dir=out_dir, num_classes=k, lr=args.lr,
        weight_decay=args.weight_decay, signature=signature, resume=args.resume,
        max_iters_per_epoch=args.max_iters_per_epoch, quiet=args.quiet,
    )
    report = measure(args, model, cfg, data, loaders, history)
    report["run"] = dict(signature, epochs=args.epochs, model=signature["model"],
                         train_images=len(data.train), val_images=len(data.val),
                         device=str(model.device), torch_threads=torch.get_num_threads())
    if getattr(args, "export_backbone_for", ""):
        report["export"] = export_for(model, args.export_backbone_for, out_dir)
    paths = write_report(out_dir, report)
    print(f"[{report['run']['model']}] test top-1 {100 * report['test']['top1']:.2f}%; "
          f"report: {paths['markdown']}")
    return report


def measure(args, model, cfg, data, loaders, history) -> dict:
    """Test metrics, cost (params/FLOPs), latency, peak training memory, NFE, tolerance sweep."""
    k = len(data.classes)
    test = evaluate_classifier(model, loaders["test"], k, data.classes)
    batch, _ = next(iter(loaders["test"]))
    images = sum(h["images"] for h in history)
    train = {
        "history": history,
        "images_per_s": images / max(sum(h["seconds"] for h in history), 1e-9),
        "nfe_forward": float(np.mean([h["nfe_forward"] for h in history])),
        "nfe_backward": float(np.mean([h["nfe_backward"] for h in history])),
    }
    memory = None
    if not args.no_memory:
        mb = args.memory_batch or args.batch_size
        memory = dict(peak_training_memory(model, cfg, (mb,) + tuple(batch.shape[1:])),
                      batch_size=mb)
    return {
        "test": test,
        "cost": params_and_flops(model, batch[:8]),
        "latency": inference_latency(model, batch, repeats=args.latency_repeats),
        "memory": memory,
        "train": train,
        "tolerance_sweep": tolerance_sweep(model, loaders["test"], k, args.tolerances,
                                           args.sweep_method),
        "class_names": list(data.classes),
    }


def export_for(model, detector_yaml: str, out_dir: str) -> dict:
    """Write the backbone as a checkpoint keyed for the detector built from ``detector_yaml``."""
    target_cfg = get_odedet_cfg()
    target_cfg.merge_from_file(detector_yaml)
    target_cfg.MODEL.DEVICE = "cpu"
    target = build_model(target_cfg)
    path = os.path.join(out_dir, "backbone_for_detector.pth")
    summary = export_backbone_checkpoint(model, path, target)
    print(f"backbone checkpoint for {detector_yaml}: {path} ({summary['tensors']} tensors; "
          f"{len(summary['uncovered_target_backbone_keys'])} target backbone keys left at init)")
    return summary


def run_paper_table(args) -> dict:
    """ResNet vs RK-Net vs ODE-Net (Chen et al. 2018, Table 1) on the same data and budget."""
    reports = {}
    for name in PAPER_TABLE1:
        reports[name] = run_one(args, name, os.path.join(args.output_dir, name))
    table = paper_table_markdown(reports)
    r0 = reports["mnist-resnet"]["run"]
    note = (f"Measured: {args.dataset} ({r0['train_images']} train images at "
            f"{r0['image_size']}x{r0['image_size']}), {args.epochs} epochs, batch "
            f"{args.batch_size}, {r0['device']}, {r0['torch_threads']} threads; peak memory of "
            f"2 training steps at batch {args.memory_batch or args.batch_size}. Paper: MNIST.\n")
    with open(os.path.join(args.output_dir, "paper_table1.md"), "w") as f:
        f.write(table + "\n" + note)
    from odedet.benchmarks.output import command_line, environment

    with open(os.path.join(args.output_dir, "paper_table1.json"), "w") as f:
        json.dump({n: {k: r[k] for k in ("run", "cost", "memory", "train")} | {
            "test_error": 1 - r["test"]["top1"]} for n, r in reports.items()}
            | {"_environment": environment(), "_command": command_line()}, f, indent=2)
    print(table + "\n" + note)
    return reports


def main(argv=None):
    args = parse_args(argv)
    if args.command == "list":
        for name in available_models():
            print(f"{name:22s} {MODEL_PRESETS[name][0]}")
        print("datasets:", ", ".join(DATASET_NAMES), "(default: digits, embedded)")
        return None
    if args.command == "paper-table":
        return run_paper_table(args)
    model = args.model or (None if args.config_file else "mnist-odenet")
    tag = model or os.path.splitext(os.path.basename(args.config_file))[0]
    out = args.output_dir or os.path.join("output", "cls", f"{tag}_{args.dataset}")
    return run_one(args, model, out)


if __name__ == "__main__":
    main()

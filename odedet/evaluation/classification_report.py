"""A classification run's report: JSON, a markdown table and PNG plots (matplotlib, Agg).

The report dict (built by ``tools/train_cifar.py``) has "run", "test" (metrics from
:func:`evaluate_classifier`), "cost", "latency", "memory", "train" (history) and
"tolerance_sweep"; :func:`write_report` writes report.json, report.md, confusion.png,
training.png and, for ODE models, tolerance_sweep.png. Also: the paper's Table 1 for comparison.
"""
from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from odedet.engine.atomic_io import atomic_write_text  # noqa: E402

# Chen et al. (2018), Table 1 (MNIST): test error %, parameters, memory, time.
PAPER_TABLE1 = {
    "mnist-resnet": {"label": "ResNet", "error": 0.41, "params": "0.60 M", "memory": "O(L)",
                     "time": "O(L)"},
    "mnist-rknet": {"label": "RK-Net", "error": 0.47, "params": "0.22 M", "memory": "O(L~)",
                    "time": "O(L~)"},
    "mnist-odenet": {"label": "ODE-Net", "error": 0.42, "params": "0.22 M", "memory": "O(1)",
                     "time": "O(L~)"},
}


def report_markdown(r: dict) -> str:
    """The run's headline numbers and per-class metrics as markdown tables."""
    t, run = r["test"], r["run"]
    mem = r.get("memory") or {}
    rows = [
        ("model", run["model"]), ("dataset", f"{run['dataset']} ({t['num_images']} test images)"),
        ("top-1 accuracy", f"{100 * t['top1']:.2f}%"),
        ("macro precision / recall / F1", f"{100 * t['macro_precision']:.2f}% / "
         f"{100 * t['macro_recall']:.2f}% / {100 * t['macro_f1']:.2f}%"),
        ("parameters", f"{r['cost']['params']:,}"),
        ("FLOPs per image (fvcore, eval solver)", f"{r['cost']['flops_per_image'] / 1e6:.2f} M"),
        ("training throughput", f"{r['train']['images_per_s']:.1f} img/s"),
        ("inference latency", f"{r['latency']['ms_per_batch']:.1f} ms / batch of "
         f"{r['latency']['batch_size']} ({r['latency']['ms_per_image']:.2f} ms / image)"),
        ("peak training memory", f"{mem['peak_train_memory_mb']:.1f} MiB (batch "
         f"{mem['batch_size']}, {mem['method']})" if mem else "not measured"),
        ("NFE per training iteration (fwd / bwd)",
         f"{r['train']['nfe_forward']:.1f} / {r['train']['nfe_backward']:.1f}"),
        ("NFE per test batch (fwd)", f"{t['nfe_forward_per_batch']:.1f}"),
    ]
    out = ["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    out += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    out += [f"| {c['class']} | {100 * c['precision']:.1f}% | {100 * c['recall']:.1f}% | "
            f"{100 * c['f1']:.1f}% | {c['support']} |" for c in t["per_class"]]
    if r.get("tolerance_sweep"):
        out += ["", "| method | rtol = atol | top-1 | NFE / batch | latency ms / batch |",
                "|---|---|---|---|---|"]
        out += [f"| {s['method']} | {s['rtol']:g} | {100 * s['top1']:.2f}% | "
                f"{s['nfe_forward_per_batch']:.1f} | {s['latency_ms_per_batch']:.1f} |"
                if "error" not in s else f"| {s['method']} | {s['rtol']:g} | failed: "
                f"{s['error'][:80]} | | |" for s in r["tolerance_sweep"]]
    return "\n".join(out) + "\n"


def plot_confusion(confusion, class_names, path: str, title: str = "") -> None:
    """Row-normalised confusion matrix (true class rows) with the raw counts written in."""
    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(cm)
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * k + 2), max(3.5, 0.45 * k + 1.5)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_tolerance_sweep(sweep: list, path: str, title: str = "") -> None:
    """Accuracy against forward NFE per batch, one point per tolerance, labelled."""
    sweep = [s for s in sweep if "error" not in s]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    nfe = [s["nfe_forward_per_batch"] for s in sweep]
    acc = [100 * s["top1"] for s in sweep]
    ax.plot(nfe, acc, "o-")
    for i, (s, x, y) in enumerate(zip(sweep, nfe, acc)):  # staggered: points may coincide
        ax.annotate(f"tol {s['rtol']:g}: {s['latency_ms_per_batch']:.0f} ms", (x, y),
                    fontsize=7, textcoords="offset points", xytext=(4, -10 - 9 * i))
    ax.set_xlabel(f"forward NFE per test batch ({sweep[0]['method']})")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title or "evaluation-time tolerance sweep")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_training(history: list, path: str) -> None:
    """Training loss and train/val accuracy per epoch."""
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    a.plot(ep, [h["train_loss"] for h in history], "o-")
    a.set_xlabel("epoch")
    a.set_ylabel("train loss")
    b.plot(ep, [100 * h["train_top1"] for h in history], "o-", label="train")
    b.plot(ep, [100 * h["val_top1"] for h in history], "s-", label="val")
    b.set_xlabel("epoch")
    b.set_ylabel("top-1 (%)")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out_dir: str, report: dict) -> dict:
    """Write the report files into ``out_dir``; returns {kind: path}."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f) for k, f in (
        ("json", "report.json"), ("markdown", "report.md"), ("confusion", "confusion.png"),
        ("training", "training.png"))}
    atomic_write_text(paths["json"], json.dumps(report, indent=2) + "\n")
    atomic_write_text(paths["markdown"], f"# {report['run']['model']} on {report['run']['dataset']}"
                 f"\n\n{report_markdown(report)}")
    plot_confusion(report["test"]["confusion"], report["class_names"], paths["confusion"],
                   f"{report['run']['model']}: test confusion (row-normalised)")
    plot_training(report["train"]["history"], paths["training"])
    if any("error" not in s for s in report.get("tolerance_sweep") or []):
        paths["sweep"] = os.path.join(out_dir, "tolerance_sweep.png")
        plot_tolerance_sweep(report["tolerance_sweep"], paths["sweep"],
                             f"{report['run']['model']}: accuracy vs NFE")
    return paths


def paper_table_markdown(reports: dict) -> str:
    """Measured Table 1 rows (``reports``: preset name -> report) beside the paper's numbers."""
    head = ("| model | test error (measured) | test error (paper, MNIST) | params (measured) | "
            "params (paper) | peak train memory (measured) | memory (paper) | "
            "NFE fwd / bwd per train iter | train img/s |")
    out = [head, "|" + "---|" * 9]
    for name, r in reports.items():
        p = PAPER_TABLE1[name]
        mem = r.get("memory") or {}
        mem_s = f"{mem['peak_train_memory_mb']:.1f} MiB" if mem else "not measured"
        out.append(
            f"| {p['label']} | {100 * (1 - r['test']['top1']):.2f}% | {p['error']:.2f}% | "
            f"{r['cost']['params'] / 1e6:.3f} M | {p['params']} | {mem_s} | {p['memory']} | "
            f"{r['train']['nfe_forward']:.0f} / {r['train']['nfe_backward']:.0f} | "
            f"{r['train']['images_per_s']:.0f} |"
        )
    return "\n".join(out) + "\n"

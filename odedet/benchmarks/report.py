"""The ResNet vs ODE-Net comparison report: detection, depth and classification studies plus
the cost benchmarks, gathered from the tools' own JSON outputs into one markdown file.

Every figure in the report is read from a JSON file a tool wrote when it measured it; a study
whose JSON is absent is run first (``tools/quickstart.py``, ``tools/quickstart_depth.py``,
``tools/train_cifar.py paper-table``, ``tools/benchmark.py``), or reused when present.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .output import environment, environment_line, markdown_table, render_markdown

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARKS = ("memory", "overhead", "models", "tolerance")


def study_commands(args) -> dict:
    """name -> (JSON the study writes, command that (re)computes it)."""
    py, out = sys.executable, args.out
    quick = ["--quick"] if args.quick else []
    det = os.path.join(out, "detection")
    dep = os.path.join(out, "depth")
    cls = os.path.join(out, "classification")
    cmds = {
        "detection": (os.path.join(det, "quickstart_results.json"),
                      [py, "tools/quickstart.py", "--baseline", "--output-dir", det, *quick,
                       *args.detection_args]),
        "depth": (os.path.join(dep, "quickstart_depth.json"),
                  [py, "tools/quickstart_depth.py", "--output-dir", dep, "--models",
                   "ode_resnet18,vgg16,resnet18", *(["--budget-min", "1", "SOLVER.MAX_ITER", "20"]
                                              if args.quick else []), *args.depth_args]),
        "classification": (os.path.join(cls, "paper_table1.json"),
                           [py, "tools/train_cifar.py", "paper-table", "--output-dir", cls,
                            "--dataset", args.cls_dataset,
                            *(["--epochs", "1", "--max-iters-per-epoch", "5"] if args.quick
                              else []), *args.cls_args]),
    }
    for name in BENCHMARKS[:3]:
        bench_out = os.path.join(out, "benchmarks", name)
        cmds[name] = (os.path.join(bench_out, f"{name}.json"),
                      [py, "tools/benchmark.py", name, "--out", bench_out, *quick])
    return cmds


def run_studies(args, only=None) -> dict:
    """Run each study whose JSON is missing (all with ``args.rerun``); returns name -> JSON path."""
    paths = {}
    for name, (path, cmd) in study_commands(args).items():
        if only and name not in only:
            continue
        if args.rerun or not os.path.isfile(path):
            print(f"[report] {name}: {' '.join(cmd)}", flush=True)
            proc = subprocess.run(cmd, cwd=ROOT)
            if proc.returncode != 0 or not os.path.isfile(path):
                print(f"[report] {name} failed (exit {proc.returncode}); left out of the report")
                continue
        else:
            print(f"[report] {name}: reusing {path}")
        paths[name] = path
    return paths


def detection_section(path: str) -> str:
    rows = []
    for name, r in json.load(open(path)).items():
        rows.append(dict(model=name, AP=r["AP"], AP50=r["AP50"], precision=r["P"], recall=r["R"],
                         F1=r["F1"], params_m=r["params"] / 1e6, s_per_iter=r["train_s"] / r["iters"],
                         nfe_fwd_per_iter=r["nfe_forward_per_iter"]))
    return ("## Detection: Faster R-CNN FPN on the embedded synthetic shapes\n\n"
            "COCO box AP/AP50 and precision/recall/F1 at IoU 0.5 (%) on the held-out split.\n\n"
            + markdown_table(rows))


def depth_section(path: str) -> str:
    doc = json.load(open(path))
    keys = ["model", "params", "AbsRel", "RMSE", "delta1", "delta2", "nfe_per_image", "iters",
            "train_seconds"]
    out = ("## Monocular depth on the embedded synthetic scenes\n\n"
           + markdown_table(doc["models"], keys))
    if doc.get("solver_sweep"):
        out += ("\nODE model, test-time solver:\n\n"
                + markdown_table(doc["solver_sweep"], ["solver", "nfe_per_image", "seconds",
                                                       "AbsRel", "delta1"]))
    return out


def classification_section(path: str) -> str:
    rows = []
    for name in json.load(open(path)):
        rep = os.path.join(os.path.dirname(path), name, "report.json")
        r = json.load(open(rep))
        t = r["test"]
        rows.append(dict(model=name, top1=100 * t["top1"], precision=100 * t["macro_precision"],
                         recall=100 * t["macro_recall"], F1=100 * t["macro_f1"],
                         params_m=r["cost"]["params"] / 1e6,
                         mflops=r["cost"]["flops_per_image"] / 1e6,
                         peak_train_mb=r["memory"].get("peak_train_memory_mb", float("nan")),
                         ms_per_image=r["latency"]["ms_per_image"],
                         nfe_fwd=r["train"].get("nfe_forward", 0)))
    dataset = json.load(open(rep))["run"]["dataset"]
    return (f"## Classification on {dataset} (ResNet vs RK-Net vs ODE-Net, Chen et al. Table 1)"
            "\n\nTop-1 and macro precision/recall/F1 (%) on the test split.\n\n"
            + markdown_table(rows))


# (target, benchmark, summary key prefix, "<=" or ">=", threshold)
TARGETS = [
    ("adjoint memory flat in depth", "memory", "ode-adjoint peak(K=32)/peak(K=2)", "<=", 1.15),
    ("unrolled stack grows instead (issue: ~10x)", "memory", "resnet peak(K=32)/peak(K=2)", ">=",
     5.0),
    ("ODE-FPN / R-101-FPN training peak memory", "memory", "ODE-FPN / R-101-FPN", "<=", 1 / 3),
    ("ODE block direct / unrolled stack time", "overhead", "ode-direct / unrolled (euler, K=8) wall",
     "<=", 1.05),
    ("ODE block adjoint / unrolled stack time", "overhead",
     "ode-adjoint / unrolled (euler, K=8) wall", "<=", 1.5),
    ("ODE-FPN / R-101-FPN backbone parameters", "models", "ODE-FPN backbone params / R-101-FPN",
     "<=", 0.35),
    ("NFE reduction within 1 AP50 point", "tolerance", "NFE reduction (x)", ">=", 2.0),
]


def targets_section(docs: dict) -> str:
    rows = []
    for label, bench, prefix, op, threshold in TARGETS:
        summary = docs.get(bench, {}).get("summary", {})
        value = next((v for k, v in summary.items() if k.startswith(prefix)), None)
        if not isinstance(value, (int, float)):
            status, value = "not measured (run tools/benchmark.py " + bench + ")", float("nan")
        else:
            met = value <= threshold if op == "<=" else value >= threshold
            status = "met" if met else "NOT met"
        rows.append(dict(target=label, goal=f"{op} {threshold:.3g}", measured=value, status=status))
    return "## Targets\n\n" + markdown_table(rows)


def load_benchmarks(paths: dict, out: str) -> dict:
    docs = {n: json.load(open(p)) for n, p in paths.items() if n in BENCHMARKS}
    tol = os.path.join(out, "benchmarks", "tolerance", "tolerance.json")
    if "tolerance" not in docs and os.path.isfile(tol):  # from a separate tolerance run
        docs["tolerance"] = json.load(open(tol))
    return docs


def write_report(args, paths: dict) -> str:
    """Write ``<out>/REPORT.md`` from the studies' JSON files; returns its markdown."""
    env = environment()
    docs = load_benchmarks(paths, args.out)
    parts = ["# ResNet vs ODE-Net: the comparison report\n",
             f"_Generated by `python tools/report.py` on {environment_line(env)}._\n",
             targets_section(docs)]
    makers = dict(detection=detection_section, depth=depth_section,
                  classification=classification_section)
    for name, make in makers.items():
        if name in paths:
            parts.append(make(paths[name]))
    for name, doc in docs.items():
        prefix = os.path.relpath(os.path.dirname(paths.get(name) or os.path.join(
            args.out, "benchmarks", name, "x")), args.out) + "/"
        parts.append(render_markdown(doc, image_prefix=prefix))
    text = "\n".join(parts)
    with open(os.path.join(args.out, "REPORT.md"), "w") as f:
        f.write(text)
    return text


def update_readme(report_md: str, out: str, readme: str) -> None:
    """Replace the README's generated block (between the results markers) with the report.

    Plot links point into the report's output folder (relative to the README): plots are
    generated files, like the report, and the repository's top level holds no docs folder.
    """
    import re

    start, end = "<!-- results:start -->", "<!-- results:end -->"
    base = os.path.dirname(os.path.abspath(readme))

    def relink(match):
        rel = os.path.relpath(os.path.join(os.path.abspath(out), match.group(2)), base)
        return f"![{match.group(1)}]({rel})"

    body = re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", relink, report_md)
    body = body.replace("# ResNet vs ODE-Net: the comparison report\n", "", 1).replace("## ", "### ")
    text = open(readme).read()
    if start not in text or end not in text:
        raise KeyError(f"{readme} has no '{start}' ... '{end}' block to update")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    with open(readme, "w") as f:
        f.write(f"{head}{start}\n{body}\n{end}{tail}")

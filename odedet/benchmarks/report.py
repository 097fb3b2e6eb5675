"""The ResNet vs ODE-Net comparison report: detection, depth and classification studies plus
the cost benchmarks, from small committed result files into one markdown report and figures.

Every figure in the report is read from a JSON file a tool wrote when it measured it. The
committed copies live in ``docs/results/<study>.json`` (a few KB each, with the machine, load and
command they were measured with), so the README's Results block and its figures
(``docs/figures/*.png``) regenerate on any clone without running anything. ``--run`` runs
studies (``tools/quickstart.py``, ``tools/quickstart_depth.py``, ``tools/train_cifar.py
paper-table``, ``tools/benchmark.py``) into the output folder; ``--publish`` copies their results
into ``docs/results``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .output import _fmt, environment_line, markdown_table, render_markdown

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARKS = ("memory", "overhead", "models", "tolerance", "dial")
RENDERED = (*BENCHMARKS, "detector_memory")  # documents rendered with their tables and plots
STUDIES = ("detection", "depth", "classification", "memory", "overhead", "models")


def study_commands(args) -> dict:
    """name -> (JSON the study writes under ``args.out``, command that (re)computes it)."""
    py, out = sys.executable, args.out
    quick = ["--quick"] if args.quick else []
    det = os.path.join(out, "detection")
    dep = os.path.join(out, "depth")
    cls = os.path.join(out, "classification")
    extra = lambda name: getattr(args, f"{name}_args", [])  # noqa: E731
    cmds = {
        "detection": (os.path.join(det, "quickstart_results.json"),
                      [py, "tools/quickstart.py", "--baseline", "--output-dir", det, *quick,
                       *extra("detection")]),
        "depth": (os.path.join(dep, "quickstart_depth.json"),
                  [py, "tools/quickstart_depth.py", "--output-dir", dep, "--models",
                   "ode_resnet18,vgg16,resnet18", *(["--budget-min", "1", "SOLVER.MAX_ITER", "20"]
                                              if args.quick else []), *extra("depth")]),
        "classification": (os.path.join(cls, "paper_table1.json"),
                           [py, "tools/train_cifar.py", "paper-table", "--output-dir", cls,
                            "--dataset", args.cls_dataset,
                            *(["--epochs", "1", "--max-iters-per-epoch", "5"] if args.quick
                              else []), *extra("cls")]),
    }
    for name in BENCHMARKS[:3]:
        bench_out = os.path.join(out, "benchmarks", name)
        cmds[name] = (os.path.join(bench_out, f"{name}.json"),
                      [py, "tools/benchmark.py", name, "--out", bench_out, *quick, *extra(name)])
    return cmds


def run_studies(args, names) -> dict:
    """Run the named studies into ``args.out``; returns name -> JSON path of those that worked."""
    paths = {}
    for name, (path, cmd) in study_commands(args).items():
        if name not in names:
            continue
        print(f"[report] {name}: {' '.join(cmd)}", flush=True)
        proc = subprocess.run(cmd, cwd=ROOT)
        if proc.returncode != 0 or not os.path.isfile(path):
            print(f"[report] {name} failed (exit {proc.returncode}); left out of the report")
            continue
        paths[name] = path
    return paths


def found_in_out(args) -> dict:
    """name -> JSON path of every study result present under ``args.out`` (run earlier)."""
    paths = {n: p for n, (p, _) in study_commands(args).items() if os.path.isfile(p)}
    tol = os.path.join(args.out, "benchmarks", "tolerance", "tolerance.json")
    if os.path.isfile(tol):
        paths["tolerance"] = tol
    return paths


# -- the committed result documents --------------------------------------------------------------

def _strip(row: dict, drop=("vis_dir", "output_dir", "examples")) -> dict:
    return {k: v for k, v in row.items() if k not in drop}


def _portable_command(cmd):
    """A measured command as a reader on another clone types it: paths relative to the
    repository, the interpreter as ``python``."""
    if not isinstance(cmd, str):
        return cmd
    return cmd.replace(sys.executable, "python").replace(ROOT + os.sep, "")


def compact(name: str, path: str) -> dict:
    """The committed document of a study's JSON: what the report needs, the environment and
    the command it was measured with (absolute paths and per-run files left out)."""
    out = _compact(name, path)
    if "command" in out:
        out["command"] = _portable_command(out["command"])
    return out


def _compact(name: str, path: str) -> dict:
    doc = json.load(open(path))
    if name in BENCHMARKS:
        return {"study": name, **doc}
    if name == "detection":
        rows = {k: _strip(v) for k, v in doc.items() if not k.startswith("_")}
        return {"study": name, "environment": doc.get("_environment", {}),
                "command": doc.get("_command", ""), "models": rows}
    if name == "depth":
        return {"study": name, "environment": doc.get("environment", {}),
                "command": doc.get("command", ""),
                "load_average_at_start": doc.get("load_average_at_start"),
                "models": [_strip(r) for r in doc["models"]],
                "solver_sweep": doc.get("solver_sweep", [])}
    if name == "classification":
        rows, dataset = [], "?"
        for model in (k for k in doc if not k.startswith("_")):
            r = json.load(open(os.path.join(os.path.dirname(path), model, "report.json")))
            t = r["test"]
            dataset = r["run"]["dataset"]
            rows.append(dict(model=model, top1=100 * t["top1"],
                             precision=100 * t["macro_precision"],
                             recall=100 * t["macro_recall"], F1=100 * t["macro_f1"],
                             params_m=r["cost"]["params"] / 1e6,
                             mflops=r["cost"]["flops_per_image"] / 1e6,
                             peak_train_mb=r["memory"].get("peak_train_memory_mb", float("nan")),
                             ms_per_image=r["latency"]["ms_per_image"],
                             nfe_fwd=r["train"].get("nfe_forward", 0)))
        return {"study": name, "environment": doc.get("_environment", {}),
                "command": doc.get("_command", ""), "dataset": dataset, "rows": rows}
    raise KeyError(name)


def publish(paths: dict, results_dir: str) -> list[str]:
    """Write ``results_dir/<name>.json`` for each study in ``paths``; returns the files."""
    os.makedirs(results_dir, exist_ok=True)
    written = []
    for name, path in paths.items():
        target = os.path.join(results_dir, f"{name}.json")
        with open(target, "w") as f:
            json.dump(compact(name, path), f, indent=1, default=str)
            f.write("\n")
        written.append(target)
    return written


def load_results(results_dir: str) -> dict:
    """name -> committed document, in report order."""
    docs = {}
    for name in (*STUDIES, "tolerance", "dial"):
        path = os.path.join(results_dir, f"{name}.json")
        if os.path.isfile(path):
            docs[name] = json.load(open(path))
    # The depth-encoder study (issue 17) commits one small JSON per run in its own folder.
    from .depth_encoder import load_runs

    runs = load_runs(os.path.join(results_dir, "depth_encoder"))
    paired = load_runs(os.path.join(results_dir, "depth_encoder", "paired"))
    if runs or paired:
        docs["depth_encoder"] = {"runs": runs, "paired": paired}
    # The ResNet vs ODE-Net detection study (issue 13): one JSON per finished run.
    from .study import load_records, load_timing

    records = load_records(os.path.join(results_dir, "study"))
    if records:
        docs["study"] = {"records": records,
                         "timing": load_timing(os.path.join(results_dir, "study"))}
    # The whole-detector memory study (issue 12) keeps its resumable points and its generated
    # document and plots in one folder (tools/benchmark.py detector-memory --out <folder>).
    folder = os.path.join(results_dir, "detector_memory")
    path = os.path.join(folder, "detector_memory.json")
    if os.path.isfile(path):
        doc = json.load(open(path))
        doc["source_dir"] = folder
        docs["detector_memory"] = doc
    return docs


# -- figures -------------------------------------------------------------------------------------

def draw_figures(docs: dict, fig_dir: str) -> dict:
    """Redraw every benchmark's plots from its document into ``fig_dir``; name -> file names."""
    os.makedirs(fig_dir, exist_ok=True)
    out = {}
    for name, doc in docs.items():
        if name == "study":  # drawn from its run files (tools/study.py draws the same)
            from .study import plot_study

            out[name] = doc["plots"] = [plot_study(doc["records"], fig_dir, doc.get("timing"))]
            continue
        if name not in RENDERED:
            continue
        env, tables = doc["environment"], doc["tables"]
        if name == "detector_memory":  # its plots were drawn with it: copied, not redrawn
            import shutil

            files = [f for f in doc.get("plots", [])
                     if os.path.isfile(os.path.join(doc["source_dir"], f))]
            for f in files:
                shutil.copyfile(os.path.join(doc["source_dir"], f), os.path.join(fig_dir, f))
            doc["plots"] = files
            out[name] = files
            continue
        rows = tables[0]["rows"] if tables else []
        files = []
        if name == "memory":
            from .memory import plot_blocks, plot_detectors

            depths = sorted({r["depth"] for r in rows})
            if rows:
                files.append(plot_blocks(rows, depths, fig_dir, env))
            if len(tables) > 1 and tables[1]["rows"]:
                files.append(plot_detectors(tables[1]["rows"], fig_dir, env))
        elif name == "overhead" and rows:
            from .overhead import plot

            files.append(plot(rows, fig_dir, env))
        elif name == "models" and rows:
            from .models import plot

            files.append(plot(rows, fig_dir, env))
        elif name == "tolerance" and rows:
            from .tolerance import plot

            files += [plot(rows, fig_dir, env, "nfe_per_image", "NFE per image",
                           "tolerance_nfe.png"),
                      plot(rows, fig_dir, env, "ms_per_image", "latency (ms/image)",
                           "tolerance_latency.png")]
        elif name == "dial" and rows:
            from .dial import plot

            files += [plot(rows, fig_dir, env, "AP"), plot(rows, fig_dir, env, "AP50")]
        doc["plots"] = files
        out[name] = files
    return out


# -- markdown ------------------------------------------------------------------------------------

def _provenance(doc: dict) -> str:
    env = doc.get("environment") or {}
    where = (f"Measured on {environment_line(env)}; {env.get('measured at', '')}" if env
             else "Machine not recorded")
    line = f"_{where}._\n"
    if doc.get("command"):
        line += f"\nReproduce: `{doc['command']}`\n"
    return line


def detection_section(doc: dict) -> str:
    rows = []
    for name, r in doc["models"].items():
        rows.append(dict(model=name, AP=r["AP"], AP50=r["AP50"], precision=r["P"], recall=r["R"],
                         F1=r["F1"], params_m=r["params"] / 1e6, iters=r["iters"],
                         train_s=r["train_s"], s_per_iter=r["train_s"] / r["iters"],
                         nfe_fwd_per_iter=r["nfe_forward_per_iter"]))
    return ("## Detection: Faster R-CNN FPN on the embedded synthetic shapes\n\n"
            "COCO box AP/AP50 and precision/recall/F1 at IoU 0.5 (%) on the held-out split.\n\n"
            + markdown_table(rows) + "\n" + _provenance(doc))


def depth_section(doc: dict) -> str:
    keys = ["model", "params", "AbsRel", "RMSE", "delta1", "delta2", "nfe_per_image", "iters",
            "train_seconds"]
    if any("s_per_iter" in r for r in doc["models"]):
        keys += ["s_per_iter"]
    out = ("## Monocular depth on the embedded synthetic scenes\n\n"
           + markdown_table(doc["models"], keys))
    if doc.get("solver_sweep"):
        out += ("\nODE model, test-time solver:\n\n"
                + markdown_table(doc["solver_sweep"], ["solver", "nfe_per_image", "seconds",
                                                       "AbsRel", "delta1"]))
    return out + "\n" + _provenance(doc)


def classification_section(doc: dict) -> str:
    return (f"## Classification on {doc['dataset']} (ResNet vs RK-Net vs ODE-Net, Chen et al. "
            "Table 1)\n\nTop-1 and macro precision/recall/F1 (%) on the test split.\n\n"
            + markdown_table(doc["rows"]) + "\n" + _provenance(doc))


# (target, benchmark, summary key prefix, "<=" or ">=", threshold)
TARGETS = [
    ("adjoint memory flat in depth", "memory", "ode-adjoint peak(K=32)/peak(K=2)", "<=", 1.15),
    ("unrolled stack grows instead (issue: ~10x)", "memory", "resnet peak(K=32)/peak(K=2)", ">=",
     5.0),
    ("ODE-FPN / R-101-FPN training peak memory, 1 image 512 px, not lean", "memory",
     "ODE-FPN / R-101-FPN", "<=", 1 / 3),
    # whole-detector training step at detectron2's per-GPU size (tools/benchmark.py
    # detector-memory): the memory-lean ODE-R50-FPN (adjoint, rk4) against the ResNets
    ("lean ODE-R50-FPN / R-101-FPN peak, 2 x 800x1333", "detector_memory",
     "ODE-R50-FPN-lean / R-101-FPN peak", "<=", 1 / 3),
    ("lean ODE-R50-FPN / R-50-FPN peak, 2 x 800x1333", "detector_memory",
     "ODE-R50-FPN-lean / R-50-FPN peak", "<=", 1 / 2),
    ("lean ODE-R50-FPN peak max/min over 1..16 ODE steps", "detector_memory",
     "ODE-R50-FPN-lean peak max/min over steps", "<=", 1.10),
    ("largest batch under 8 GiB, lean ODE-R50-FPN / R-101-FPN", "detector_memory",
     "ODE-R50-FPN-lean / R-101-FPN largest batch", ">=", 2.0),
    ("ODE block direct / unrolled stack time", "overhead", "ode-direct / unrolled (euler, K=8) wall",
     "<=", 1.05),
    ("ODE block adjoint / unrolled stack time", "overhead",
     "ode-adjoint / unrolled (euler, K=8) wall", "<=", 1.5),
    ("ODE-FPN / R-101-FPN backbone parameters", "models", "ODE-FPN backbone params / R-101-FPN",
     "<=", 0.35),
    ("NFE reduction within 1 AP50 point", "tolerance", "NFE reduction (x)", ">=", 2.0),
    # the compute dial (tools/benchmark.py dial): one trained ODE detector, ResNets beside it
    ("dial: f-evals of best / cheapest setting", "dial", "f-evals best / cheapest", ">=", 2.0),
    ("dial: AP50 lost at the cheapest setting", "dial", "AP50 loss cheapest vs best", "<=", 1.0),
    ("dial: AP lost at the cheapest setting", "dial", "AP loss cheapest vs best", "<=", 2.0),
    ("dial: cheapest latency / ResNet-18's", "dial", "cheapest latency / ResNet-18 latency", "<=",
     1.0),
    ("dial: cheapest AP - ResNet-18 AP", "dial", "cheapest AP - ResNet-18 AP", ">=", 0.0),
    ("dial: min AP - nearest-latency ResNet's", "dial", "min over dial of AP - nearest-latency",
     ">=", 0.0),
]


def targets_section(docs: dict) -> str:
    rows = []
    for label, bench, prefix, op, threshold in TARGETS:
        summary = docs.get(bench, {}).get("summary", {})
        value = next((v for k, v in summary.items() if k.startswith(prefix)), None)
        if not isinstance(value, (int, float)):
            status = "not measured (tools/benchmark.py " + bench.replace("_", "-") + ")"
            value = float("nan")
        else:
            met = value <= threshold if op == "<=" else value >= threshold
            status = "met" if met else "NOT met"
        rows.append(dict(target=label, goal=f"{op} {threshold:.3g}", measured=value, status=status))
    return "## Targets\n\n" + markdown_table(rows)


def study_section(records: list, plots=(), image_prefix: str = "", timing=None) -> str:
    """The detection study's table (issue 13, tools/study.py): one row per model, seeds as
    mean (min-max), from the finished runs' JSONs, the speed columns from the side-by-side
    timing; the pending runs are named."""
    from .study import RUNS, caption, summary_rows

    done = {r["key"] for r in records}
    pending = [s.key for s in RUNS if s.key not in done]
    return ("## ResNet vs ODE-Net Faster R-CNN study (issue 13): handwritten digits\n\n"
            "300 held-out images of the embedded digits benchmark, one shared recipe from "
            "scratch (`python tools/study.py`; runs, recipe and per-class CSVs in "
            "docs/study.md, docs/results/study/). "
            f"{caption(records, timing)}\n\n"
            + markdown_table(summary_rows(records, timing))
            + f"\nFinished runs: {len(records)}/{len(RUNS)}"
            + (f"; pending: {', '.join(pending)}" if pending else "") + "\n"
            + "".join(f"\n![AP against latency and AP by object size per model]"
                      f"({image_prefix}{p})\n" for p in plots))


def render(docs: dict, image_prefix: str) -> str:
    """The report's markdown from the documents; plots linked as ``image_prefix + file``."""
    parts = ["# ResNet vs ODE-Net: the comparison report\n",
             "_Generated by `python tools/report.py` from the result files in docs/results/; "
             "each section says where and when it was measured and the command that "
             "reproduces it._\n",
             targets_section(docs)]
    from .depth_encoder import depth_encoder_section

    makers = dict(detection=detection_section, depth=depth_section,
                  classification=classification_section,
                  depth_encoder=lambda doc: depth_encoder_section(doc["runs"],
                                                                   doc.get("paired", ())),
                  study=lambda doc: study_section(doc["records"], doc.get("plots", ()),
                                                  image_prefix, doc.get("timing")))
    for name, doc in docs.items():
        if name in makers:
            parts.append(makers[name](doc))
    for name, doc in docs.items():
        if name in RENDERED:
            parts.append(render_markdown(doc, image_prefix=image_prefix))
    return "\n".join(parts)


def render_headline(docs: dict, image_prefix: str) -> str:
    """The README's short block: the targets, the headline figures and where the rest is."""
    parts = [targets_section(docs).replace("## Targets\n", "", 1)]
    if "study" in docs:
        st = docs["study"]
        parts.append(study_section(st["records"], st.get("plots", ()), image_prefix,
                                   st.get("timing")).replace("## ", "#### ", 1))
    if "depth" in docs:
        d = docs["depth"]
        keys = ["model", "params", "AbsRel", "delta1", "iters", "train_seconds", "s_per_iter"]
        parts.append("Depth quickstart (held-out synthetic scenes, ODE-ResNet-18 encoder vs the "
                     "mean-depth predictor):\n\n"
                     + markdown_table(d["models"], [k for k in keys
                                                    if any(k in r for r in d["models"])])
                     + "\n" + _provenance(d))
    if "memory" in docs and "memory_vs_depth.png" in docs["memory"].get("plots", []):
        parts.append(f"![Peak training memory vs depth: the adjoint ODE block stays flat]"
                     f"({image_prefix}memory_vs_depth.png)\n\n" + _provenance(docs["memory"]))
    mem = docs.get("detector_memory", {})
    if "detector_memory_curve.png" in mem.get("plots", []):
        parts.append("![Whole-detector training-step peak memory over batch and image size: "
                     "memory-lean ODE-R50-FPN against R-50-FPN and R-101-FPN]"
                     f"({image_prefix}detector_memory_curve.png)\n\n" + _provenance(mem))
    names = ", ".join(n for n in docs)
    parts.append(f"All measured sections ({names}), with their figures: "
                 "[docs/benchmarks.md](docs/benchmarks.md#results).\n")
    return "\n".join(parts)


def write_report(docs: dict, out: str, fig_dir: str) -> str:
    """Write ``<out>/REPORT.md`` (plots linked relative to it); returns its markdown."""
    os.makedirs(out, exist_ok=True)
    text = render(docs, os.path.relpath(fig_dir, out) + "/")
    with open(os.path.join(out, "REPORT.md"), "w") as f:
        f.write(text)
    return text


def update_readme(docs: dict, fig_dir: str, readme: str, headline: bool = False) -> None:
    """Replace the generated block (between the results markers) of ``readme`` with the report
    (or, ``headline``, with the front page's short block), plots linked relative to the file
    (docs/figures/..., committed files)."""
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    base = os.path.dirname(os.path.abspath(readme))
    prefix = os.path.relpath(fig_dir, base) + "/"
    if headline:
        body = render_headline(docs, prefix)
    else:
        body = render(docs, prefix)
        body = body.replace("# ResNet vs ODE-Net: the comparison report\n", "", 1).replace(
            "## ", "### ")
    text = open(readme).read()
    if start not in text or end not in text:
        raise KeyError(f"{readme} has no '{start}' ... '{end}' block to update")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    with open(readme, "w") as f:
        f.write(f"{head}{start}\n{body}\n{end}{tail}")


__all__ = ["compact", "draw_figures", "load_results", "publish", "render", "run_studies",
           "study_commands", "update_readme", "write_report", "_fmt"]

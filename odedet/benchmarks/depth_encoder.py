"""The depth-encoder study's tables (issue 17, docs/depth_encoder.md): markdown from the run
JSONs that ``tools/depth_encoder_study.py`` commits under ``docs/results/depth_encoder/``; also
the generated section of ``tools/report.py``."""
from __future__ import annotations

import glob
import json
import os

FULL_ITERS = 4500  # the scenes recipe's SOLVER.MAX_ITER


def load_runs(results_dir: str) -> list:
    """Every run JSON of ``results_dir`` (sorted by file name); [] if there is none."""
    rows = []
    for p in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        with open(p) as f:
            rows.append(json.load(f))
    return rows


def _group_key(r):
    return (1, r["budget_min"]) if r.get("budget_min") else (0, r["iters"])


def tables(rows: list, order=()) -> str:
    """Markdown: one table per schedule (short ablation schedules, then budgeted runs), a
    mean/spread table where a variant has several seeds, and the solver sweeps."""
    order = list(order)
    out, groups = [], {}
    for r in rows:
        if r.get("kind") != "sweep":  # checkpoint sweeps: only in the sweep tables below
            groups.setdefault(_group_key(r), []).append(r)
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda r: (order.index(r["variant"])
                                                  if r["variant"] in order else 99, r["seed"]))
        if key[0]:
            title = (f"{key[1]:g}-minute training budget (schedule fitted to the measured speed, "
                     f"recipe {group[0].get('recipe_iters', FULL_ITERS)} iterations)")
        else:
            title = f"{key[1]}-iteration schedule (the recipe's cosine schedule, shortened)"
        out += [f"#### {title}", "",
                "| variant | factor | seed | params | encoder MMAC/image (at stride 1-2) | AbsRel | "
                "delta1 | RMSE | iterations | train s | s/iter | f-evals/image |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in group:
            m = r["metrics"]
            mac = r.get("encoder_macs")
            fine = sum(v for k, v in mac["share_by_stride"].items() if int(k) <= 2) if mac else 0
            mac = (f"{mac['mmac']:.0f} ({100 * fine:.0f}%)"
                   if mac else "")
            out.append(f"| {r['label']} (`{r['variant']}`) | {r['factor']} | {r['seed']} | "
                       f"{r['params'] / 1e6:.3f} M | {mac} | {m['AbsRel']:.4f} | {m['delta1']:.4f} | "
                       f"{m['RMSE']:.3f} | {r['iters']} | {r['train_seconds']:.0f} | "
                       f"{r['s_per_iter']:.3f} | {r['nfe_per_image']:g} |")
        seeds = {}
        for r in group:
            seeds.setdefault(r["variant"], []).append(r)
        multi = {v: rs for v, rs in seeds.items() if len(rs) > 1}
        if multi:
            out += ["", "| variant | seeds | AbsRel mean (min-max) | delta1 mean (min-max) |",
                    "|---|---|---|---|"]
            for v, rs in multi.items():
                a = [x["metrics"]["AbsRel"] for x in rs]
                d = [x["metrics"]["delta1"] for x in rs]
                out.append(f"| `{v}` | {', '.join(str(x['seed']) for x in rs)} | "
                           f"{sum(a) / len(a):.4f} ({min(a):.4f}-{max(a):.4f}) | "
                           f"{sum(d) / len(d):.4f} ({min(d):.4f}-{max(d):.4f}) |")
        out.append("")
    for r in rows:
        if "solver_sweep" in r:
            sched = f"{r['budget_min']:g}-min budget" if r.get("budget_min") else \
                f"{r['iters']} iterations"
            if r.get("kind") == "sweep":
                sched += f" checkpoint, first {r['images']} held-out scenes"
            out += [f"#### Test-time solver sweep: `{r['variant']}`, {sched}, seed {r['seed']}",
                    "", "| solver | f-evals/image | seconds | AbsRel | delta1 |",
                    "|---|---|---|---|---|"]
            for s in r["solver_sweep"]:
                out.append(f"| {s['solver']} | {s['nfe_per_image']:g} | {s['seconds']:.1f} | "
                           f"{s['AbsRel']:.4f} | {s['delta1']:.4f} |")
            out.append("")
    return "\n".join(out)



def paired_table(rows: list) -> str:
    """Markdown for ``--paired`` runs (two variants trained at the same time, one core each):
    per seed the two variants' figures side by side and their difference, then the means. Runs
    without a ``paired_with`` partner measured at the same seed and schedule are left out."""
    by = {(r.get("budget_min"), r["iters"] if not r.get("budget_min") else 0, r["seed"],
           r["variant"]): r for r in rows if r.get("paired_with") and r.get("kind") != "sweep"}
    pairs = {}
    for (b, it, seed, v), r in by.items():
        o = by.get((b, it, seed, r["paired_with"]))
        if o is not None and o["paired_with"] == v and v < o["variant"]:
            pairs.setdefault(tuple(sorted((v, o["variant"]))), []).append((seed, r, o))
    out = []
    for (a, b), runs in sorted(pairs.items()):
        # the reference (VGG, ResNet) first when one of the two is not an ODE encoder
        first, second = (b, a) if runs[0][1]["nfe_per_image"] > 0 and \
            runs[0][2]["nfe_per_image"] == 0 else (a, b)
        out += [f"#### Paired: `{second}` vs `{first}` (trained at the same time, one core each)",
                "", f"| seed | AbsRel {first} | AbsRel {second} | delta1 {first} | "
                f"delta1 {second} | iterations {first} / {second} | load at start |",
                "|---|---|---|---|---|---|---|"]
        stats = {first: [], second: []}
        for seed, r, o in sorted(runs, key=lambda x: x[0]):
            x, y = (r, o) if r["variant"] == first else (o, r)
            stats[first].append(x["metrics"])
            stats[second].append(y["metrics"])
            load = x.get("machine_start", {}).get("load_avg", [float("nan")])[0]
            out.append(f"| {seed} | {x['metrics']['AbsRel']:.4f} | {y['metrics']['AbsRel']:.4f} | "
                       f"{x['metrics']['delta1']:.4f} | {y['metrics']['delta1']:.4f} | "
                       f"{x['iters']} / {y['iters']} | {load:.2f} |")
        mean = {v: {k: sum(m[k] for m in ms) / len(ms) for k in ("AbsRel", "delta1")}
                for v, ms in stats.items()}
        out += [f"| mean | {mean[first]['AbsRel']:.4f} | {mean[second]['AbsRel']:.4f} | "
                f"{mean[first]['delta1']:.4f} | {mean[second]['delta1']:.4f} | | |", ""]
    return "\n".join(out)


def depth_encoder_section(rows: list, paired=()) -> str:
    """tools/report.py's section: the paired comparison (``--paired`` runs, the target's
    measurement) first, then the study's tables, or a line saying how to make them."""
    head = ("## Depth encoder study (issue 17): ODE-ResNet-18 vs VGG-16 vs ODE-VGG-16\n\n"
            "Embedded synthetic scenes, 200 held-out images, one pinned core per run "
            "(`tools/depth_encoder_study.py`; discussion in docs/depth_encoder.md).\n\n")
    if not rows and not paired:
        return head + "not measured (tools/depth_encoder_study.py)\n"
    text = paired_table(list(paired))
    if text:
        head += ("Paired runs (`--paired`: both encoders trained at the same time, each on its "
                 "own core with one thread, so both see the same machine):\n\n" + text + "\n")
    return head + tables(rows)


__all__ = ["FULL_ITERS", "load_runs", "tables", "paired_table", "depth_encoder_section"]

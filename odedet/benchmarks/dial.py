"""``benchmark.py dial``: one trained ODE detector over a ladder of test-time solvers (the
compute dial), next to ResNet detectors trained with the same recipe (issue 11 section 2).

For every solver setting of the ODE model and for every ResNet: COCO AP / AP50 and P/R/F1 on
the held-out split (full pass), forward f-evaluations per image, and whole-detector wall latency
per image: batch 1, fixed threads, the same ``--latency-images`` validation images for every
model, one warm-up, then ``--repeat`` timed rounds. The rounds are *interleaved* (each round
runs every model/setting once, in rotating order), so load drift on a shared machine hits all
alike; the figure is the median over rounds of the round's seconds per image.

Weights are loaded strictly (any missing or unexpected key is an error), so a figure always
belongs to the checkpoint named in the output.
"""
from __future__ import annotations

import copy
import os

import torch
from tqdm import tqdm

from odedet.ode import nfe_counts, reset_nfe, set_solver

from .output import environment, new_figure, save_figure, table, write_outputs

# The ladder (tools/benchmark.py's default --settings): fixed-grid settings are METHOD:STEPS over
# [0, T], adaptive ones METHOD:TOL (rtol = atol).
ADAPTIVE = ("dopri5", "bosh3", "adaptive_heun", "dopri8", "fehlberg2")
COLUMNS = ["model", "solver", "AP", "AP50", "precision", "recall", "F1", "nfe_per_image",
           "latency_ms", "latency_cpu_ms"]


def parse_setting(text: str, t_end: float = 1.0) -> dict:
    """"euler:1" -> euler with 1 step over [0, t_end]; "dopri5:1e-2" -> rtol = atol = 1e-2."""
    method, sep, value = text.partition(":")
    if not sep:
        raise ValueError(f"solver setting {text!r}: use METHOD:STEPS (euler:1) or METHOD:TOL "
                         "(dopri5:1e-2)")
    if method in ADAPTIVE:
        tol = float(value)
        return dict(method=method, rtol=tol, atol=tol, step_size=0.0)
    steps = int(value)
    if steps < 1:
        raise ValueError(f"solver setting {text!r}: steps must be >= 1")
    return dict(method=method, step_size=t_end / steps)


def _metrics(results: dict) -> dict:
    bbox, prf1 = results.get("bbox", {}), results.get("prf1", {})
    return dict(AP=bbox.get("AP"), AP50=bbox.get("AP50"), precision=prf1.get("precision"),
                recall=prf1.get("recall"), F1=prf1.get("F1"))


def evaluate(model, cfg, dataset: str, max_images: int) -> dict:
    """Accuracy over ``dataset`` and forward f-evals per image (one full pass)."""
    from detectron2.data import DatasetCatalog, build_detection_test_loader
    from detectron2.evaluation import inference_on_dataset

    from odedet.data.mappers import build_mapper
    from odedet.evaluation.build import build_evaluators

    dicts = DatasetCatalog.get(dataset)
    if max_images and max_images < len(dicts):
        dataset = _subset(dataset, dicts[:max_images])
        dicts = DatasetCatalog.get(dataset)
    loader = build_detection_test_loader(dataset=dicts, mapper=build_mapper(cfg, False))
    reset_nfe(model)
    results = inference_on_dataset(model, loader, build_evaluators(cfg, dataset))
    row = _metrics(results)
    row["nfe_per_image"] = nfe_counts(model)["forward"] / max(len(dicts), 1)
    return row


def _subset(dataset: str, dicts: list) -> str:
    """Register the first images of ``dataset`` as their own dataset, so the evaluator scores
    them against their own ground truth (the parent's COCO json would count every other
    image's objects as missed)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = f"{dataset}_first{len(dicts)}"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: dicts)
        meta = {k: v for k, v in MetadataCatalog.get(dataset).as_dict().items()
                if k not in ("name", "json_file")}
        MetadataCatalog.get(name).set(**meta)
    return name


def latency_inputs(cfg, dataset: str, n: int) -> list[dict]:
    """The first ``n`` images of ``dataset`` as model inputs (test mapper: resize, tensor)."""
    from detectron2.data import DatasetCatalog

    from odedet.data.mappers import build_mapper

    mapper = build_mapper(cfg, False)
    return [mapper(copy.deepcopy(d)) for d in DatasetCatalog.get(dataset)[:n]]


def load_detector(config_file: str, weights: str, args, name: str):
    """(cfg, model) with ``weights`` loaded strictly, in eval mode."""
    import odedet  # noqa: F401  (registers datasets, models, evaluators)
    from odedet import get_odedet_cfg
    from odedet.engine.checkpoint import load_weights
    from odedet.engine.trainer import Trainer

    cfg = get_odedet_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(["MODEL.DEVICE", args.device, *(args.opts or [])])
    if args.dataset:
        cfg.DATASETS.TEST = (args.dataset,)
    cfg.OUTPUT_DIR = os.path.join(args.out, "eval", name)
    cfg.freeze()
    model = Trainer.build_model(cfg)
    load_weights(model, weights)
    return cfg, model.eval()


def _runner(model, inputs, solver: dict | None):
    def run():
        if solver is not None:
            set_solver(model, "test", **solver)
        for inp in inputs:
            model([inp])

    return run


def measure(args) -> tuple[list[dict], dict]:
    """All rows (ODE settings first, then ResNets) and the models' descriptions."""
    from odedet.evaluation.meters import compare_latency

    models = [("ODE", args.config_file, args.weights)] + [tuple(b) for b in args.baselines]
    loaded = {name: load_detector(c, w, args, name) for name, c, w in models}
    cfg0 = loaded["ODE"][0]
    dataset = args.dataset_used = cfg0.DATASETS.TEST[0]
    inputs = latency_inputs(cfg0, dataset, args.latency_images)
    ode_model = loaded["ODE"][1]
    t_end = cfg0.MODEL.ODE.T_END
    default = {"solver": f"{cfg0.MODEL.ODE.METHOD_TEST} (config default)"}
    rows, runners = [], {}
    total = len(args.settings) + len(args.baselines)
    with torch.no_grad(), tqdm(total=total, desc="dial: accuracy") as bar:
        for text in args.settings:
            solver = parse_setting(text, t_end)
            set_solver(ode_model, "test", **solver)
            row = dict(model="ODE", solver=text, **evaluate(ode_model, cfg0, dataset,
                                                            args.max_images))
            rows.append(row)
            runners[("ODE", text)] = _runner(ode_model, inputs, solver)
            bar.update(1)
        for name, _, _ in models[1:]:
            cfg, model = loaded[name]
            row = dict(model=name, solver="-", **evaluate(model, cfg, dataset, args.max_images))
            rows.append(row)
            runners[(name, "-")] = _runner(model, inputs, None)
            bar.update(1)
        keys = list(runners)
        with tqdm(total=args.repeat, desc="dial: latency rounds") as bar:
            stats = compare_latency({i: runners[k] for i, k in enumerate(keys)}, warmup=1,
                                    repeat=args.repeat, device=args.device, progress=bar)
    n = max(len(inputs), 1)
    for i, key in enumerate(keys):
        row = next(r for r in rows if (r["model"], r["solver"]) == key)
        row["latency_ms"] = 1e3 * stats[i].median / n
        row["latency_cpu_ms"] = 1e3 * sorted(stats[i].cpu_times)[len(stats[i].cpu_times) // 2] / n
    info = {name: dict(config=c, weights=w) for name, c, w in models}
    info["ODE"]["config test solver"] = default["solver"]
    return rows, info


def summarize(rows: list[dict]) -> dict:
    """The issue's targets (section 3), each with its margin (positive = met)."""
    ode = [r for r in rows if r["model"] == "ODE" and r.get("AP") is not None]
    resnets = [r for r in rows if r["model"] != "ODE" and r.get("AP") is not None]
    if not ode:
        return {}
    cheap = min(ode, key=lambda r: (r["nfe_per_image"], r["latency_ms"]))
    best = max(ode, key=lambda r: (r["AP"], -r["nfe_per_image"]))
    out = {
        "cheapest setting": cheap["solver"], "best setting (highest AP)": best["solver"],
        "f-evals best / cheapest (target >= 2)": best["nfe_per_image"] / max(cheap["nfe_per_image"], 1e-9),
        "AP50 loss cheapest vs best (target <= 1)": best["AP50"] - cheap["AP50"],
        "AP loss cheapest vs best (target <= 2)": best["AP"] - cheap["AP"],
    }
    r18 = next((r for r in resnets if r["model"] == "ResNet-18-FPN"), None)
    if r18 is not None:
        out["cheapest latency / ResNet-18 latency (target <= 1)"] = cheap["latency_ms"] / r18["latency_ms"]
        out["cheapest AP - ResNet-18 AP (target >= 0)"] = cheap["AP"] - r18["AP"]
    if resnets:
        margins = []
        for r in ode:
            near = min(resnets, key=lambda b: abs(b["latency_ms"] - r["latency_ms"]))
            r["nearest ResNet"] = near["model"]
            r["AP - nearest ResNet AP"] = r["AP"] - near["AP"]
            margins.append(r["AP"] - near["AP"])
        out["min over dial of AP - nearest-latency ResNet AP (target >= 0)"] = min(margins)
    return out


def plot(rows: list[dict], out_dir: str, env: dict, metric: str = "AP") -> str:
    fig, ax = new_figure(f"Compute dial: {metric} vs whole-detector latency",
                         "latency (ms/image, batch 1)", f"box {metric} (held-out)")
    ode = sorted((r for r in rows if r["model"] == "ODE" and r.get(metric) is not None),
                 key=lambda r: r["latency_ms"])
    ax.plot([r["latency_ms"] for r in ode], [r[metric] for r in ode], marker="o",
            label="ODE detector, test-time solver")
    for i, r in enumerate(ode):  # labels alternate below / above the curve so neighbours
        ax.annotate(f"{r['solver']} ({r['nfe_per_image']:.0f} f-evals)",  # do not overlap
                    (r["latency_ms"], r[metric]), fontsize=7,
                    xytext=(4, -12 if i % 2 == 0 else 6), textcoords="offset points")
    for r, marker in zip((r for r in rows if r["model"] != "ODE"), "sD^v"):
        if r.get(metric) is None:
            continue
        ax.scatter([r["latency_ms"]], [r[metric]], marker=marker, s=70, zorder=3,
                   label=f"{r['model']} (same recipe)")
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, out_dir, f"dial_{metric.lower()}.png", env)


def _quick_dataset(args) -> None:
    """--quick: a tiny shapes dataset under the output folder, evaluated instead of the config's."""
    from odedet.data.synthetic_shapes import ShapesParams, ensure, register_synthetic_shapes

    root = os.path.join(args.out, "datasets")
    params = ShapesParams(num_train=2, num_val=max(args.max_images, 2))
    names = register_synthetic_shapes(root, params, "odedet_shapes_dial_quick", replace=True)
    ensure(params, root)
    args.dataset = names[1]


def run(args) -> dict:
    env = environment()
    args.dataset = getattr(args, "dataset", None)
    if args.quick and not args.dataset:
        _quick_dataset(args)
    rows, info = measure(args)
    summary = summarize(rows)
    plots = [plot(rows, args.out, env, "AP"), plot(rows, args.out, env, "AP50")]
    columns = COLUMNS + (["nearest ResNet", "AP - nearest ResNet AP"]
                         if any("nearest ResNet" in r for r in rows) else [])
    notes = [
        "Models (weights loaded strictly): " + "; ".join(
            f"{n}: {d['config']} + {d['weights']}" for n, d in info.items()) + ".",
        f"Accuracy: COCO box AP/AP50 and P/R/F1 at IoU 0.5 (%) on {args.dataset_used}"
        + (f" (first {args.max_images} images)" if args.max_images else "")
        + "; nfe_per_image = forward f-evaluations of all ODE blocks per image.",
        f"Latency: whole detector forward (normalisation and padding, backbone, RPN, ROI heads, box postprocessing; the image already decoded and resized), "
        f"batch 1, {env.get('torch threads')} torch thread(s), over the first "
        f"{args.latency_images} held-out images; median of {args.repeat} interleaved rounds "
        "after 1 warm-up round; latency_cpu_ms is this process's CPU time over the same calls.",
    ]
    return write_outputs(args.out, "dial", title="Compute dial",
                         tables=[table("dial", rows, columns)], extra=summary, notes=notes,
                         plots=plots, env=env)

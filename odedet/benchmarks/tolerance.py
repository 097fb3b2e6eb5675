"""``benchmark.py tolerance``: evaluation-time solver tolerance of a trained ODE model vs its
accuracy, NFE and latency (the ODE-Net's accuracy/speed knob, no retraining).

Works for any model whose test dataset has an evaluator (``evaluator_type``): detection
(AP/AP50 + P/R/F1), depth (AbsRel/delta1), classification (top-1). The first row is the solver
the model was trained/configured with; then one row per tolerance of an adaptive method.
"""
from __future__ import annotations

import os
import tempfile
import time

import torch
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    PascalVOCDetectionEvaluator,
)
from torch import nn
from tqdm import tqdm

from odedet.ode import ODESolverError, nfe_counts, reset_nfe, set_solver

from .output import environment, new_figure, save_figure, table, write_outputs

# (task, metric) shown in the table; the first metric found is the one the knob is judged on.
METRICS = [("bbox", "AP50"), ("bbox", "AP"), ("prf1", "F1"), ("depth", "delta1"),
           ("depth", "AbsRel"), ("classification", "top1")]
PRIMARY = {"bbox": "AP50", "depth": "delta1", "classification": "top1"}


class _Timed(nn.Module):
    """Wraps a model, adding up the wall time of its forward calls."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seconds, self.images = model, 0.0, 0

    def forward(self, inputs):
        t0 = time.perf_counter()
        out = self.model(inputs)
        self.seconds += time.perf_counter() - t0
        self.images += len(inputs)
        return out


def load_model(cfg, weights: str):
    """The trained model from ``weights``: weights-only, and strict (any missing, unexpected or
    reshaped tensor is a CheckpointMismatchError: a partly random model would give a
    meaningless sweep)."""
    from odedet.engine.checkpoint import load_weights
    from odedet.engine.trainer import Trainer

    model = Trainer.build_model(cfg)
    load_weights(model, weights)
    return model.eval()


class _OnSubset(DatasetEvaluator):
    """Scores an evaluator on the evaluated images only: COCO AP with ``img_ids`` (detectron2's
    COCOEvaluator otherwise scores against every GT image of the json, counting the images not
    run as misses); Pascal VOC AP with an image-set file listing the subset."""

    def __init__(self, inner, image_ids: list, tmpdir: str):
        self.inner, self.image_ids = inner, list(image_ids)
        if isinstance(inner, PascalVOCDetectionEvaluator):
            path = os.path.join(tmpdir, f"subset_{id(inner)}.txt")
            with open(path, "w") as f:
                f.writelines(f"{i}\n" for i in self.image_ids)
            inner._image_set_path = path

    def reset(self):
        self.inner.reset()

    def process(self, inputs, outputs):
        self.inner.process(inputs, outputs)

    def evaluate(self):
        if isinstance(self.inner, COCOEvaluator):
            return self.inner.evaluate(img_ids=self.image_ids)
        return self.inner.evaluate()


def subset_evaluators(evaluators: DatasetEvaluators, dicts: list, tmpdir: str):
    """``evaluators`` restricted to the images of ``dicts`` (see :class:`_OnSubset`)."""
    ids = [d["image_id"] for d in dicts]
    return DatasetEvaluators([_OnSubset(e, ids, tmpdir) for e in evaluators._evaluators])


def evaluate_once(model, cfg, dataset: str, max_images: int) -> dict:
    """Metrics, NFE per image and ms per image of one pass over ``dataset``."""
    from detectron2.data import DatasetCatalog, build_detection_test_loader
    from detectron2.evaluation import inference_on_dataset

    from odedet.data.mappers import build_mapper
    from odedet.evaluation.build import build_evaluators

    all_dicts = DatasetCatalog.get(dataset)
    dicts = all_dicts[:max_images] if max_images else all_dicts
    loader = build_detection_test_loader(dataset=dicts, mapper=build_mapper(cfg, False))
    timed = _Timed(model)
    reset_nfe(model)
    with tempfile.TemporaryDirectory() as tmpdir:
        evaluators = build_evaluators(cfg, dataset, output_dir=tmpdir)
        if len(dicts) < len(all_dicts):
            evaluators = subset_evaluators(evaluators, dicts, tmpdir)
        results = inference_on_dataset(timed, loader, evaluators)
    row = {m: results[t][m] for t, m in METRICS if m in results.get(t, {})}
    row["nfe_per_image"] = nfe_counts(model)["forward"] / max(timed.images, 1)
    row["ms_per_image"] = 1e3 * timed.seconds / max(timed.images, 1)
    row["primary"] = next((PRIMARY[t] for t in PRIMARY if t in results), None)
    return row


def sweep(model, cfg, args, progress) -> list[dict]:
    dataset = cfg.DATASETS.TEST[0]
    rows = []
    block = next(b for _, b in _blocks(model))
    ref = dict(solver=f"trained: {block.test_solver.describe()}", tol=float("nan"))
    rows.append({**ref, **evaluate_once(model, cfg, dataset, args.max_images)})
    progress.update(1)
    for tol in args.tolerances:
        set_solver(model, "test", method=args.method, rtol=tol, atol=tol, step_size=0.0)
        row = dict(solver=f"{args.method} rtol=atol={tol:g}", tol=tol)
        try:
            row.update(evaluate_once(model, cfg, dataset, args.max_images))
        except ODESolverError as e:  # a tolerance too loose/tight for the step guard: record it
            row["error"] = str(e).split(".")[0]
        rows.append(row)
        progress.update(1)
    return rows


def _blocks(model):
    from odedet.ode import iter_ode_blocks

    blocks = list(iter_ode_blocks(model))
    if not blocks:
        raise ValueError("the model has no ODE blocks: the tolerance sweep needs an ODE model")
    return blocks


def knob_summary(rows) -> dict:
    """Loosest tolerance whose primary metric is within 1 point of the trained solver's."""
    ref = rows[0]
    key = ref.get("primary")
    if key is None or key not in ref:
        return {}
    sign = -1 if key == "AbsRel" else 1
    scale = 100.0 if key == "delta1" else 1.0  # delta1 is a fraction: 1 point = 0.01
    ok = [r for r in rows[1:] if key in r and sign * (r[key] - ref[key]) * scale >= -1.0]
    out = {f"reference {key}": ref[key], "reference NFE/image": ref["nfe_per_image"]}
    if ok:
        best = max(ok, key=lambda r: r["tol"])
        out[f"loosest tol within 1 {key} point"] = best["tol"]
        out["its NFE/image"] = best["nfe_per_image"]
        out["NFE reduction (x)"] = ref["nfe_per_image"] / max(best["nfe_per_image"], 1e-9)
    else:
        out[f"loosest tol within 1 {key} point"] = "none of the swept tolerances"
    return out


def plot(rows, out_dir, env, x: str, xlabel: str, filename: str) -> str:
    key = rows[0].get("primary") or "AP50"
    fig, ax = new_figure(f"{key} vs {xlabel}", xlabel, key)
    pts = [(r[x], r[key], r["solver"]) for r in rows if key in r]
    ax.plot([p[0] for p in pts[1:]], [p[1] for p in pts[1:]], marker="o", label="adaptive tol")
    if pts and pts[0][2].startswith("trained"):
        ax.scatter([pts[0][0]], [pts[0][1]], marker="*", s=120, color="k", label="trained solver")
    for px, py, label in pts[1:]:
        ax.annotate(label.split()[-1], (px, py), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.legend()
    return save_figure(fig, out_dir, filename, env)


def run(args) -> dict:
    import odedet  # noqa: F401  (registers datasets, models, evaluators)
    from odedet import get_odedet_cfg

    env = environment()
    cfg = get_odedet_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(["MODEL.DEVICE", args.device, *(args.opts or [])])
    cfg.freeze()
    model = load_model(cfg, args.weights)
    _blocks(model)
    with torch.no_grad(), tqdm(total=len(args.tolerances) + 1, desc="tolerances") as progress:
        rows = sweep(model, cfg, args, progress)
    plots = [plot(rows, args.out, env, "nfe_per_image", "NFE per image", "tolerance_nfe.png"),
             plot(rows, args.out, env, "ms_per_image", "latency (ms/image)", "tolerance_latency.png")]
    columns = ["solver"] + [m for _, m in METRICS if any(m in r for r in rows)]
    columns += ["nfe_per_image", "ms_per_image"] + (["error"] if any("error" in r for r in rows) else [])
    notes = [f"Model {args.config_file} with weights {args.weights}, evaluated on "
             f"{cfg.DATASETS.TEST[0]}" + (f" (first {args.max_images} images)" if args.max_images
                                           else "") + "; NFE = forward evaluations per image."]
    return write_outputs(args.out, "tolerance", title="Evaluation tolerance sweep",
                         tables=[table("tolerance", rows, columns)], extra=knob_summary(rows),
                         notes=notes, plots=plots, env=env)


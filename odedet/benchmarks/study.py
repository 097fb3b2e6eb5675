"""The proposal's experiment (issue 13): ODE-Nets vs ResNet-18/50/101 Faster R-CNN FPN, trained
from scratch with one shared recipe on the embedded handwritten-digits benchmark and evaluated
on its held-out split. ``tools/study.py`` is the command; docs/study.md the write-up.

Every run is a model config (the repository's own: ``configs/odenet_faster_rcnn.yaml``,
``configs/COCO-Detection/*_scratch.yaml``, ``configs/quickstart/*_R_18_FPN_shapes.yaml``) with
``configs/study/Digits-Recipe.yaml`` merged on top, a SEED and SOLVER.MAX_ITER. Runs are pieces:

* a run whose result JSON exists under ``--results-dir`` is done and never retrained;
* otherwise it trains in ``<output-dir>/<key>/`` with detectron2's resume (periodic checkpoints,
  and a checkpoint when the invocation's ``--budget-min`` of training is used up), so killing or
  stopping the study loses at most the iterations since the last checkpoint;
* a finished run is evaluated (COCO AP/AP50/AP75/APs/APm/APl and per-class AP by pycocotools,
  precision/recall/F1 overall and per class) and measured (parameters, fvcore GFLOPs, inference
  latency per image, f-evaluations per image, training-step peak memory in a fresh process),
  its JSON and per-class CSV written, and the tables regenerated from every finished run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import statistics
import time

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import HookBase
from tqdm import tqdm

from odedet.engine.atomic_io import atomic_write_text
from odedet.engine.runs import BudgetStop, scale_schedule, train_and_evaluate
from odedet.evaluation.meters import compare_latency, measure_latency, measure_peak_memory
from odedet.ode import nfe_counts, reset_nfe

from .models import count_params, model_gflops
from .output import environment, environment_line, markdown_table
from .zoo import synthetic_detection_batch

logger = logging.getLogger(__name__)

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = "configs/study/Digits-Recipe.yaml"
DEFAULT_MAX_ITER = 2000  # see docs/study.md (chosen from measured s/iter)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    key: str      # file and directory name
    model: str    # table row (runs of one model with other seeds are aggregated)
    config: str   # the model's own config, relative to the repository
    seed: int
    note: str = ""
    # architecture overrides merged after the recipe (KEY, VALUE, ...): the quickstart configs
    # are half width for its 10-minute budget; the study's R-18 pair is detectron2's ResNet-18
    opts: tuple = ()


_FULL_WIDTH_R18 = ("MODEL.RESNETS.STEM_OUT_CHANNELS", "64", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64")

RUNS = (
    RunSpec("ode_r18_fpn", "ODE-R18-FPN", "configs/quickstart/ode_faster_rcnn_R_18_FPN_shapes.yaml",
            7, "quickstart pair: every stage = transition BasicBlock + 1 ODE block",
            _FULL_WIDTH_R18),
    RunSpec("r18_fpn", "R-18-FPN", "configs/quickstart/faster_rcnn_R_18_FPN_shapes.yaml", 7,
            "quickstart pair: detectron2 ResNet-18", _FULL_WIDTH_R18),
    RunSpec("r50_fpn", "R-50-FPN", "configs/COCO-Detection/faster_rcnn_R_50_FPN_scratch.yaml", 7,
            "detectron2 ResNet-50 (its res4 has the 6 residual blocks)"),
    RunSpec("ode_r50_fpn_res4", "ODE-R50-FPN-res4",
            "configs/COCO-Detection/ode_faster_rcnn_R_50_FPN_res4_scratch.yaml", 7,
            "ResNet-50 with res4's 6 blocks -> transition block + 1 ODE block"),
    RunSpec("ode_r50_fpn_s7", "ODE-R50-FPN", "configs/odenet_faster_rcnn.yaml", 7,
            "every stage = transition Bottleneck + 1 ODE block (bottleneck dynamics)"),
    RunSpec("r101_fpn_s7", "R-101-FPN", "configs/COCO-Detection/faster_rcnn_R_101_FPN_scratch.yaml",
            7, "detectron2 ResNet-101"),
    RunSpec("ode_r50_fpn_s8", "ODE-R50-FPN", "configs/odenet_faster_rcnn.yaml", 8),
    RunSpec("r101_fpn_s8", "R-101-FPN", "configs/COCO-Detection/faster_rcnn_R_101_FPN_scratch.yaml",
            8),
)
RUNS_BY_KEY = {r.key: r for r in RUNS}
QUICK_RUNS = ("ode_r18_fpn", "r18_fpn")


def select_runs(keys) -> list[RunSpec]:
    unknown = [k for k in keys if k not in RUNS_BY_KEY]
    if unknown:
        raise KeyError(f"unknown study run(s) {unknown}; known: {list(RUNS_BY_KEY)}")
    return [RUNS_BY_KEY[k] for k in keys]


def build_cfg(spec: RunSpec, *, output_dir: str, max_iter: int, train_set: str, val_set: str,
              opts=()):
    """The run's frozen config: model config + shared recipe + seed + schedule + overrides."""
    from odedet import get_odedet_cfg

    cfg = get_odedet_cfg()
    cfg.merge_from_file(os.path.join(_REPO, spec.config))
    cfg.merge_from_file(os.path.join(_REPO, RECIPE))
    cfg.merge_from_list(list(spec.opts))
    cfg.SEED = spec.seed
    cfg.merge_from_list(list(opts))
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (train_set,), (val_set,)
    scale_schedule(cfg, max_iter)
    cfg.OUTPUT_DIR = os.path.join(output_dir, spec.key)
    cfg.freeze()
    return cfg


# -- training hooks ------------------------------------------------------------------------------
class ProgressBar(HookBase):
    """A tqdm bar over the run's iterations (starting at the resumed iteration), with the loss."""

    def __init__(self, desc: str):
        self.desc = desc

    def before_train(self):
        self.bar = tqdm(total=self.trainer.max_iter, initial=self.trainer.start_iter,
                        desc=self.desc, unit="it", dynamic_ncols=True)

    def after_step(self):
        self.bar.update(1)
        if self.trainer.iter % 10 == 0:
            hist = self.trainer.storage.histories()
            if "total_loss" in hist:
                self.bar.set_postfix(loss=f"{hist['total_loss'].median(10):.3f}")

    def after_train(self):
        self.bar.close()


class PruneCheckpoints(HookBase):
    """Keep only the newest ``keep`` periodic checkpoints (R-101's, with the optimizer state,
    are ~0.4 GB each); the final one always stays."""

    def __init__(self, keep: int = 1):
        self.keep = keep

    def _prune(self):
        d = self.trainer.cfg.OUTPUT_DIR
        names = sorted(f for f in os.listdir(d) if f.startswith("model_") and f.endswith(".pth")
                       and f != "model_final.pth")
        if os.path.isfile(os.path.join(d, "model_final.pth")):
            stale = names
        else:
            stale = names[: max(len(names) - self.keep, 0)]
        for f in stale:
            os.remove(os.path.join(d, f))

    def after_step(self):
        if (self.trainer.iter + 1) % self.trainer.cfg.SOLVER.CHECKPOINT_PERIOD == 0:
            self._prune()

    def after_train(self):
        self._prune()


# -- measurements ---------------------------------------------------------------------------------
def train_step_for_memory(config_yaml: str, batch: int, size: int):
    """``measure_peak_memory`` target: the run's model (random init) and one training step on a
    synthetic batch of the recipe's size (forward + backward; the optimizer step allocates
    nothing new for SGD with momentum after the first step)."""
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    from odedet import get_odedet_cfg

    cfg = get_odedet_cfg()
    cfg.merge_from_file(config_yaml)
    cfg.MODEL.WEIGHTS = ""
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    data = synthetic_detection_batch(size, batch=batch)
    for d in data:  # the benchmark's classes
        d["instances"].gt_classes = d["instances"].gt_classes % cfg.MODEL.ROI_HEADS.NUM_CLASSES

    def step():
        model.zero_grad(set_to_none=True)
        with EventStorage(0):
            losses = model(data)
        sum(losses.values()).backward()

    return step


def _val_inputs(cfg, dataset_name: str, n: int) -> list[dict]:
    """Model inputs of the first ``n`` images of ``dataset_name`` (the test mapper's output)."""
    from odedet.data.mappers import build_mapper

    mapper = build_mapper(cfg, False)
    return [mapper(d) for d in DatasetCatalog.get(dataset_name)[:n]]


def measure_cost(cfg, model, *, num_images: int = 20, memory: bool = True) -> dict:
    """Parameters, GFLOPs, latency, f-evaluations per image and training-step peak memory."""
    bottom_up = getattr(model.backbone, "bottom_up", model.backbone)
    out = dict(params_m=count_params(model), backbone_params_m=count_params(model.backbone),
               bottom_up_params_m=count_params(bottom_up), threads=torch.get_num_threads())
    inputs = _val_inputs(cfg, cfg.DATASETS.TEST[0], num_images)
    model.eval()
    with torch.no_grad():
        try:
            out["gflops"] = model_gflops(model, [{"image": inputs[0]["image"].float()}])
        except Exception as e:  # noqa: BLE001 - tracing can fail on data-dependent ops
            logger.warning(f"fvcore could not trace {cfg.OUTPUT_DIR}: {e}")
            out["gflops"] = float("nan")
        nfe = []
        for x in inputs:
            reset_nfe(model)
            model([x])
            nfe.append(nfe_counts(model)["forward"])
        out["nfe_per_image"] = statistics.fmean(nfe)
        it = iter(range(10 ** 9))
        lat = measure_latency(lambda: model([inputs[next(it) % len(inputs)]]), warmup=2,
                              repeat=len(inputs))
    out["latency_ms"] = 1e3 * lat.median
    if memory:
        peak = measure_peak_memory(
            "odedet.benchmarks.study:train_step_for_memory",
            dict(config_yaml=os.path.join(cfg.OUTPUT_DIR, "config.yaml"),
                 batch=cfg.SOLVER.IMS_PER_BATCH, size=cfg.INPUT.MAX_SIZE_TRAIN),
            threads=torch.get_num_threads())
        out["train_peak_mb"] = peak["peak_mb"]
    else:
        out["train_peak_mb"] = float("nan")
    return out


def time_training_steps(cfgs: dict, iters: int, warmup: int = 1) -> dict:
    """Seconds per training iteration (the real Trainer step on the real data loader) of each
    config, measured interleaved (each round runs one step of every model): {name: stats}."""
    from detectron2.utils.events import EventStorage

    from odedet.engine import Trainer

    trainers, fns = {}, {}
    with EventStorage(0) as storage:
        for name, cfg in tqdm(cfgs.items(), desc="building", unit="model"):
            torch.manual_seed(cfg.SEED)
            t = Trainer(cfg)._trainer
            t.storage, t.iter = storage, 0
            trainers[name] = t
            fns[name] = t.run_step
        bar = tqdm(total=iters, desc="timing rounds", unit="round")
        stats = compare_latency(fns, warmup=warmup, repeat=iters, progress=bar)
        bar.close()
    return {name: s.as_dict() for name, s in stats.items()}


def time_inference(cfgs: dict, val_set: str, num_images: int, weights: dict | None = None,
                   warmup: int = 2) -> dict:
    """Inference latency per image of each config's model on the first ``num_images`` images of
    ``val_set``, measured interleaved (each round runs one image through every model), so that
    the ratios come from one machine state. ``weights``: {name: checkpoint} of trained models
    (detectron2's checkpointer, ``weights_only`` loading); the others run at their
    initialisation, whose work per image is the same architecture and the recipe's fixed
    proposal counts. Returns {name: stats + "weights"}."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    weights = weights or {}
    inputs = _val_inputs(next(iter(cfgs.values())), val_set, num_images)
    models, fns = {}, {}
    for name, cfg in tqdm(cfgs.items(), desc="building", unit="model"):
        torch.manual_seed(cfg.SEED)
        model = build_model(cfg)
        if weights.get(name):
            DetectionCheckpointer(model).load(weights[name])
        models[name] = model.eval()
        it = iter(range(10 ** 9))
        fns[name] = (lambda m, it: lambda: m([inputs[next(it) % len(inputs)]]))(model, it)
    bar = tqdm(total=len(inputs), desc="latency rounds", unit="round")
    with torch.no_grad():
        stats = compare_latency(fns, warmup=warmup, repeat=len(inputs), progress=bar)
    bar.close()
    return {name: dict(s.as_dict(), weights=weights.get(name) or "initialisation")
            for name, s in stats.items()}


def load_timing(results_dir: str) -> dict:
    """``timing.json`` of ``tools/study.py --time-iters`` (side-by-side speed), or {}."""
    path = os.path.join(results_dir, "timing.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


# -- results -------------------------------------------------------------------------------------
_SIZES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _nan_to_none(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    return x


def run_record(spec: RunSpec, cfg, r: dict, cost: dict, classes, dataset: dict) -> dict:
    bbox, prf1 = r["bbox"], r["prf1"]
    return _nan_to_none(dict(
        key=spec.key, model=spec.model, seed=spec.seed, config=spec.config, recipe=RECIPE,
        model_opts=list(spec.opts),
        note=spec.note, max_iter=cfg.SOLVER.MAX_ITER, ims_per_batch=cfg.SOLVER.IMS_PER_BATCH,
        image_size=cfg.INPUT.MAX_SIZE_TEST, dataset=dataset,
        **{k: float(bbox.get(k, float("nan"))) for k in _SIZES},
        precision=prf1["precision"], recall=prf1["recall"], F1=prf1["F1"],
        TP=prf1["TP"], FP=prf1["FP"], FN=prf1["FN"],
        train_s=r["train_s"], s_per_iter=r["s_per_iter"], iters_timed=r["iters_timed"],
        **cost,
        per_class=[dict(cls=c, AP=float(bbox.get(f"AP-{c}", float("nan"))),
                        precision=prf1[f"precision-{c}"], recall=prf1[f"recall-{c}"],
                        F1=prf1[f"F1-{c}"]) for c in classes],
        environment=environment(),
    ))


def write_run(results_dir: str, record: dict) -> None:
    os.makedirs(results_dir, exist_ok=True)
    atomic_write_text(os.path.join(results_dir, record["key"] + ".json"),
                      json.dumps(record, indent=1, sort_keys=True) + "\n")
    rows = ["cls,AP,precision,recall,F1"] + [
        f"{c['cls']},{_num(c['AP'])},{_num(c['precision'])},{_num(c['recall'])},{_num(c['F1'])}"
        for c in record["per_class"]]
    atomic_write_text(os.path.join(results_dir, record["key"] + "_per_class.csv"),
                      "\n".join(rows) + "\n")


def _num(v, digits: int = 2) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def load_records(results_dir: str, specs=RUNS) -> list[dict]:
    out = []
    for spec in specs:
        path = os.path.join(results_dir, spec.key + ".json")
        if os.path.isfile(path):
            with open(path) as f:
                out.append(json.load(f))
    return out


# (column, record key, digits); per-model cells are "mean" or "mean (min-max)" over seeds
_COLUMNS = (
    ("AP", "AP", 1), ("AP50", "AP50", 1), ("AP75", "AP75", 1), ("APs", "APs", 1),
    ("APm", "APm", 1), ("P", "precision", 1), ("R", "recall", 1), ("F1", "F1", 1),
    ("params M", "params_m", 2), ("bottom-up M", "bottom_up_params_m", 2),
    ("GFLOPs", "gflops", 2), ("train min", "train_s", None), ("s/iter", "s_per_iter", 2),
    ("ms/img", "latency_ms", 0), ("train peak MB", "train_peak_mb", 0),
    ("f-evals/img", "nfe_per_image", 0),
)


def _cell(values, digits) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if digits is None:  # seconds -> minutes
        values, digits = [v / 60 for v in values], 0
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


# speed columns that come from the side-by-side timing (timing.json) when it has the model
_SIDE_BY_SIDE = {"s/iter": ("s_per_iter", 2), "ms/img": ("ms_per_image", 0)}


def summary_rows(records: list[dict], timing: dict | None = None) -> list[dict]:
    """One row per model (seeds as mean (min-max)). The speed columns (s/iter, ms/img) are the
    side-by-side measurement of ``timing`` (one machine, one run) where it has the model; a
    per-run figure (measured on whichever machine trained that run) is marked with ``*``."""
    by_model: dict = {}
    for r in records:
        by_model.setdefault(r["model"], []).append(r)
    rows = []
    for model, rs in by_model.items():
        row = {"model": model, "seeds": ",".join(str(r["seed"]) for r in rs),
               "iters": str(rs[0]["max_iter"])}
        for col, key, digits in _COLUMNS:
            row[col] = _cell([r.get(key) for r in rs], digits)
            if col in _SIDE_BY_SIDE:
                tkey, scale = _SIDE_BY_SIDE[col][0], 1e3 if col == "ms/img" else 1
                t = (timing or {}).get(tkey, {}).get(model)
                if t:
                    row[col] = f"{scale * t['median_s']:.{digits}f}"
                elif row[col] != "n/a":
                    row[col] += "*"
        rows.append(row)
    return rows


def machines_line(records: list[dict]) -> str:
    """Where the runs were trained: each distinct machine (CPU and kind) with its runs."""
    by: dict = {}
    for r in records:
        env = r.get("environment", {})
        cpu = env.get("cpu", "?") + (f" [{env['cpu kind']}]" if env.get("cpu kind") else "")
        by.setdefault(cpu, []).append(f"{r['key']} ({env.get('measured at', '?')[:10]})")
    return "; ".join(f"{cpu}: {', '.join(runs)}" for cpu, runs in by.items())


def caption(records: list[dict], timing: dict | None) -> str:
    """The table's provenance: where runs trained, and which speed figures are side by side."""
    text = (f"Runs trained on {machines_line(records)}, one torch thread each (AP, P, R, F1, "
            "train min and peak memory are per run).")
    cols = [c for c, present in (
        ("s/iter (training step)", (timing or {}).get("s_per_iter")),
        (f"ms/img (inference, {(timing or {}).get('latency_images', '?')} val images)",
         (timing or {}).get("ms_per_image"))) if present]
    if cols:
        env = timing.get("environment", {})
        text += (f" {' and '.join(cols)} measured side by side, interleaved in one run "
                 f"(`python tools/study.py --time-iters {timing.get('iters_timed', 5)}`) on "
                 f"{environment_line(env)}, {env.get('measured at', '')}.")
    text += " `*`: a per-run figure from the machine that trained the run (not side by side)."
    return text


def write_tables(results_dir: str, specs=RUNS, header: str = "") -> str:
    """Regenerate ``table.md`` (per model, seeds aggregated) and ``runs.csv`` (one line per run)
    from the run JSONs present; return the markdown."""
    records = load_records(results_dir, specs)
    done = {r["key"] for r in records}
    pending = [s.key for s in specs if s.key not in done]
    md = [header.strip(), ""] if header else []
    timing = load_timing(results_dir)
    md.append(markdown_table(summary_rows(records, timing)) if records
              else "_(no finished run yet)_\n")
    if records:
        md.append(f"\n{caption(records, timing)} Cells with two seeds: mean (min-max).")
    md.append(f"\nFinished runs: {len(records)}/{len(specs)}"
              + (f"; pending: {', '.join(pending)}" if pending else ""))
    text = "\n".join(md) + "\n"
    os.makedirs(results_dir, exist_ok=True)
    atomic_write_text(os.path.join(results_dir, "table.md"), text)
    keys = ["key", "model", "seed", "max_iter", *_SIZES, "precision", "recall", "F1",
            "params_m", "backbone_params_m", "bottom_up_params_m", "gflops", "train_s",
            "s_per_iter", "latency_ms", "train_peak_mb", "nfe_per_image", "threads"]
    lines = [",".join(keys)]
    for r in records:
        lines.append(",".join(_num(r.get(k), 4) if isinstance(r.get(k), float) else
                              str(r.get(k, "")) for k in keys))
    atomic_write_text(os.path.join(results_dir, "runs.csv"), "\n".join(lines) + "\n")
    if records:
        plot_study(records, results_dir, timing)
    return text


STUDY_PLOT = "study_ap.png"


def plot_study(records: list[dict], out_dir: str, timing: dict | None = None) -> str:
    """``study_ap.png``: AP against inference latency (one marker per run, so two seeds show
    their spread; the latency is the side-by-side one of ``timing`` where it has the model) and
    AP per object size (mean over seeds), per model; returns the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .output import save_figure

    models = list(dict.fromkeys(r["model"] for r in records))
    colors = {m: matplotlib.colormaps["tab10"](i % 10) for i, m in enumerate(models)}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.4))
    labelled = set()
    side = (timing or {}).get("ms_per_image", {})
    for r in records:
        ms = 1e3 * side[r["model"]]["median_s"] if r["model"] in side else r.get("latency_ms")
        if ms is not None and r.get("AP") is not None:
            ax1.scatter(ms, r["AP"], color=colors[r["model"]], s=36,
                        label=None if r["model"] in labelled else r["model"])
            labelled.add(r["model"])
    xlabel = ("ms / image (CPU, measured side by side)" if side and all(
        r["model"] in side for r in records) else "ms / image (CPU)")
    ax1.set(title="AP vs inference latency (one marker per run)", xlabel=xlabel,
            ylabel="COCO AP (held-out digits)")
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize=7)
    sizes = [("AP", "all"), ("APs", "small"), ("APm", "medium")]
    width = 0.8 / max(1, len(models))
    for i, m in enumerate(models):
        vals = []
        for key, _ in sizes:
            v = [r.get(key) for r in records if r["model"] == m and r.get(key) is not None]
            vals.append(statistics.fmean(v) if v else 0.0)
        ax2.bar([j + i * width for j in range(len(sizes))], vals, width, color=colors[m],
                label=m)
    ax2.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(sizes))],
                   [label for _, label in sizes])
    ax2.set(title="AP by object size (mean over seeds)", ylabel="COCO AP")
    ax2.grid(True, axis="y", alpha=0.3)
    return save_figure(fig, out_dir, STUDY_PLOT, records[-1].get("environment", {}))


# -- the study -----------------------------------------------------------------------------------
def run_study(specs, *, output_dir: str, results_dir: str, max_iter: int, train_set: str,
              val_set: str, dataset: dict, budget_min: float | None = None, opts=(),
              latency_images: int = 20, memory: bool = True, table_specs=None) -> dict:
    """Train/evaluate/measure each run not finished yet, in order, within ``budget_min`` minutes
    of training for this call. Returns {"finished": [...], "skipped": [...], "stopped": key or
    None, "table": markdown}; the tables cover ``table_specs`` (default: ``specs``)."""
    classes = MetadataCatalog.get(val_set).thing_classes
    finished, skipped, stopped = [], [], None
    start = time.perf_counter()
    bar = tqdm(specs, desc="study", unit="model", dynamic_ncols=True)
    for spec in bar:
        bar.set_postfix(run=spec.key)
        path = os.path.join(results_dir, spec.key + ".json")
        if os.path.isfile(path):
            with open(path) as f:
                old = json.load(f)
            if old.get("max_iter") != max_iter:
                raise ValueError(f"{path} was trained for {old.get('max_iter')} iterations, not "
                                 f"{max_iter}: use that --max-iter or another --results-dir")
            skipped.append(spec.key)
            continue
        left = None
        if budget_min is not None:
            left = budget_min - (time.perf_counter() - start) / 60
            if left <= 0 and finished:  # the first run of a call always gets a step
                stopped = spec.key
                break
        cfg = build_cfg(spec, output_dir=output_dir, max_iter=max_iter, train_set=train_set,
                        val_set=val_set, opts=opts)
        logger.info(f"study: {spec.key} ({spec.model}, seed {spec.seed}): {max_iter} iterations "
                    f"in {cfg.OUTPUT_DIR}")
        try:
            r = train_and_evaluate(cfg, resume=True, budget_min=left,
                                   extra_hooks=[ProgressBar(spec.key), PruneCheckpoints()])
        except BudgetStop as e:
            logger.info(f"study: {spec.key}: {e}")
            stopped = spec.key
            break
        cost = measure_cost(cfg, r["model"], num_images=latency_images, memory=memory)
        write_run(results_dir, run_record(spec, cfg, r, cost, classes, dataset))
        finished.append(spec.key)
        write_tables(results_dir, table_specs or specs)
    bar.close()
    return dict(finished=finished, skipped=skipped, stopped=stopped,
                table=write_tables(results_dir, table_specs or specs))

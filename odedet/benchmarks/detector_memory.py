"""``benchmark.py detector-memory``: whole-detector training-step memory at training sizes.

The question a user asks: at detectron2's per-GPU training size (2 images, 800x1333), how much
memory does one training step of each detector need, where does it go, and what batch fits in a
budget? Every point is one training step - forward, backward, optimizer step (detectron2's SGD
with momentum and this config's gradient clipping) - measured in a fresh subprocess:

1. the child imports torch/detectron2/odedet and records its resident set (``process_mb``);
2. it builds the model and optimizer and runs a *cheap warm-up step* on one small image: it
   allocates the one-time state (momentum buffers, thread pools, lazily built modules) at a
   fraction of a full step's cost;
3. it builds the batch, returns freed memory to the OS, resets the peak-RSS mark
   (``/proc/self/clear_refs``; on CUDA ``reset_peak_memory_stats``) and runs the measured step,
   reading the peak after the forward pass and after the whole step.

``peak_mb`` = peak RSS - ``process_mb``: weights, optimizer state, the batch, activations,
gradients and workspaces, i.e. what the step needs beyond a bare interpreter (on CUDA:
``max_memory_allocated``, which counts the same tensors). ``step_peak_mb`` is the peak over the
level right before the step (what the step itself adds).

The per-part breakdown is measured in the same step: ``torch.autograd.graph.saved_tensors_hooks``
sees every tensor autograd keeps for the backward pass, forward hooks on the parts (stem, each
stage's transition / ODE / residual blocks, FPN, RPN, ROI heads) say which part is running; each
saved storage is counted once (parameters excluded), for the part that saved it first. A part
under activation checkpointing keeps its input instead; that is counted for it too.

Points are written to ``points.json`` as they finish and reused by the next run (resumable),
so a long study runs as several separate pieces (``--max-minutes``). ``--jobs N``
runs N one-thread points at once (each process's peak RSS is its own).
"""
from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict

_MB = 1024.0 * 1024.0
_RESULT_TAG = "ODEDET_DETMEM_RESULT "
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> (config file relative to the repository, config overrides)
MODELS = {
    "ODE-R50-FPN": ("configs/odenet_faster_rcnn.yaml", []),
    "ODE-R50-FPN-lean": ("configs/COCO-Detection/ode_faster_rcnn_R_50_FPN_lean.yaml", []),
    "ODE-R50-FPN-direct": ("configs/odenet_faster_rcnn.yaml", ["MODEL.ODE.ADJOINT", False]),
    "R-50-FPN": ("configs/COCO-Detection/faster_rcnn_R_50_FPN_scratch.yaml", []),
    "R-101-FPN": ("configs/COCO-Detection/faster_rcnn_R_101_FPN_scratch.yaml", []),
}
DESCRIPTIONS = {
    "ODE-R50-FPN": "ODE-ResNet-50-FPN, adjoint (configs/odenet_faster_rcnn.yaml)",
    "ODE-R50-FPN-lean": "same + checkpointed stem and transitions "
                        "(COCO-Detection/ode_faster_rcnn_R_50_FPN_lean.yaml)",
    "ODE-R50-FPN-direct": "ODE-ResNet-50-FPN, backprop through the solver (MODEL.ODE.ADJOINT False)",
    "R-50-FPN": "detectron2 ResNet-50-FPN, same GN from-scratch recipe",
    "R-101-FPN": "detectron2 ResNet-101-FPN, same recipe",
}


def long_side(short: int) -> int:
    """detectron2's long side for a 800x1333-shaped image with shorter side ``short``."""
    return int(round(short * 1333 / 800))


# -- the measured step (runs in the child process) -----------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / _MB


def detector_parts(model) -> dict:
    """{part name: module} of a GeneralizedRCNN with a (ODE-)ResNet-FPN backbone."""
    from odedet.modeling.backbone.ode_resnet import ODEStageBlock

    parts = {}
    backbone = model.backbone
    bottom_up = getattr(backbone, "bottom_up", backbone)
    if hasattr(bottom_up, "stem"):
        parts["stem"] = [bottom_up.stem]
    for name in getattr(bottom_up, "stage_names", ()):
        blocks = list(getattr(bottom_up, name))
        parts[f"{name} transition"] = [blocks[0]]
        rest = blocks[1:]
        if rest and all(isinstance(b, ODEStageBlock) for b in rest):
            parts[f"{name} ODE block"] = rest
        elif rest:
            parts[f"{name} blocks 2-{len(blocks)}"] = rest
    if backbone is not bottom_up:
        parts["FPN"] = [backbone]  # what the FPN runs outside its bottom-up network
    parts["RPN"] = [model.proposal_generator]
    parts["ROI heads"] = [model.roi_heads]
    return parts


class SavedTensorProfile:
    """Bytes autograd saves for backward during a forward pass, by detector part (measured)."""

    def __init__(self, model, parts: dict):
        import torch

        self._torch = torch
        self.stack: list[str] = []
        self.saved = defaultdict(int, {name: 0 for name in parts})  # a part saving nothing: 0
        self.seen: set[int] = set()
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.param_mb = {name: sum(p.numel() * p.element_size() for m in mods
                                   for p in m.parameters()) / _MB
                         for name, mods in parts.items()}
        # FPN and the backbone share the bottom-up network's parameters: FPN's own are the rest.
        if "FPN" in self.param_mb:
            self.param_mb["FPN"] -= sum(v for k, v in self.param_mb.items()
                                        if k not in ("FPN", "RPN", "ROI heads"))
        self.handles = []
        for name, mods in parts.items():
            for m in mods:
                self.handles.append(m.register_forward_pre_hook(self._enter(name)))
                self.handles.append(m.register_forward_hook(self._exit))
        for m in model.modules():  # registered after the parts: runs inside its part
            if getattr(m, "_odedet_checkpointed", False):
                self.handles.append(m.register_forward_pre_hook(self._kept_inputs))

    def _count(self, t) -> None:
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr and ptr not in self.seen and ptr not in self.params:
            self.seen.add(ptr)
            self.saved[self.stack[-1] if self.stack else "other"] += st.nbytes()

    def _enter(self, name):
        def hook(mod, args):
            self.stack.append(name)
        return hook

    def _kept_inputs(self, mod, args):
        """What a module under activation checkpointing keeps for backward: its inputs."""
        if mod.training and self._torch.is_grad_enabled():
            for a in args:
                for t in (a if isinstance(a, (list, tuple)) else [a]):
                    if isinstance(t, self._torch.Tensor):
                        self._count(t)

    def _exit(self, *_):
        self.stack.pop()

    def _pack(self, t):
        if isinstance(t, self._torch.Tensor):
            self._count(t)
        return t

    def hooks(self):
        return self._torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


class _BudgetWatch:
    """Stops the child as soon as its training memory passes ``budget_mb`` (a failed probe)."""

    def __init__(self, base_mb: float, budget_mb: float, interval: float = 0.02):
        self.base, self.budget, self.interval = base_mb, budget_mb, interval
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            used = _rss_mb() - self.base
            if used > self.budget:
                print(_RESULT_TAG + json.dumps(dict(exceeded=True, peak_mb=used)), flush=True)
                os._exit(0)
            time.sleep(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()


def run_point(spec: dict) -> dict:
    """Build, warm up and measure one training step (the child's work); see the module doc."""
    import torch

    from odedet.evaluation.meters import _can_reset_peak, _release_freed_memory, _status_mb

    torch.set_num_threads(int(spec.get("threads", 1)))
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    from odedet.engine.optim import build_optimizer

    from .zoo import detector_cfg, synthetic_detection_batch

    device = spec.get("device", "cpu")
    cuda = device.startswith("cuda")
    _release_freed_memory()
    process_mb = 0.0 if cuda else _rss_mb()
    rel, opts = MODELS[spec["model"]]
    cfg = detector_cfg(spec["model"], device=device, config=os.path.join(_REPO, rel),
                       opts=list(opts) + list(spec.get("opts", [])))
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    optimizer = build_optimizer(cfg, model)

    def train_step(batch, profile=None, marks=None):
        t0 = time.perf_counter()
        with EventStorage(0):
            if profile is not None:
                with profile.hooks():
                    losses = model(batch)
            else:
                losses = model(batch)
        if marks is not None:
            marks["forward_s"] = time.perf_counter() - t0
            marks["forward_abs"] = _peak_abs()
        sum(losses.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    reset_ok = (not cuda) and _can_reset_peak()

    def _peak_abs():
        if cuda:
            return torch.cuda.max_memory_allocated(device) / _MB
        return _status_mb("VmHWM") if reset_ok else _rss_mb()

    warm = spec.get("warmup_size", 128)
    train_step(synthetic_detection_batch(warm, batch=1, device=device))  # cheap warm-up
    batch = synthetic_detection_batch((spec["height"], spec["width"]), batch=spec["batch"],
                                      device=device)
    profile = SavedTensorProfile(model, detector_parts(model)) if spec.get("breakdown") else None
    _release_freed_memory()
    if cuda:
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device) / _MB
        torch.cuda.reset_peak_memory_stats(device)
    else:
        before = _rss_mb()
        if not reset_ok:
            raise OSError("peak-RSS reset (/proc/self/clear_refs) unavailable: needs Linux")
    marks = {}
    budget = spec.get("budget_mb")
    t0 = time.perf_counter()
    if budget and not cuda:
        with _BudgetWatch(process_mb, budget):
            train_step(batch, profile, marks)
    else:
        train_step(batch, profile, marks)
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    peak_abs = _peak_abs()
    out = dict(
        peak_mb=peak_abs - process_mb, step_peak_mb=peak_abs - before,
        static_mb=before - process_mb, forward_peak_mb=marks["forward_abs"] - process_mb,
        process_mb=process_mb, step_s=seconds, forward_s=marks["forward_s"],
        exceeded=bool(budget) and peak_abs - process_mb > budget,
        method="torch.cuda.max_memory_allocated" if cuda else "VmHWM (/proc/self/clear_refs)",
    )
    if profile is not None:
        out["saved_mb"] = {k: v / _MB for k, v in profile.saved.items()}
        out["param_mb"] = profile.param_mb
        profile.remove()
    return out


# -- the study (parent process) ------------------------------------------------------------
def point_key(p: dict) -> str:
    opts = " ".join(str(o) for o in p.get("opts", []))
    return f"{p['model']}|{p['batch']}x{p['height']}x{p['width']}|{opts}"


def _child_env(threads: int) -> dict:
    from odedet.evaluation.meters import _child_env as meter_env

    env = meter_env()
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = _REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _launch(spec: dict, threads: int):
    return subprocess.Popen(
        [sys.executable, "-m", "odedet.benchmarks.detector_memory", json.dumps(spec)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env(threads))


def _collect(proc) -> dict:
    out, err = proc.communicate()
    for line in reversed(out.splitlines()):
        if line.startswith(_RESULT_TAG):
            return json.loads(line[len(_RESULT_TAG):])
    return dict(error=f"exit {proc.returncode}: {err[-2000:]}")


class PointStore:
    """points.json: finished points by key, merged into the file after every point under a file
    lock (resumable; several runners may share one file: a point being measured is claimed,
    and other runners skip it while its runner lives)."""

    def __init__(self, path: str):
        self.path = path
        self.points = {}
        self._sync(lambda pts: False)  # read only

    def _sync(self, change) -> None:
        import fcntl

        with open(self.path + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if os.path.isfile(self.path):
                with open(self.path) as f:
                    self.points = json.load(f).get("points", {})
            if change(self.points) is False:
                return
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(dict(points=self.points), f, indent=1)
            os.replace(tmp, self.path)

    def get(self, spec):
        row = self.points.get(point_key(spec))
        if not row or "error" in row or "claimed_by" in row:
            return None
        if row.get("exceeded"):
            # A probe stopped at budget B says only "peak > B": it answers a probe at a budget
            # <= B, never a spec that needs the full measurement.
            budget = spec.get("budget_mb")
            if not budget or budget > row.get("budget_mb", 0):
                return None
        return row

    def claim(self, spec) -> bool:
        """Mark ``spec`` as being measured by this process; False if finished or claimed."""
        key, won = point_key(spec), []

        def change(pts):
            row = pts.get(key)
            if row and "claimed_by" in row and _alive(row["claimed_by"]):
                return False
            if self.get(spec) is not None:
                return False
            pts[key] = dict(spec, claimed_by=os.getpid())
            won.append(True)

        self._sync(change)
        return bool(won)

    def put(self, spec, result) -> None:
        key = point_key(spec)

        def change(pts):
            row = pts.get(key)
            full = row and not any(k in row for k in ("error", "claimed_by", "exceeded"))
            if full and result.get("exceeded"):
                return False  # a full measurement is never replaced by a stopped probe
            pts[key] = dict(spec, **result)

        self._sync(change)


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError):
        return False


class Runner:
    """Runs point specs, ``jobs`` at a time, reusing finished ones; stops launching new points
    after ``max_minutes`` (the rest runs on the next call)."""

    def __init__(self, store: PointStore, args, progress=print):
        self.store, self.args, self.log = store, args, progress
        self.deadline = time.time() + 60 * args.max_minutes if args.max_minutes else math.inf
        self.out_of_time = False

    def run(self, specs: list, more=None) -> int:
        """Measure ``specs`` (in this order), ``jobs`` at a time; returns how many it launched.
        ``more()``: specs that depend on finished points (the budget search's probes), asked
        again after every finished point and launched before the remaining ``specs`` (they are
        the study's critical path). Points another runner has claimed are waited for."""
        todo, seen = [], set()
        for s in specs:
            if self.store.get(s) is None and point_key(s) not in seen:
                todo.append(s)
                seen.add(point_key(s))
        running, launched = {}, 0
        while True:
            if time.time() >= self.deadline:
                if todo or (more and more()):
                    self.out_of_time = True
                todo, more = [], None
            queue, keys = [], set(running)
            planned = {point_key(t): t for t in todo}
            # a probe that is also a planned point is measured as that point (in full: e.g.
            # with the breakdown), which answers the probe too
            for sp in [planned.get(point_key(p), p) for p in (more() if more else [])] + todo:
                if point_key(sp) not in keys and self.store.get(sp) is None:
                    queue.append(sp)
                    keys.add(point_key(sp))
            blocked = False
            for spec in queue:
                if len(running) >= self.args.jobs:
                    break
                if not self.store.claim(spec):  # being measured by another runner
                    blocked = True
                    continue
                full = dict(spec, threads=self.args.threads, device=self.args.device)
                running[point_key(spec)] = (spec, _launch(full, self.args.threads), time.time())
                todo = [t for t in todo if point_key(t) != point_key(spec)]
                launched += 1
                self.log(f"[detector-memory] start {point_key(spec)}")
            if not running:
                if not queue:
                    return launched
                time.sleep(10 if blocked else 0.5)
                self.store._sync(lambda pts: False)  # re-read the other runners' results
                continue
            for key, (spec, proc, t0) in list(running.items()):
                if proc.poll() is not None:
                    del running[key]
                    res = _collect(proc)
                    res["wall_s"] = time.time() - t0
                    self.store.put(spec, res)
                    self.log(f"[detector-memory] done  {key}: "
                             + (res.get("error", "")[-300:] or
                                f"peak {res['peak_mb']:.0f} MB, step {res.get('step_s', 0):.0f} s"
                                + (" (over budget)" if res.get("exceeded") else "")))
            time.sleep(0.5)


def _spec(model, batch, short, args, opts=(), breakdown=False, budget=None, width=None):
    # every point outside the budget search is stopped at --cap-gib (recorded as "> cap")
    budget = budget or getattr(args, "cap_mb", None)
    return dict(model=model, batch=int(batch), height=int(short),
                width=int(width or long_side(short)), opts=list(args.extra_opts) + list(opts),
                breakdown=breakdown,
                budget_mb=budget, warmup_size=args.warmup_size)


def steps_opts(method: str, k: int) -> list:
    return ["MODEL.ODE.METHOD_TRAIN", method, "MODEL.ODE.STEP_SIZE_TRAIN", 1.0 / k]


def planned_specs(args) -> dict:
    """The points of each study (except the budget search, which depends on results)."""
    b0, s0 = args.default_batch, args.default_short
    plan = {"default": [_spec(m, b0, s0, args, breakdown=True, width=args.default_long)
                        for m in args.models]}
    plan["batch"] = [_spec(m, b, s0, args, width=args.default_long)
                     for m in args.curve_models for b in args.batches if b != b0]
    plan["size"] = [_spec(m, b0, s, args) for m in args.curve_models for s in args.shorts
                    if s != s0]
    plan["steps"] = [_spec(args.steps_model, b0, s0, args, width=args.default_long,
                           opts=steps_opts(args.steps_method, k)) for k in args.ode_steps]
    return plan


def _fits(row, budget) -> bool:
    return not row.get("exceeded") and row["peak_mb"] <= budget


def budget_next(rows_by_batch: dict, budget: float, max_batch: int):
    """Next batch to probe, or None when the largest fitting batch is known (a measured fit at
    ``b`` and a measured failure at ``b + 1``, or a fit at ``max_batch``). ``rows_by_batch``:
    {batch: measured row}.

    Memory grows almost linearly with the batch, so the probe is the batch the measured line
    predicts to be the last that fits: the secant through the largest fitting batch and the
    nearest fully measured batch (the smallest failing one when its peak is known, else the
    next smaller fit), kept strictly between the largest fit and the smallest failure. With one
    measurement or none it doubles from 1. Each probe narrows the bracket by at least one, and a
    good prediction ends the search in two probes (the last fit and the first failure) instead
    of the log2 steps of doubling and bisecting. Where the line is contradicted (it predicts a
    measured failure to fit) the search bisects. Every answer is a measurement."""
    fit = sorted(b for b, r in rows_by_batch.items() if _fits(r, budget))
    fail = [b for b, r in rows_by_batch.items() if not _fits(r, budget)]
    lo = max(fit, default=0)
    hi = min([b for b in fail if b > lo], default=None)
    if hi is not None and hi - lo <= 1:
        return None
    if hi is None and lo >= max_batch:
        return None
    upper = hi - 1 if hi is not None else max_batch
    other = None
    if hi is not None and not rows_by_batch[hi].get("exceeded"):
        other = hi
    elif len(fit) >= 2:
        other = fit[-2]
    guess = None
    if lo and other is not None:
        slope = (rows_by_batch[other]["peak_mb"] - rows_by_batch[lo]["peak_mb"]) / (other - lo)
        if slope > 0:
            guess = lo + int(math.floor((budget - rows_by_batch[lo]["peak_mb"]) / slope))
    if guess is not None and hi is not None and guess >= hi:
        guess = None  # the line says a measured failure fits: it is wrong here, bisect
    if guess is None:
        guess = max(1, 2 * lo) if hi is None else (lo + hi) // 2
    return min(max(guess, lo + 1), upper)


def largest_batch(rows_by_batch: dict, budget: float, max_batch: int):
    fit = [b for b, r in rows_by_batch.items() if _fits(r, budget)]
    lo = max(fit, default=0)
    capped = lo >= max_batch
    return lo, capped


def budget_rows(store: PointStore, model: str, args) -> dict:
    out = {}
    for row in store.points.values():
        if (row.get("model") == model and row.get("height") == args.default_short
                and row.get("width") == args.default_long
                and row.get("opts") == list(args.extra_opts)
                and "peak_mb" in row and "claimed_by" not in row):
            out[row["batch"]] = row
    return out


def budget_specs(store, args, planned=()) -> list:
    """The budget search's next probe of every budget model (none once all are answered).
    A model's search waits for its ``planned`` points at the budget's image size (the batch
    curve): a line through batches 2 and 4 predicts well, one through 1 and 2 does not (the
    fixed part of the memory dominates there)."""
    specs = []
    for m in args.budget_models:
        if any(s["model"] == m and store.get(s) is None for s in planned):
            continue
        b = budget_next(budget_rows(store, m, args), args.budget_mb, args.budget_max_batch)
        if b is not None:
            specs.append(_spec(m, b, args.default_short, args, width=args.default_long,
                               budget=args.budget_mb))
    return specs


# -- tables, plots, document ---------------------------------------------------------------
def _row(r) -> dict:
    if r.get("exceeded"):  # stopped at the cap: only a lower bound is known
        nan = float("nan")
        return dict(model=r["model"], batch=r["batch"], input=f"{r['height']}x{r['width']}",
                    peak_mb=f"> {r['budget_mb']:.0f} (stopped)", step_peak_mb=nan,
                    forward_peak_mb=nan, static_mb=r.get("static_mb", nan), step_s=nan)
    return dict(model=r["model"], batch=r["batch"], input=f"{r['height']}x{r['width']}",
                peak_mb=r["peak_mb"], step_peak_mb=r.get("step_peak_mb", float("nan")),
                forward_peak_mb=r.get("forward_peak_mb", float("nan")),
                static_mb=r.get("static_mb", float("nan")), step_s=r.get("step_s", float("nan")))


def build_document(store, args, env, out_dir) -> dict:
    from .output import table, write_outputs

    plan = planned_specs(args)
    get = store.get
    tables, summary, notes, plots = [], {}, [], []
    default = [get(s) for s in plan["default"]]
    default = [r for r in default if r]
    if default:
        tables.append(table(f"Training step at {args.default_batch} x "
                            f"{args.default_short}x{args.default_long}",
                            [dict(_row(r), saved_mb=sum(r.get("saved_mb", {}).values()))
                             for r in default]))
        measured = [r for r in default if not r.get("exceeded")]  # not the capped ones
        by = {r["model"]: r["peak_mb"] for r in measured}
        for a, b in (("ODE-R50-FPN-lean", "R-101-FPN"), ("ODE-R50-FPN-lean", "R-50-FPN"),
                     ("ODE-R50-FPN", "R-101-FPN"), ("ODE-R50-FPN", "R-50-FPN")):
            if a in by and b in by:
                summary[f"{a} / {b} peak"] = by[a] / by[b]
        parts = []
        for r in default:
            for part, mb in r.get("saved_mb", {}).items():
                parts.append(dict(model=r["model"], part=part, saved_mb=mb,
                                  param_mb=r.get("param_mb", {}).get(part, 0.0)))
        if parts:
            tables.append(table("Where the memory goes: tensors saved for backward, by part "
                                "(same step)", _breakdown_rows(measured),
                                None))
            plots.append(plot_breakdown(measured, out_dir, env))
    curve = []
    for key in ("batch", "size"):
        curve += [r for r in (get(s) for s in plan[key]) if r]
    curve += [r for r in default if r["model"] in args.curve_models]
    curve = [r for r in curve if not r.get("exceeded")]  # a capped point has no peak to plot
    if any(r not in default for r in curve):
        curve.sort(key=lambda r: (r["model"], r["height"], r["batch"]))
        tables.append(table("Curve over batch and image size", [_row(r) for r in curve]))
        plots.append(plot_curves(curve, args, out_dir, env))
    steps = sorted((k, get(s)) for k, s in zip(args.ode_steps, plan["steps"])
                   if get(s) and not get(s).get("exceeded"))
    if steps:
        tables.append(table(f"{args.steps_model}: peak vs ODE solver steps per block "
                            f"({args.steps_method}), {args.default_batch} x "
                            f"{args.default_short}x{args.default_long}",
                            [dict(steps=k, **_row(r)) for k, r in steps],
                            ["steps", "model", "peak_mb", "step_peak_mb", "forward_peak_mb",
                             "step_s"]))
        peaks = [r["peak_mb"] for _, r in steps]
        summary[f"{args.steps_model} peak max/min over steps {steps[0][0]}..{steps[-1][0]}"] = \
            max(peaks) / min(peaks)
        plots.append(plot_steps(steps, args, out_dir, env))
    budget = []
    for m in args.budget_models:
        rows = budget_rows(store, m, args)
        if not rows:
            continue
        lo, capped = largest_batch(rows, args.budget_mb, args.budget_max_batch)
        probes = ", ".join(f"{b}: {r['peak_mb']:.0f}{'+' if r.get('exceeded') else ''}"
                           for b, r in sorted(rows.items()))
        done = budget_next(rows, args.budget_mb, args.budget_max_batch) is None
        budget.append(dict(model=m, largest_batch=lo if done else float("nan"),
                           capped=capped, searched=done, probes_batch_peak_mb=probes))
    if budget:
        tables.append(table(f"Largest batch at {args.default_short}x{args.default_long} "
                            f"within {args.budget_mb:.0f} MB", budget))
        lb = {r["model"]: r["largest_batch"] for r in budget}
        for m in ("ODE-R50-FPN-lean", "ODE-R50-FPN"):
            if m in lb and "R-101-FPN" in lb and lb["R-101-FPN"]:
                summary[f"{m} / R-101-FPN largest batch"] = lb[m] / lb["R-101-FPN"]
    notes.append(
        "Each point: one training step (forward, backward, SGD step with momentum and the "
        "config's gradient clipping) in a fresh process after a warm-up step on one "
        f"{args.warmup_size}x{args.warmup_size} image; peak_mb = peak RSS minus the process "
        "before the model was built (weights, optimizer state, inputs, activations, gradients); "
        "step_peak_mb = over the level just before the step; forward_peak_mb = peak by the end "
        "of the forward pass. Random-init models, synthetic images with 3 boxes each.")
    notes.append("saved_mb: storage autograd keeps for backward at the end of the forward pass "
                 "(torch.autograd.graph.saved_tensors_hooks), each storage counted once for the "
                 "part that saved it first; parameters excluded; a checkpointed part counts its "
                 "kept input. The rest of the peak is weights + optimizer state (static_mb), "
                 "gradients and transient buffers of the backward pass (e.g. the adjoint's "
                 "backward solve).")
    notes += [f"{k}: {v}" for k, v in DESCRIPTIONS.items() if k in set(args.models)]
    return write_outputs(out_dir, "detector_memory",
                         title="Whole-detector training-step memory", tables=tables,
                         extra=summary, notes=notes, plots=plots, env=env)


def _part_order(part: str) -> tuple:
    """stem, res2 .. res5 (transition first), FPN, RPN, ROI heads, other."""
    fixed = {"stem": 0, "FPN": 60, "RPN": 70, "ROI heads": 80}
    if part in fixed:
        return (fixed[part], part)
    if part.startswith("res") and part[3:4].isdigit():
        return (10 * int(part[3]) + (0 if part.endswith("transition") else 1), part)
    return (90, part)


def _parts(default) -> list:
    return sorted({p for r in default for p in r.get("saved_mb", {})}, key=_part_order)


def _breakdown_rows(default) -> list:
    parts = _parts(default)
    rows = []
    for p in parts:
        row = {"part": p}
        for r in default:
            row[r["model"]] = r.get("saved_mb", {}).get(p, 0.0)
        rows.append(row)
    rows.append(dict(part="saved, total", **{r["model"]: sum(r.get("saved_mb", {}).values())
                                             for r in default}))
    rows.append(dict(part="weights + optimizer + batch (static)",
                     **{r["model"]: r.get("static_mb", float("nan")) for r in default}))
    rows.append(dict(part="measured peak", **{r["model"]: r["peak_mb"] for r in default}))
    return rows


def plot_breakdown(default, out_dir, env) -> str:
    from .output import new_figure, save_figure

    fig, ax = new_figure("Training-step memory by part (saved for backward)", "model", "MB")
    names = [r["model"] for r in default]
    parts = _parts(default)
    bottom = [0.0] * len(default)
    cmap = __import__("matplotlib").colormaps["tab20"]
    for i, p in enumerate(parts):
        vals = [r.get("saved_mb", {}).get(p, 0.0) for r in default]
        ax.bar(names, vals, bottom=bottom, label=p, color=cmap(i % 20))
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.scatter(names, [r["peak_mb"] for r in default], color="k", marker="_", s=400,
               label="measured peak", zorder=3)
    ax.legend(fontsize=6, ncol=2)
    ax.tick_params(axis="x", labelsize=7)
    return save_figure(fig, out_dir, "detector_memory_breakdown.png", env)


def plot_curves(curve, args, out_dir, env) -> str:
    from .output import new_figure, save_figure

    fig, ax = new_figure("Training-step peak memory", "pixels per batch (millions)",
                         "peak memory (MB)")
    for m in args.curve_models:
        pts = sorted((r["batch"] * r["height"] * r["width"] / 1e6, r["peak_mb"])
                     for r in curve if r["model"] == m)
        if pts:
            ax.plot(*zip(*pts), marker="o", label=m)
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir, "detector_memory_curve.png", env)


def plot_steps(steps, args, out_dir, env) -> str:
    from .output import new_figure, save_figure

    fig, ax = new_figure(f"{args.steps_model}: peak vs solver steps", "steps per ODE block",
                         "peak memory (MB)")
    ax.plot([k for k, _ in steps], [r["peak_mb"] for _, r in steps], marker="o")
    ax.set_xscale("log", base=2)
    ax.set_ylim(bottom=0)
    return save_figure(fig, out_dir, "detector_memory_steps.png", env)


STUDIES = ("default", "steps", "batch", "size", "budget")


def run(args) -> dict:
    """Entry point of ``tools/benchmark.py detector-memory``."""
    from .output import environment

    env = environment()
    env["torch threads"] = str(args.threads)
    env["parallel point processes"] = str(args.jobs)
    os.makedirs(args.out, exist_ok=True)
    store = PointStore(os.path.join(args.out, "points.json"))
    runner = Runner(store, args)
    plan = planned_specs(args)
    t0 = time.time()
    # One pool for every study (no study waits for the previous one to drain), in the order of
    # --studies; the budget search's probes jump the queue as soon as their inputs are measured,
    # and the curve points they are predicted from go first.
    specs = [s for study in args.studies if study != "budget" for s in plan[study]]
    more = None
    if "budget" in args.studies:
        first = [s for s in specs if s["model"] in args.budget_models
                 and s["height"] == args.default_short and s["width"] == args.default_long
                 and s["opts"] == list(args.extra_opts)]
        first.sort(key=lambda s: -s["batch"])  # the largest batch: the nearest to the budget
        specs = first + [s for s in specs if s not in first]
        more = functools.partial(budget_specs, store, args, first)
    runner.run(specs, more)
    print(f"[detector-memory] {time.time() - t0:.0f} s"
          + ("; stopped at --max-minutes: run again to continue" if runner.out_of_time else ""))
    return build_document(store, args, env, args.out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m odedet.benchmarks.detector_memory '<json spec>'")
    result = run_point(json.loads(sys.argv[1]))
    print(_RESULT_TAG + json.dumps(result), flush=True)

"""One detection run, from config to measured figures: shared by tools/quickstart.py and the
study (odedet/benchmarks/study.py).

* :func:`scale_schedule`: a shorter (or longer) schedule with the LR steps and warm-up scaled;
* :func:`train_and_evaluate`: seed, train with odedet's Trainer (optionally resuming and with a
  wall-clock budget per call), evaluate through ``Trainer.test``, return the figures;
* :class:`TrainTimer`: wall time of the training iterations alone, accumulated across resumed
  pieces in ``<OUTPUT_DIR>/train_time.json``;
* :class:`BudgetStop`: raised out of training when a piece's budget is used up (a checkpoint
  has been written; ``resume=True`` continues from it).
"""
from __future__ import annotations

import json
import os
import time

from detectron2.engine import HookBase
from detectron2.utils.env import seed_all_rng

from .atomic_io import atomic_write_text
from .trainer import Trainer

TIME_FILE = "train_time.json"


class BudgetStop(Exception):
    """Training stopped after its wall-clock budget; the checkpoint ``path`` resumes it."""

    def __init__(self, iteration: int, path: str):
        super().__init__(f"training budget used up after iteration {iteration}; checkpoint "
                         f"{path} (resume to continue)")
        self.iteration, self.path = iteration, path


def scale_schedule(cfg, max_iter: int) -> None:
    """Set SOLVER.MAX_ITER to ``max_iter`` with the LR steps and warm-up scaled alike (unfrozen
    ``cfg``)."""
    scale = max_iter / cfg.SOLVER.MAX_ITER
    cfg.SOLVER.STEPS = tuple(sorted({int(s * scale) for s in cfg.SOLVER.STEPS} - {0}))
    cfg.SOLVER.WARMUP_ITERS = int(cfg.SOLVER.WARMUP_ITERS * scale)
    cfg.SOLVER.MAX_ITER = max_iter


class TrainTimer(HookBase):
    """Wall time of the training iterations alone (evaluation runs in after_train, later).

    ``seconds``/``iterations`` cover this process's iterations; ``total_seconds`` /
    ``total_iterations`` add the earlier pieces of a resumed run, read from and written (every
    ``period`` iterations and at the end, atomically) to ``<OUTPUT_DIR>/train_time.json``.
    Iterations re-run after a resume count again: s/iter stays the cost of one iteration."""

    def __init__(self, output_dir: str | None = None, period: int = 20):
        self.path = os.path.join(output_dir, TIME_FILE) if output_dir else None
        self.period = period
        self.before = dict(seconds=0.0, iterations=0)
        if self.path and os.path.isfile(self.path):
            with open(self.path) as f:
                self.before = json.load(f)
        self.iterations = 0

    def before_train(self):
        self.start = self.last_step = time.perf_counter()

    def after_step(self):
        self.last_step = time.perf_counter()
        self.iterations += 1
        if self.iterations % self.period == 0:
            self.write()

    def after_train(self):
        self.end = time.perf_counter()
        self.write()

    @property
    def seconds(self) -> float:
        return self.last_step - self.start

    @property
    def total_seconds(self) -> float:
        return self.before["seconds"] + self.seconds

    @property
    def total_iterations(self) -> int:
        return self.before["iterations"] + self.iterations

    def write(self):
        if self.path:
            atomic_write_text(self.path, json.dumps(dict(
                seconds=self.total_seconds, iterations=self.total_iterations)))


class _Budget(HookBase):
    """After the step that exceeds ``minutes`` of training: checkpoint, then BudgetStop."""

    def __init__(self, minutes: float):
        self.seconds = 60.0 * minutes

    def before_train(self):
        self.start = time.perf_counter()

    def after_step(self):
        it = self.trainer.iter
        if time.perf_counter() - self.start < self.seconds or it + 1 >= self.trainer.max_iter:
            return
        name = f"model_{it:07d}"
        self.trainer.checkpointer.save(name, iteration=it)
        raise BudgetStop(it, os.path.join(self.trainer.cfg.OUTPUT_DIR, name + ".pth"))


def _results_of(cfg, results: dict) -> dict:
    return next(iter(results.values())) if cfg.DATASETS.TEST[0] in results else results


def train_and_evaluate(cfg, *, resume: bool = False, budget_min: float | None = None,
                       extra_hooks=()) -> dict:
    """Train ``cfg`` (from scratch, or from OUTPUT_DIR's last checkpoint with ``resume``),
    evaluate through Trainer.test, return the figures (``bbox``/``prf1``: the evaluators'
    full dicts; ``model``: the trained module). With ``budget_min``, raises :class:`BudgetStop`
    once that many minutes of training have passed (after checkpointing)."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    # As detectron2's default_setup does: a fixed SEED makes the data order and augmentation
    # reproducible (model initialisation already is); SEED < 0 draws one.
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    timer = TrainTimer(cfg.OUTPUT_DIR if resume else None)
    hooks = [timer, *extra_hooks]
    if budget_min is not None:
        hooks.append(_Budget(budget_min))
    trainer.register_hooks(hooks)
    trainer.train()
    results = getattr(trainer, "_last_eval_results", None) or Trainer.test(cfg, trainer.model)
    results = _results_of(cfg, results)
    history = trainer.storage.histories()
    nfe = history["nfe_forward"].global_avg() if "nfe_forward" in history else 0.0
    model = getattr(trainer.model, "module", trainer.model)
    return dict(
        AP=results["bbox"]["AP"], AP50=results["bbox"]["AP50"],
        P=results["prf1"]["precision"], R=results["prf1"]["recall"], F1=results["prf1"]["F1"],
        params=sum(p.numel() for p in model.parameters()),
        train_s=timer.total_seconds, eval_s=timer.end - timer.last_step,
        # trainer.max_iter: the schedule as run (SOLVER.TIME_BUDGET may have refitted it).
        iters=trainer.max_iter, recipe_iters=cfg.SOLVER.MAX_ITER,
        iters_timed=timer.total_iterations,
        budget=trainer.budget.summary if trainer.budget is not None else None,
        s_per_iter=timer.total_seconds / max(timer.total_iterations, 1),
        nfe_forward_per_iter=nfe, bbox=results["bbox"], prf1=results["prf1"], model=model,
    )

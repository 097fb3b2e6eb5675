"""A wall-clock training budget: fit the schedule to the machine's measured speed.

A recipe's ``SOLVER.MAX_ITER`` is sized for the machine it was tuned on; on a machine twice as
slow it takes twice as long. With ``SOLVER.TIME_BUDGET.MINUTES > 0``, :class:`TrainingBudget`
times the first iterations (after ``UNTIMED_ITERS`` warm-up iterations: data-loader start-up,
allocator growth), and if the recipe does not fit the budget it shortens the whole schedule in
proportion: ``MAX_ITER``, ``SOLVER.STEPS`` and ``SOLVER.WARMUP_ITERS`` are rescaled, and the LR
scheduler is rebuilt from the rescaled config (through the trainer's own ``build_lr_scheduler``),
so a cosine schedule still ends at 0 and step decays still happen, just earlier. The speed is
re-measured every ``RECHECK_FRACTION`` of the schedule and the fit corrected if the machine got
slower or faster (never beyond the recipe's own ``MAX_ITER``: the budget only shortens).

The fitted schedule is part of the trainer's checkpoint (a hook state), so ``--resume`` continues
the fitted schedule rather than the recipe's. The training loop must re-read ``trainer.max_iter``
after each step: :class:`ResizableTrainLoop` (odedet's ``Trainer`` has it) does.
"""
from __future__ import annotations

import logging
import math
import time

import detectron2.utils.comm as comm
from detectron2.config import CfgNode as CN
from detectron2.engine import HookBase, TrainerBase
from detectron2.utils.events import EventStorage

logger = logging.getLogger(__name__)


def add_budget_config(cfg):
    """SOLVER.TIME_BUDGET: fit the schedule into a wall-clock training budget."""
    _C = cfg
    _C.SOLVER.TIME_BUDGET = CN()
    # Wall-clock budget of the training loop, minutes (evaluation after training not included).
    # 0 disables: the recipe's SOLVER.MAX_ITER runs as configured.
    _C.SOLVER.TIME_BUDGET.MINUTES = 0.0
    # Iterations run before the clock starts (data-loader start-up, first allocations).
    _C.SOLVER.TIME_BUDGET.UNTIMED_ITERS = 5
    # Iterations timed for the first fit.
    _C.SOLVER.TIME_BUDGET.TIMED_ITERS = 20
    # Re-measure the speed every this fraction of the schedule and correct the fit when the
    # projected end misses the budget by more than 2% (late) or 5% (early, if shortened). 0: fit
    # once.
    _C.SOLVER.TIME_BUDGET.RECHECK_FRACTION = 0.1


def scaled_schedule(max_iter: int, steps, warmup_iters: int, new_max_iter: int):
    """(STEPS, WARMUP_ITERS) of the recipe rescaled from ``max_iter`` to ``new_max_iter``
    iterations: every milestone and the warm-up keep their fraction of the schedule."""
    scale = new_max_iter / max_iter
    new_steps = sorted({max(1, round(s * scale)) for s in steps if s <= max_iter})
    return tuple(s for s in new_steps if s < new_max_iter), int(round(warmup_iters * scale))


class ResizableTrainLoop(TrainerBase):
    """detectron2's ``TrainerBase.train`` loop, re-reading ``self.max_iter`` after every step
    so that a hook can shorten (or lengthen) training while it runs. Identical otherwise; mix in
    after a ``DefaultTrainer`` (``class T(DefaultTrainer, ResizableTrainLoop)``) so that
    ``DefaultTrainer.train``'s ``super().train(...)`` lands here."""

    def train(self, start_iter: int, max_iter: int):
        log = logging.getLogger("detectron2.engine.train_loop")
        log.info("Starting training from iteration {}".format(start_iter))
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                it = start_iter
                while it < self.max_iter:
                    self.iter = it
                    self.before_step()
                    self.run_step()
                    self.after_step()
                    it += 1
                # As detectron2's loop: iter == max_iter tells after_train training finished.
                self.iter = it if it > start_iter else start_iter + 1
            except Exception:
                log.exception("Exception during training:")
                raise
            finally:
                self.after_train()


class TrainingBudget(HookBase):
    """Fits ``trainer.max_iter`` and the LR schedule into ``minutes`` of training wall time.

    Register it first among the hooks (odedet's ``Trainer`` does, from the config) so that the
    LR-scheduler, checkpointer and writer hooks see the fitted schedule in the same step.
    ``clock`` is injectable (tests run on a fake clock). After training, :attr:`summary` says
    what was measured and fitted.
    """

    def __init__(self, minutes: float, untimed_iters: int = 5, timed_iters: int = 20,
                 recheck_fraction: float = 0.1, clock=time.perf_counter):
        if minutes <= 0:
            raise ValueError(f"SOLVER.TIME_BUDGET.MINUTES must be > 0, got {minutes}")
        self.budget_s = float(minutes) * 60
        self.untimed = max(0, int(untimed_iters))
        self.timed = max(1, int(timed_iters))
        self.recheck_fraction = float(recheck_fraction)
        self.clock = clock
        self.fitted = None  # dict once fitted: max_iter, steps, warmup_iters, s_per_iter
        self.fits = []  # every (re)fit: iteration, s_per_iter, max_iter
        self._elapsed_before = 0.0  # training seconds of earlier runs (resumed from a checkpoint)
        self._t0 = None

    @classmethod
    def from_config(cls, cfg, **kwargs):
        b = cfg.SOLVER.TIME_BUDGET
        return cls(b.MINUTES, b.UNTIMED_ITERS, b.TIMED_ITERS, b.RECHECK_FRACTION, **kwargs)

    # -- the recipe and the elapsed time -----------------------------------------------------
    def _recipe(self):
        s = self.trainer.cfg.SOLVER
        return int(s.MAX_ITER), tuple(s.STEPS), int(s.WARMUP_ITERS)

    def elapsed(self) -> float:
        """Training seconds so far, earlier (resumed) runs included."""
        now = self.clock() if self._t0 is not None else None
        return self._elapsed_before + (now - self._t0 if now is not None else 0.0)

    # -- hook interface -----------------------------------------------------------------------
    def before_train(self):
        self._t0 = self.clock()
        self._mark = None  # (iteration, time) the current speed measurement started at
        self._next_check = None
        start = self.trainer.iter
        if self.untimed == 0:
            self._mark = (start - 1, self._t0)
        recipe_max = self._recipe()[0]
        if self.fitted is not None:  # resumed: keep the fitted schedule of the checkpoint
            self._apply(self.fitted["max_iter"])
            logger.info(f"Time budget {self.budget_s / 60:g} min: resuming the fitted schedule "
                        f"of {self.fitted['max_iter']} iterations (recipe {recipe_max}), "
                        f"{self._elapsed_before / 60:.1f} min already trained")
        elif recipe_max - start < self.untimed + self.timed + 1:
            logger.info(f"Time budget {self.budget_s / 60:g} min: schedule too short to time "
                        f"({recipe_max - start} iterations), running it as configured")
        else:
            logger.info(f"Time budget {self.budget_s / 60:g} min: timing iterations "
                        f"{start + self.untimed}-{start + self.untimed + self.timed - 1} to fit "
                        f"the schedule (recipe: {recipe_max} iterations)")

    def after_step(self):
        it, now = self.trainer.iter, self.clock()
        done = it - self.trainer.start_iter + 1  # iterations completed in this run
        if self._mark is None:
            if done == self.untimed:
                self._mark = (it, now)
            return
        n = it - self._mark[0]
        if self._next_check is None:  # first measurement of this run
            if n < self.timed:
                return
            s_iter = (now - self._mark[1]) / n
            if self.fitted is None:
                self._fit(it, s_iter, first=True)
            else:
                self._check(it, s_iter)
        elif it >= self._next_check:
            self._check(it, (now - self._mark[1]) / n)
        else:
            return
        self._mark = (it, now)
        period = max(self.timed, int(self.recheck_fraction * self.trainer.max_iter))
        self._next_check = it + period if self.recheck_fraction > 0 else math.inf

    # -- fitting ------------------------------------------------------------------------------
    def _synced(self, s_iter):
        """(s/iter, elapsed) agreed by every process: the slowest. Fits and checks happen at
        the same iterations on every rank (they depend on iteration counts only), so each rank
        fits the same schedule and distributed training stays in step."""
        elapsed = self.elapsed()
        if comm.get_world_size() > 1:
            gathered = comm.all_gather((s_iter, elapsed))
            s_iter, elapsed = max(g[0] for g in gathered), max(g[1] for g in gathered)
        return s_iter, elapsed

    def _projected(self, it, s_iter, max_iter, elapsed):
        return elapsed + (max_iter - it - 1) * s_iter

    def _check(self, it, s_iter):
        """Re-fit when the projected end misses the budget by > 2% late or > 5% early."""
        max_iter = self.trainer.max_iter
        if it >= 0.9 * max_iter:  # too late to re-fit without a jumpy schedule
            return
        s_iter, elapsed = self._synced(s_iter)
        projected = self._projected(it, s_iter, max_iter, elapsed)
        recipe_max = self._recipe()[0]
        if projected > 1.02 * self.budget_s or (projected < 0.95 * self.budget_s
                                                and max_iter < recipe_max):
            self._fit(it, s_iter, first=False, elapsed=elapsed)

    def _fit(self, it, s_iter, first, elapsed=None):
        if elapsed is None:
            s_iter, elapsed = self._synced(s_iter)
        recipe_max, _, _ = self._recipe()
        remaining = self.budget_s - elapsed
        fit = it + 1 + int(max(0.0, remaining) / s_iter) if s_iter > 0 else recipe_max
        new_max = max(it + 2, min(recipe_max, fit))
        self.fits.append(dict(iteration=it, s_per_iter=s_iter, max_iter=new_max))
        old_max = self.trainer.max_iter
        projected = self._projected(it, s_iter, new_max, elapsed)
        if first and new_max == recipe_max:
            logger.info(f"Time budget {self.budget_s / 60:g} min: {s_iter:.3f} s/iter measured, "
                        f"the recipe's {recipe_max} iterations fit (about {projected / 60:.1f} "
                        f"min of training)")
        elif new_max != old_max:
            _, steps, warmup = self._recipe()
            new_steps, new_warmup = scaled_schedule(recipe_max, steps, warmup, new_max)
            logger.info(f"Time budget {self.budget_s / 60:g} min: {s_iter:.3f} s/iter measured "
                        f"at iteration {it}; schedule fitted: MAX_ITER {old_max} -> {new_max}, "
                        f"STEPS {steps} -> {new_steps}, WARMUP_ITERS {warmup} -> {new_warmup} "
                        f"(recipe scaled by {new_max / recipe_max:.3f}; about "
                        f"{projected / 60:.1f} min of training)")
        self.fitted = dict(max_iter=new_max, s_per_iter=s_iter)
        if new_max != old_max:
            self._apply(new_max)
        else:
            _, steps, warmup = self._recipe()
            new_steps, new_warmup = scaled_schedule(recipe_max, steps, warmup, new_max)
            self.fitted.update(steps=new_steps, warmup_iters=new_warmup)

    def _apply(self, max_iter):
        """Make ``max_iter`` (and the recipe's schedule scaled to it) the trainer's schedule."""
        t = self.trainer
        recipe_max, steps, warmup = self._recipe()
        new_steps, new_warmup = scaled_schedule(recipe_max, steps, warmup, max_iter)
        self.fitted.update(steps=new_steps, warmup_iters=new_warmup)
        t.max_iter = max_iter
        for h in t._hooks:  # hooks that captured max_iter when they started
            if hasattr(h, "max_iter") and hasattr(h, "step") and h is not self:
                h.max_iter = max_iter  # PeriodicCheckpointer: saves model_final at the new end
            for w in getattr(h, "_writers", ()):
                if hasattr(w, "_max_iter"):
                    w._max_iter = max_iter  # CommonMetricPrinter's ETA
        self._rescale_lr(max_iter, new_steps, new_warmup)

    def _rescale_lr(self, max_iter, steps, warmup):
        t = self.trainer
        sched = getattr(t, "scheduler", None)
        if sched is None or not hasattr(sched, "_multiplier"):
            logger.warning(f"Time budget: LR scheduler {type(sched).__name__} is not detectron2's "
                           f"LRMultiplier; only MAX_ITER was changed")
            return
        cfg = t.cfg.clone()
        cfg.defrost()
        cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS = max_iter, steps, warmup
        groups = t.optimizer.param_groups
        lrs = [g["lr"] for g in groups]
        fresh = t.build_lr_scheduler(cfg, t.optimizer)  # the trainer's own schedule family
        for g, lr in zip(groups, lrs):  # building it reset the LRs; keep the current ones
            g["lr"] = lr
        sched._multiplier, sched._max_iter = fresh._multiplier, fresh._max_iter
        # The LRs of the iteration the scheduler stands at, on the fitted schedule.
        new = sched.get_lr()
        for g, lr in zip(groups, new):
            g["lr"] = lr
        sched._last_lr = list(new)

    # -- checkpointed state --------------------------------------------------------------------
    def state_dict(self):
        return {"fitted": self.fitted, "elapsed": self.elapsed(), "fits": self.fits}

    def load_state_dict(self, state):
        self.fitted = state.get("fitted")
        self._elapsed_before = float(state.get("elapsed", 0.0))
        self.fits = list(state.get("fits", []))

    @property
    def summary(self) -> dict:
        """Budget, recipe and fitted iterations, measured s/iter (JSON-friendly)."""
        recipe_max = self._recipe()[0] if self.trainer is not None else None
        s = (self.fits[-1]["s_per_iter"] if self.fits else None)
        return dict(budget_min=self.budget_s / 60, recipe_max_iter=recipe_max,
                    max_iter=int(self.trainer.max_iter), measured_s_per_iter=s,
                    fits=self.fits, train_seconds=self.elapsed())

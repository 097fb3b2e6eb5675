"""The wall-clock training budget (odedet.engine.budget) on a fake clock: no test here waits
for or measures real time. A fake clock advances only inside each training step, by the
step's simulated duration, so 'machines' of any speed run in milliseconds."""
from __future__ import annotations

import logging
import math
import os
import weakref

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import hooks
from detectron2.solver import build_lr_scheduler

from odedet import get_odedet_cfg
from odedet.config_check import ConfigError, check_config
from odedet.engine.budget import ResizableTrainLoop, TrainingBudget, scaled_schedule


class FakeClock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


class Killed(Exception):
    pass


class FakeTrainer(ResizableTrainLoop):
    """The parts of DefaultTrainer the budget uses (cfg, optimizer, scheduler, checkpointer,
    LRScheduler and PeriodicCheckpointer hooks, build_lr_scheduler), with a step that only
    advances the fake clock by ``speed(iteration)`` seconds and records the LR it ran with."""

    def __init__(self, cfg, out_dir, speed, clock, kill_at=None):
        super().__init__()
        os.makedirs(out_dir, exist_ok=True)
        self.cfg = cfg
        self.model = torch.nn.Linear(2, 2)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.SOLVER.BASE_LR)
        self.scheduler = self.build_lr_scheduler(cfg, self.optimizer)
        self.checkpointer = DetectionCheckpointer(self.model, out_dir,
                                                  trainer=weakref.proxy(self))
        self.start_iter, self.max_iter = 0, cfg.SOLVER.MAX_ITER
        self.speed, self.clock, self.kill_at = speed, clock, kill_at
        self.lrs = {}
        self.budget = (TrainingBudget.from_config(cfg, clock=clock)
                       if cfg.SOLVER.TIME_BUDGET.MINUTES > 0 else None)
        self.register_hooks([
            self.budget, hooks.LRScheduler(),
            hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD),
        ])

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    def resume(self):
        self.checkpointer.resume_or_load("", resume=True)
        self.start_iter = self.iter + 1

    def run_step(self):
        if self.iter == self.kill_at:
            raise Killed()
        self.lrs[self.iter] = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()  # (no gradients: nothing changes; keeps torch's order check happy)
        self.clock.t += self.speed(self.iter)

    def run(self):
        self.train(self.start_iter, self.max_iter)
        return self


def make_cfg(minutes, max_iter=400, sched="WarmupCosineLR", steps=(), warmup=40,
             untimed=5, timed=20, recheck=0.1, period=100000):
    cfg = get_odedet_cfg()
    s = cfg.SOLVER
    s.BASE_LR, s.MAX_ITER, s.LR_SCHEDULER_NAME, s.STEPS = 0.1, max_iter, sched, tuple(steps)
    s.WARMUP_ITERS, s.CHECKPOINT_PERIOD = warmup, period
    b = s.TIME_BUDGET
    b.MINUTES, b.UNTIMED_ITERS, b.TIMED_ITERS, b.RECHECK_FRACTION = minutes, untimed, timed, recheck
    return cfg


def constant(seconds):
    return lambda it: seconds


def test_scaled_schedule_keeps_fractions():
    assert scaled_schedule(850, (620, 780), 100, 425) == ((310, 390), 50)
    assert scaled_schedule(1000, (500,), 0, 1000) == ((500,), 0)
    # milestones that would land at or past the new end are dropped, duplicates merged
    assert scaled_schedule(100, (1, 2, 99), 10, 10) == ((1,), 1)


def test_recipe_that_fits_runs_unchanged(tmp_path, caplog):
    cfg = make_cfg(minutes=1.0, max_iter=400)  # 400 x 0.1 s = 40 s < 60 s
    reference = FakeTrainer(make_cfg(0.0, max_iter=400), str(tmp_path / "r"), constant(0.1),
                            FakeClock()).run()  # no budget
    with caplog.at_level(logging.INFO, logger="odedet.engine.budget"):
        t = FakeTrainer(cfg, str(tmp_path), constant(0.1), FakeClock()).run()
    assert t.iter == 400 and len(t.lrs) == 400
    assert t.lrs == pytest.approx(reference.lrs)
    assert "the recipe's 400 iterations fit" in caplog.text
    assert t.budget.summary["max_iter"] == 400
    assert t.budget.summary["measured_s_per_iter"] == pytest.approx(0.1)


def test_slow_machine_fits_a_cosine_schedule_that_still_finishes(tmp_path, caplog):
    cfg = make_cfg(minutes=2.0, max_iter=400, warmup=40)  # recipe: 400 s at 1 s/iter
    with caplog.at_level(logging.INFO, logger="odedet.engine.budget"):
        t = FakeTrainer(cfg, str(tmp_path), constant(1.0), FakeClock()).run()
    assert t.iter == t.max_iter == 120 == len(t.lrs)  # 120 s budget / 1 s per iteration
    assert t.budget.elapsed() == pytest.approx(120.0)
    assert "schedule fitted: MAX_ITER 400 -> 120" in caplog.text
    assert "WARMUP_ITERS 40 -> 12" in caplog.text
    # The fitted cosine reaches (nearly) zero at the fitted end instead of being cut at 30%:
    lrs = [t.lrs[i] for i in range(120)]
    assert lrs[-1] < 0.002 * 0.1 + 1e-12
    # iterations 0-24 ran the recipe's warm-up (over 40 iterations); from the fit on, the LR is
    # on the fitted schedule, past its 12-iteration warm-up already
    assert lrs[24] < lrs[25] and max(lrs) == lrs[25]
    # after the fit (iteration 24), the LR follows cos over the fitted 120 iterations exactly
    for i in range(30, 120):
        assert lrs[i] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * i / 120)), rel=1e-6)
    assert (tmp_path / "model_final.pth").is_file()  # the checkpointer saw the fitted end


def test_step_schedule_is_rescaled(tmp_path):
    cfg = make_cfg(minutes=1.0, max_iter=400, sched="WarmupMultiStepLR", steps=(300, 360),
                   warmup=0)
    t = FakeTrainer(cfg, str(tmp_path), constant(0.5), FakeClock()).run()
    assert t.max_iter == 120  # 60 s / 0.5 s
    assert t.budget.fitted["steps"] == (90, 108)
    assert t.lrs[89] == pytest.approx(0.1) and t.lrs[90] == pytest.approx(0.01)
    assert t.lrs[108] == pytest.approx(0.001)


def test_machine_that_slows_down_mid_run_is_refitted(tmp_path, caplog):
    # 0.5 s/iter for 60 iterations, then the machine gets busy: 1 s/iter.
    cfg = make_cfg(minutes=2.0, max_iter=1000, recheck=0.1)
    speed = lambda it: 0.5 if it < 60 else 1.0  # noqa: E731
    with caplog.at_level(logging.INFO, logger="odedet.engine.budget"):
        t = FakeTrainer(cfg, str(tmp_path), speed, FakeClock()).run()
    assert [f["max_iter"] for f in t.budget.fits][0] == 240  # first fit at 0.5 s/iter
    assert len(t.budget.fits) >= 2
    assert 0.95 * 120 <= t.budget.elapsed() <= 1.03 * 120  # kept the budget within 3%
    assert t.lrs[t.max_iter - 1] < 0.01 * 0.1  # and the schedule still ran to its end


def test_machine_that_speeds_up_is_refitted_up_to_the_recipe(tmp_path):
    cfg = make_cfg(minutes=1.0, max_iter=200, recheck=0.1)
    speed = lambda it: 1.0 if it < 30 else 0.1  # noqa: E731
    t = FakeTrainer(cfg, str(tmp_path), speed, FakeClock()).run()
    assert t.budget.fits[0]["max_iter"] == 60
    assert t.max_iter > 60 and t.max_iter <= 200  # lengthened again, never beyond the recipe
    assert t.budget.elapsed() <= 1.03 * 60


def test_resume_continues_the_fitted_schedule(tmp_path):
    cfg = make_cfg(minutes=2.0, max_iter=400, period=50)
    full = FakeTrainer(cfg, str(tmp_path / "full"), constant(1.0), FakeClock()).run()

    out = str(tmp_path / "killed")
    first = FakeTrainer(cfg, out, constant(1.0), FakeClock(), kill_at=75)
    with pytest.raises(Killed):
        first.run()  # checkpoint at iteration 49 (period 50), killed at 75
    second = FakeTrainer(cfg, out, constant(1.0), FakeClock(t=5000.0))
    second.resume()
    assert second.start_iter == 50 and second.budget.fitted["max_iter"] == 120
    second.run()
    assert second.iter == second.max_iter == full.max_iter == 120
    for i in range(50, 120):  # same LRs as the uninterrupted run
        assert second.lrs[i] == pytest.approx(full.lrs[i], rel=1e-9)
    # the budget counts the first run's training up to the checkpoint
    assert second.budget.elapsed() == pytest.approx(120.0)


def test_too_short_schedule_runs_as_configured(tmp_path, caplog):
    cfg = make_cfg(minutes=0.01, max_iter=10)
    with caplog.at_level(logging.INFO, logger="odedet.engine.budget"):
        t = FakeTrainer(cfg, str(tmp_path), constant(100.0), FakeClock()).run()
    assert t.iter == 10 and "too short to time" in caplog.text


def test_budget_keys_are_checked():
    cfg = get_odedet_cfg()
    assert cfg.SOLVER.TIME_BUDGET.MINUTES == 0  # off by default: recipes run as configured
    cfg.SOLVER.TIME_BUDGET.MINUTES = -1.0
    with pytest.raises(ConfigError, match="SOLVER.TIME_BUDGET.MINUTES"):
        check_config(cfg)

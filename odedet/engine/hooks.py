"""Training hooks for ODE models: NFE, solver settings and solver/end-time draws into detectron2's
event storage."""
from __future__ import annotations

import logging

from detectron2.engine import HookBase

from odedet.ode import iter_ode_blocks, nfe_counts, reset_nfe
from odedet.ode.training import apply_draw, clear_draw

logger = logging.getLogger(__name__)


class ODEStatsHook(HookBase):
    """Logs forward/backward NFE of each training iteration (summed over the model's ODE blocks)
    as ``nfe_forward``/``nfe_backward`` scalars (metrics.json, TensorBoard), and the solver
    settings once at the start. A model without ODE blocks logs nothing. Counters are reset
    before each step and read first thing after it (the Trainer puts this hook first), so
    evaluation's function evaluations never enter the training figures; ``Trainer.test`` logs
    those as ``eval_nfe_per_image/<dataset>``."""

    def before_train(self):
        model = _unwrap(self.trainer.model)
        self._blocks = list(iter_ode_blocks(model))
        for name, block in self._blocks:
            logger.info(
                f"ODE block {name}: train {block.train_solver.describe()}, "
                f"test {block.test_solver.describe()}, T={block.t_end:g}"
            )
        reset_nfe(model)
        self._settings_logged = False

    def _put_solver_settings(self):
        """Numeric solver settings of the first ODE block (the cfg gives every block the same)
        as ``ode/<phase>_<field>`` scalars, once; the method name is in the log and config.yaml."""
        block = self._blocks[0][1]
        values = {}
        for phase, opts in (("train", block.train_solver), ("test", block.test_solver)):
            for field in ("rtol", "atol", "step_size", "adjoint"):
                values[f"ode/{phase}_{field}"] = float(getattr(opts, field))
        self.trainer.storage.put_scalars(**values, smoothing_hint=False)
        self._settings_logged = True

    def before_step(self):
        # Forwards run between steps (evaluation, PreciseBN) are not this iteration's NFE.
        if self._blocks:
            reset_nfe(_unwrap(self.trainer.model))

    def after_step(self):
        if not self._blocks:
            return
        if not self._settings_logged:
            self._put_solver_settings()
        model = _unwrap(self.trainer.model)
        counts = nfe_counts(model)
        self.trainer.storage.put_scalars(
            nfe_forward=counts["forward"], nfe_backward=counts["backward"], smoothing_hint=False
        )
        reset_nfe(model)


def _unwrap(model):
    return getattr(model, "module", model)


class ODETrainingHook(HookBase):
    """Applies MODEL.ODE's solver sampling / random end time before every training step
    (:func:`odedet.ode.training.apply_draw`, seeded by SEED and the iteration) and logs the
    draws: ``ode/train_solver`` (index into MODEL.ODE.TRAIN_SOLVERS, per block under
    TRAIN_SAMPLE_PER "block") and ``ode/train_t_end`` (mean over blocks) scalars, plus the list
    of settings once at the start. Idle (logs nothing) when nothing is sampled."""

    def __init__(self, options):
        self.options = options

    def before_train(self):
        opts = self.options
        self._model = _unwrap(self.trainer.model)
        self._names = [name for name, _ in iter_ode_blocks(self._model)]
        if opts.samples and self._names:
            choices = ", ".join(f"{i}={c}" for i, c in enumerate(opts.solvers)) or "off"
            logger.info(
                f"ODE training draws per {opts.sample_per} (seed {opts.seed}): solvers [{choices}]"
                f", end time T_END +- {opts.t_end_spread:g}"
            )
        if opts.regulariser_weights:
            logger.info(f"ODE regularisers (loss weights): {opts.regulariser_weights}, "
                        f"Hutchinson noise {opts.noise}")

    def before_step(self):
        draws = apply_draw(self._model, self.options, self.trainer.iter)
        if not draws:
            return
        values = {"ode/train_t_end": sum(t for _, t in draws) / len(draws)}
        if self.options.solvers:
            if self.options.sample_per == "iteration":
                values["ode/train_solver"] = draws[0][0]
            else:
                for name, (idx, _) in zip(self._names, draws):
                    values[f"ode/train_solver/{name}"] = idx
        self.trainer.storage.put_scalars(**values, smoothing_hint=False)

    def after_train(self):
        clear_draw(self._model)

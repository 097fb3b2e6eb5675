"""odedet's DefaultTrainer: evaluators and mappers by dataset / meta-architecture, NFE logging."""
from __future__ import annotations

import weakref

from detectron2.data import build_detection_test_loader
from detectron2.engine import DefaultTrainer
from detectron2.utils import comm

from odedet.config_check import check_config
from odedet.data.mappers import build_mapper
from odedet.data.robust_mapper import build_train_loader
from odedet.evaluation.build import build_evaluators
from odedet.ode import ODESolverError, nfe_counts
from odedet.ode.training import ODETrainingOptions, attach_ode_training

from .budget import ResizableTrainLoop, TrainingBudget
from .checkpoint import OdedetCheckpointer
from .guards import CurrentInputs, IterationContext, evaluation_error
from .hooks import ODEStatsHook, ODETrainingHook
from .launch import device_aware_ddp
from .optim import build_optimizer


class Trainer(IterationContext, DefaultTrainer, ResizableTrainLoop):
    """detectron2's DefaultTrainer with odedet's evaluator/mapper factories and NFE logging,
    atomic/weights-only checkpoints (OdedetCheckpointer), config checks at model build,
    solver/NaN errors that name the iteration (IterationContext), MODEL.ODE's training options
    (solver sampling, random end time, RNODE regulariser losses; odedet.ode.training) and an
    optional wall-clock training budget (SOLVER.TIME_BUDGET.MINUTES: the schedule is fitted to
    the measured speed; ResizableTrainLoop lets the fitted MAX_ITER take effect mid-run)."""

    def __init__(self, cfg):
        # detectron2 v0.6 wraps the model in DDP with device_ids, which CPU (gloo) rejects.
        with device_aware_ddp():
            super().__init__(cfg)

    @classmethod
    def build_model(cls, cfg):
        check_config(cfg)  # impossible values fail here, naming the key, before any training
        model = super().build_model(cfg)
        # Regulariser losses (MODEL.ODE.KINETIC_WEIGHT / JACOBIAN_WEIGHT) join the loss dict.
        return attach_ode_training(model, ODETrainingOptions.from_cfg(cfg))

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)  # SOLVER.OPTIMIZER: SGD or AdamW

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluators(cfg, dataset_name, output_folder)

    @classmethod
    def build_train_loader(cls, cfg):
        # Bad samples are re-sampled by odedet (detectron2 v0.6's retry breaks on Python 3.11).
        return build_train_loader(cfg, build_mapper(cfg, True))

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """detectron2's ``DefaultTrainer.test``, one dataset at a time, so that a solver error
        during evaluation names the dataset and the images of the batch (ODESolverError)."""
        from collections import OrderedDict

        from detectron2.evaluation import DatasetEvaluator

        names = list(cfg.DATASETS.TEST)
        if isinstance(evaluators, DatasetEvaluator):
            evaluators = [evaluators]
        if evaluators is not None and len(evaluators) != len(names):
            raise ValueError(f"{len(names)} test datasets but {len(evaluators)} evaluators")
        results = OrderedDict()
        for idx, name in enumerate(names):
            one = cfg.clone()
            one.defrost()
            one.DATASETS.TEST = (name,)
            inner = getattr(model, "module", model)
            watch = CurrentInputs(inner)
            nfe_before = nfe_counts(inner)["forward"]
            try:
                res = super().test(one, model, None if evaluators is None else [evaluators[idx]])
            except ODESolverError as e:
                raise evaluation_error(e, name, watch.files) from e
            finally:
                watch.remove()
            _log_eval_nfe(name, nfe_counts(inner)["forward"] - nfe_before, watch.images)
            results[name] = res
        if len(results) == 1:
            results = list(results.values())[0]
        return results

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=build_mapper(cfg, False))

    # detectron2 v0.6's DefaultTrainer checkpoints only the iteration and hook states, not the
    # optimizer (its SimpleTrainer's state): a resumed run would restart SGD momentum from zero.
    def state_dict(self):
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:  # absent from checkpoints of plain detectron2 v0.6
            self._trainer.load_state_dict(state_dict["_trainer"])

    def build_hooks(self):
        # DefaultTrainer.__init__ made a plain DetectionCheckpointer just before calling this;
        # swap in the atomic, weights-only one before the PeriodicCheckpointer hook captures it.
        self.checkpointer = OdedetCheckpointer(
            self._trainer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        hooks = super().build_hooks()
        # ODEStatsHook before the EvalHook / PreciseBN: its after_step reads the NFE of the
        # training step alone (evaluation NFE are logged by ``test``).
        hooks.insert(0, ODEStatsHook())
        # Solver / end-time draws of MODEL.ODE.TRAIN_SOLVERS / T_END_SPREAD before every step;
        # with SEED < 0 every rank still draws the same settings (a shared random seed).
        seed = self.cfg.SEED if self.cfg.SEED >= 0 else comm.shared_random_seed()
        hooks.insert(0, ODETrainingHook(ODETrainingOptions.from_cfg(self.cfg, seed=seed)))
        self.budget = None
        if self.cfg.SOLVER.TIME_BUDGET.MINUTES > 0:
            # First, so the LR-scheduler, checkpointer and writer hooks see a fitted schedule in
            # the step it is fitted; registered before resume_or_load, so --resume restores it.
            self.budget = TrainingBudget.from_config(self.cfg)
            hooks.insert(0, self.budget)
        return hooks


def _log_eval_nfe(dataset: str, nfe: int, images: int) -> None:
    """Evaluation's forward NFE, apart from the training NFE: the log, and ``eval_nfe_per_image/
    <dataset>`` in the event storage when evaluating inside training (metrics.json)."""
    import logging

    from detectron2.utils.events import _CURRENT_STORAGE_STACK

    if not images or not nfe:
        return
    logging.getLogger(__name__).info(
        f"ODE forward NFE during evaluation on {dataset}: {nfe} over {images} image(s) "
        f"({nfe / images:.1f} per image)")
    if _CURRENT_STORAGE_STACK:
        _CURRENT_STORAGE_STACK[-1].put_scalar(f"eval_nfe_per_image/{dataset}", nfe / images,
                                              smoothing_hint=False)

"""odedet's DefaultTrainer: evaluators and mappers by dataset / meta-architecture, NFE logging."""
from __future__ import annotations

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer

from odedet.data.mappers import build_mapper
from odedet.evaluation.build import build_evaluators

from .hooks import ODEStatsHook


class Trainer(DefaultTrainer):
    """detectron2's DefaultTrainer with odedet's evaluator/mapper factories and NFE logging."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluators(cfg, dataset_name, output_folder)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=build_mapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=build_mapper(cfg, False))

    def build_hooks(self):
        hooks = super().build_hooks()
        # Before the writers (last), so each iteration's NFE is in storage when they write.
        hooks.insert(len(hooks) - 1, ODEStatsHook())
        return hooks

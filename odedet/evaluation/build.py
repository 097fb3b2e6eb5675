"""Evaluators chosen from a dataset's metadata, with one factory per ``evaluator_type``.

Each application registers a factory for the evaluator types its datasets declare
(``MetadataCatalog.get(name).evaluator_type``): detection registers "coco" and "pascal_voc",
depth registers "depth", and so on. :func:`build_evaluators` is what the trainer calls.
"""
from __future__ import annotations

import os
from typing import Callable

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluators

# evaluator_type -> factory(cfg, dataset_name, output_dir) -> list of DatasetEvaluator
EVALUATOR_FACTORIES: dict[str, Callable] = {}


def register_evaluator_factory(evaluator_type: str):
    """Decorator: ``@register_evaluator_factory("coco") def f(cfg, name, out): return [...]``."""

    def deco(fn):
        if evaluator_type in EVALUATOR_FACTORIES:
            raise KeyError(f"an evaluator factory for {evaluator_type!r} is already registered")
        EVALUATOR_FACTORIES[evaluator_type] = fn
        return fn

    return deco


def build_evaluators(cfg, dataset_name: str, output_dir: str | None = None) -> DatasetEvaluators:
    if output_dir is None:
        output_dir = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    etype = getattr(meta, "evaluator_type", None)
    if etype is None:
        raise KeyError(
            f"dataset {dataset_name!r} has no evaluator_type in its metadata; set "
            f"MetadataCatalog.get({dataset_name!r}).evaluator_type (one of "
            f"{sorted(EVALUATOR_FACTORIES)})"
        )
    if etype not in EVALUATOR_FACTORIES:
        raise KeyError(
            f"no evaluator for evaluator_type {etype!r} of dataset {dataset_name!r}; "
            f"known: {sorted(EVALUATOR_FACTORIES)}"
        )
    return DatasetEvaluators(EVALUATOR_FACTORIES[etype](cfg, dataset_name, output_dir))

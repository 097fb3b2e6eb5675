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

from odedet.registry import keyed_register

# evaluator_type -> factory(cfg, dataset_name, output_dir) -> list of DatasetEvaluator
EVALUATOR_FACTORIES: dict[str, Callable] = {}


# Decorator: ``@register_evaluator_factory("coco") def f(cfg, name, out): return [...]``.
register_evaluator_factory = keyed_register(EVALUATOR_FACTORIES, "an evaluator factory")


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

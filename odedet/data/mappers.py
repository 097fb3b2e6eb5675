"""Dataset mappers chosen by meta-architecture, so one trainer serves detection and depth."""
from __future__ import annotations

from typing import Callable

from odedet.registry import keyed_register

from .robust_mapper import build_checked_mapper

# MODEL.META_ARCHITECTURE -> factory(cfg, is_train) -> mapper callable
MAPPER_FACTORIES: dict[str, Callable] = {}


register_mapper_factory = keyed_register(MAPPER_FACTORIES, "a mapper factory")


def build_mapper(cfg, is_train: bool):
    """The registered mapper for ``cfg.MODEL.META_ARCHITECTURE``; detectron2's DatasetMapper
    (boxes, masks, keypoints as configured) for every other meta-architecture, reading images
    through odedet.data.image_io (bad files: logged skip in training, error in evaluation)."""
    factory = MAPPER_FACTORIES.get(cfg.MODEL.META_ARCHITECTURE)
    if factory is None:
        return build_checked_mapper(cfg, is_train)
    return factory(cfg, is_train)

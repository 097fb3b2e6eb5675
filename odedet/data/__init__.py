"""Datasets and mappers. Importing this package registers odedet's datasets."""
from . import d2_loaders  # noqa: F401  (safe proposal .pkl loading, VOC splits of any size)
from .mappers import build_mapper, register_mapper_factory
from . import datasets  # noqa: F401,E402  (COCO/VOC names from CLI/env, validation)
from . import synthetic_shapes  # noqa: F401,E402  (odedet_shapes_train/val)
from . import synthetic_digits  # noqa: F401,E402  (odedet_digits_train/val)
from . import depth  # noqa: F401,E402  (depth datasets and the DepthEstimator mapper)

__all__ = ["build_mapper", "register_mapper_factory"]

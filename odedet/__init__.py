"""odedet: Neural-ODE ResNet backbones (Chen et al. 2018) as a Detectron2 plugin.

``import odedet`` registers every odedet component (backbones, ROI heads, meta-architectures,
datasets) in detectron2's registries, once. ``odedet.add_odedet_config(cfg)`` adds odedet's
config keys to a detectron2 config.
"""
__version__ = "0.1.0"

from .config import add_odedet_config, get_odedet_cfg  # noqa: E402,F401
from . import _register  # noqa: E402,F401  (side effect: registration, idempotent)

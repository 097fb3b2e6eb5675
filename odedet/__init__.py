"""odedet: Neural-ODE ResNet backbones (Chen et al. 2018) as a Detectron2 plugin.

``import odedet`` registers every odedet component (backbones, ROI heads, meta-architectures,
datasets) in detectron2's registries, once. ``odedet.add_odedet_config(cfg)`` adds odedet's
config keys to a detectron2 config.
"""
__version__ = "0.1.0"

import warnings  # noqa: E402

# Warnings detectron2 v0.6's own code raises under current torch, which a user can do nothing
# about; the tools import odedet before detectron2 so that they start quietly. Each filter names
# one message: torch.jit.script is deprecated (box_regression.py, at import time); torch.meshgrid
# without indexing= (anchor_generator.py, first training step).
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                        category=FutureWarning)
warnings.filterwarnings("ignore", message=r"torch\.meshgrid: in an upcoming release",
                        category=UserWarning)

from .config import add_odedet_config, get_odedet_cfg  # noqa: E402,F401
from . import _register  # noqa: E402,F401  (side effect: registration, idempotent)

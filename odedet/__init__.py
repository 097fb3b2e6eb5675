"""odedet: Neural-ODE ResNet backbones (Chen et al. 2018) as a Detectron2 plugin.

``import odedet`` registers every odedet component (backbones, ROI heads, meta-architectures,
datasets) in detectron2's registries, once. ``odedet.add_odedet_config(cfg)`` adds odedet's
config keys to a detectron2 config.
"""
__version__ = "0.1.0"

import warnings  # noqa: E402

# detectron2 v0.6 calls torch.jit.script at import time, which torch 2.14 deprecates; users can
# do nothing about it, so it is not shown.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from .config import add_odedet_config, get_odedet_cfg  # noqa: E402,F401
from . import _register  # noqa: E402,F401  (side effect: registration, idempotent)

"""ROI heads, registered in detectron2's ROI_HEADS_REGISTRY on import."""
from .ode_res5 import ODERes5ROIHeads

__all__ = ["ODERes5ROIHeads"]

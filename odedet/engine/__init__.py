from .hooks import ODEStatsHook
from .trainer import Trainer

__all__ = ["Trainer", "ODEStatsHook"]

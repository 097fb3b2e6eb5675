"""The optimizer named by SOLVER.OPTIMIZER, built the way detectron2 builds its SGD."""
from __future__ import annotations

import torch
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

OPTIMIZERS = ("SGD", "AdamW")


def optimizer_from_cfg(cfg) -> tuple[str, tuple[float, float]]:
    """(canonical SOLVER.OPTIMIZER name, SOLVER.BETAS); ValueError naming the key if invalid.
    Called by :func:`build_optimizer` and, before any training, by ``check_config``."""
    by_lower = {o.lower(): o for o in OPTIMIZERS}
    name = by_lower.get(str(cfg.SOLVER.OPTIMIZER).lower())
    if name is None:
        raise ValueError(f"SOLVER.OPTIMIZER must be one of {list(OPTIMIZERS)}, got "
                         f"{cfg.SOLVER.OPTIMIZER!r}")
    betas = tuple(float(b) for b in cfg.SOLVER.BETAS)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"SOLVER.BETAS must be two numbers in [0, 1), got {cfg.SOLVER.BETAS}")
    return name, betas


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """detectron2's per-parameter groups (norm / bias weight decay and LR factors) and gradient
    clipping, with SGD (detectron2's default) or AdamW (SOLVER.BETAS, decoupled WEIGHT_DECAY)."""
    name, betas = optimizer_from_cfg(cfg)
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    if name == "SGD":
        return maybe_add_gradient_clipping(cfg, torch.optim.SGD)(
            params, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM,
            nesterov=cfg.SOLVER.NESTEROV, weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        )
    return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
        params, lr=cfg.SOLVER.BASE_LR, betas=betas, weight_decay=cfg.SOLVER.WEIGHT_DECAY,
    )

"""Training hooks for ODE models: NFE and solver settings into detectron2's event storage."""
from __future__ import annotations

import logging

from detectron2.engine import HookBase

from odedet.ode import iter_ode_blocks, nfe_counts, reset_nfe

logger = logging.getLogger(__name__)


class ODEStatsHook(HookBase):
    """Logs forward/backward NFE of each training iteration (summed over the model's ODE blocks)
    as ``nfe_forward``/``nfe_backward`` scalars (metrics.json, TensorBoard), and the solver
    settings once at the start. A model without ODE blocks logs nothing."""

    def before_train(self):
        model = _unwrap(self.trainer.model)
        self._blocks = list(iter_ode_blocks(model))
        for name, block in self._blocks:
            logger.info(
                f"ODE block {name}: train {block.train_solver.describe()}, "
                f"test {block.test_solver.describe()}, T={block.t_end:g}"
            )
        reset_nfe(model)

    def after_step(self):
        if not self._blocks:
            return
        model = _unwrap(self.trainer.model)
        counts = nfe_counts(model)
        self.trainer.storage.put_scalars(
            nfe_forward=counts["forward"], nfe_backward=counts["backward"], smoothing_hint=False
        )
        reset_nfe(model)


def _unwrap(model):
    return getattr(model, "module", model)

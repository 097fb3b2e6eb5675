"""Training-loop guards: a diverging or stalling solve stops with the iteration and what to change.

ODEBlock raises :class:`~odedet.ode.ODESolverError` naming the block and the MODEL.ODE key to
change, but it cannot know the iteration; detectron2's NaN-loss check raises FloatingPointError
naming the iteration but no setting. :class:`IterationContext` (a mixin for detectron2 trainers)
re-raises both with the iteration and the settings to change.
"""
from __future__ import annotations

from odedet.ode import ODESolverError

_DIVERGED_HINT = (
    "Lower SOLVER.BASE_LR, enable SOLVER.CLIP_GRADIENTS.ENABLED, or lengthen SOLVER.WARMUP_ITERS; "
    "resume from the last good checkpoint with --resume."
)


class TrainingDivergedError(FloatingPointError):
    """A training loss or ODE state became NaN/inf; the message names the iteration."""


def with_iteration(err: BaseException, iteration: int) -> BaseException:
    """The exception to raise instead of ``err`` (ODESolverError / FloatingPointError), with the
    training iteration in its message; other exceptions are returned unchanged."""
    if isinstance(err, ODESolverError):
        return ODESolverError(f"at training iteration {iteration}: {err}")
    if isinstance(err, FloatingPointError) and not isinstance(err, TrainingDivergedError):
        return TrainingDivergedError(f"at training iteration {iteration}: {err} {_DIVERGED_HINT}")
    return err


class IterationContext:
    """Mixin for a detectron2 ``TrainerBase`` subclass: errors of ``run_step`` get the iteration
    (``self.iter``) added by :func:`with_iteration`."""

    def run_step(self):
        try:
            super().run_step()
        except (ODESolverError, FloatingPointError) as e:
            new = with_iteration(e, self.iter)
            if new is e:
                raise
            raise new from e

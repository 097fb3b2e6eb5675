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
    """Mixin for a detectron2 ``TrainerBase`` subclass: errors of ``run_step`` (the forward and
    the adjoint's backward solves) get the iteration (``self.iter``) added by
    :func:`with_iteration`; solver errors of the hooks' work after a step or after training
    (the EvalHook's periodic and final evaluations) get it too."""

    def run_step(self):
        try:
            super().run_step()
        except (ODESolverError, FloatingPointError) as e:
            new = with_iteration(e, self.iter)
            if new is e:
                raise
            raise new from e

    def after_step(self):
        try:
            super().after_step()
        except ODESolverError as e:
            raise ODESolverError(f"at training iteration {self.iter} (in a hook, e.g. the "
                                 f"periodic evaluation): {e}") from e

    def after_train(self):
        try:
            super().after_train()
        except ODESolverError as e:
            raise ODESolverError(f"after training iteration {self.iter} (in a hook, e.g. the "
                                 f"final evaluation): {e}") from e


class CurrentInputs:
    """Forward pre-hook remembering the file names of the batch a model is evaluating, so a
    solver error during evaluation can name the image."""

    def __init__(self, model):
        self.files: list = []
        self.images = 0  # images seen since the hook was installed
        self._handle = model.register_forward_pre_hook(self)

    def __call__(self, _module, args):
        batch = args[0] if args else None
        if isinstance(batch, (list, tuple)):
            self.files = [d.get("file_name", "?") for d in batch if isinstance(d, dict)]
            self.images += len(batch)

    def remove(self):
        self._handle.remove()


def evaluation_error(err: ODESolverError, dataset: str, files: list) -> ODESolverError:
    where = f"during evaluation on {dataset!r}"
    if files:
        where += f", batch of image(s) {', '.join(map(str, files[:4]))}"
    return ODESolverError(f"{where}: {err}")

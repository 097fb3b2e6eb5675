"""Activation checkpointing of backbone parts: memory-lean training with identical results.

An ODE block trained with the adjoint keeps only its output for the backward pass, whatever the
number of solver steps; what the rest of the detector keeps then dominates a training step's
memory. :func:`enable_checkpointing` makes a module (the stem, a strided transition block) run
under :func:`torch.utils.checkpoint.checkpoint` while training: its forward keeps only the
module's input, and its internals are recomputed during the backward pass (one more forward of
that module per step). Outputs and gradients are the same as without it (same operations on the
same values; tested in tests/modeling/test_checkpointing.py).

BatchNorm: a recomputed forward would update the running statistics a second time. The
recomputation runs inside a context that saves the running statistics of every BatchNorm in the
module and restores them afterwards, so each training step updates them exactly once.
GroupNorm and FrozenBatchNorm have no running statistics to protect.

The switch is a class swap to a cached subclass that only overrides ``forward``: parameters,
state-dict keys, ``isinstance`` checks, ``freeze()`` and ``deepcopy`` are unchanged.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

__all__ = ["add_memory_config", "enable_checkpointing", "is_checkpointed",
           "preserve_bn_statistics", "CheckpointedRPNHead", "CheckpointedFastRCNNConvFCHead"]


def add_memory_config(cfg):
    """MODEL.ODE.CHECKPOINT_*: activation checkpointing of the ODE-ResNet's non-ODE parts."""
    _C = cfg
    # Recompute the stem (conv7x7-norm-ReLU-maxpool) in the backward pass instead of keeping its
    # activations (torch.utils.checkpoint): less training memory, one more stem forward per step,
    # identical results. Off by default (speed); on in the memory-lean configs.
    _C.MODEL.ODE.CHECKPOINT_STEM = False
    # Same for each stage's first (strided transition) block, and for stages not in
    # MODEL.ODE.STAGES their first block too. With the adjoint, an ODE stage then keeps only the
    # transition's input and the ODE block's output for the backward pass.
    _C.MODEL.ODE.CHECKPOINT_TRANSITIONS = False
    # Same for the FPN's lateral and output convolutions (build_ode_resnet_fpn_backbone): each
    # keeps only its input. The RPN head and the box head have registered checkpointed twins
    # for any detector: MODEL.RPN.HEAD_NAME "CheckpointedRPNHead",
    # MODEL.ROI_BOX_HEAD.NAME "CheckpointedFastRCNNConvFCHead".
    _C.MODEL.ODE.CHECKPOINT_FPN = False
    # With the fixed-grid adjoint (euler / midpoint / rk4): the backward pass takes each ODE
    # block's h(T) out of the graph and frees it after the first backward step (one feature map
    # per block less from the second step on, same numbers). Such a graph supports one backward
    # pass only (no retain_graph / gradcheck); a second raises a clear error.
    _C.MODEL.ODE.RELEASE_END_STATE = False
    # With the fixed-grid adjoint: solve the backward pass (the adjoint's reverse solve) for this
    # many images of the batch at a time (0: the whole batch at once). Its buffers - state,
    # adjoint, stage derivatives and one evaluation of the dynamics' graph, about 13 feature
    # maps of the block's size - then scale with the chunk, not the batch. The same gradients to
    # float tolerance (each image's solve is independent; the parameter gradients are summed
    # over chunks). Needs dynamics without BatchNorm (GroupNorm: per image); a training-mode
    # BatchNorm in the dynamics is refused (its batch statistics would change).
    _C.MODEL.ODE.ADJOINT_CHUNK = 0


@contextlib.contextmanager
def preserve_bn_statistics(module: nn.Module):
    """Restore the running statistics of every BatchNorm in ``module`` on exit."""
    saved = [(bn, bn.running_mean.clone(), bn.running_var.clone(),
              bn.num_batches_tracked.clone())
             for bn in module.modules()
             if isinstance(bn, _BatchNorm) and bn.track_running_stats
             and bn.running_mean is not None]
    try:
        yield
    finally:
        with torch.no_grad():
            for bn, mean, var, count in saved:
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
                bn.num_batches_tracked.copy_(count)


class _CheckpointedForward:
    """Mixin: ``forward`` under ``torch.utils.checkpoint`` while training with gradients."""

    _odedet_checkpointed = True

    def forward(self, *args):
        parent_forward = super().forward
        if not (self.training and torch.is_grad_enabled()):
            return parent_forward(*args)
        return checkpoint(
            parent_forward, *args, use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(), preserve_bn_statistics(self)),
        )


_SUBCLASSES: dict[type, type] = {}


def _checkpointed_class(cls: type) -> type:
    if getattr(cls, "_odedet_checkpointed", False):
        return cls
    if cls not in _SUBCLASSES:
        _SUBCLASSES[cls] = type(f"Checkpointed{cls.__name__}", (_CheckpointedForward, cls),
                                {"__module__": cls.__module__,
                                 "__qualname__": f"Checkpointed{cls.__qualname__}"})
    return _SUBCLASSES[cls]


def enable_checkpointing(module: nn.Module) -> nn.Module:
    """Make ``module`` run under activation checkpointing while training (in place; returned)."""
    module.__class__ = _checkpointed_class(type(module))
    return module


def is_checkpointed(module: nn.Module) -> bool:
    return bool(getattr(module, "_odedet_checkpointed", False))


# -- registered checkpointed heads (usable by any detectron2 detector through its config) -------
from detectron2.modeling.proposal_generator.rpn import RPN_HEAD_REGISTRY, StandardRPNHead  # noqa: E402
from detectron2.modeling.roi_heads.box_head import (  # noqa: E402
    ROI_BOX_HEAD_REGISTRY, FastRCNNConvFCHead,
)


@RPN_HEAD_REGISTRY.register()
class CheckpointedRPNHead(_CheckpointedForward, StandardRPNHead):
    """detectron2's ``StandardRPNHead`` (same parameters and keys) under activation
    checkpointing while training: keeps the FPN features it reads, recomputes its 3x3 conv."""


@ROI_BOX_HEAD_REGISTRY.register()
class CheckpointedFastRCNNConvFCHead(_CheckpointedForward, FastRCNNConvFCHead):
    """detectron2's ``FastRCNNConvFCHead`` under activation checkpointing while training: keeps
    the pooled region features, recomputes the head's convs and fcs in the backward pass."""

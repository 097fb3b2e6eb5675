"""Export a classifier's backbone as a detectron2 checkpoint that ``MODEL.WEIGHTS`` loads.

A backbone's keys land where the target model keeps the same module: ``backbone.<k>`` (plain
backbone), ``backbone.bottom_up.<k>`` (an FPN's bottom-up ResNet), or ``roi_heads.<k>`` (the
C4 detector's res5 head), chosen per key by name and shape against the target's state dict.
"""
from __future__ import annotations

import os

from torch import nn

from odedet.engine.atomic_io import atomic_torch_save

# Where a backbone key can live in a target model, tried in order.
_TARGET_PREFIXES = ("backbone.", "backbone.bottom_up.", "roi_heads.")


def map_backbone_keys(backbone_state: dict, target_state: dict | None = None) -> dict:
    """{target key: tensor} for every backbone tensor.

    Without ``target_state`` every key gets the ``backbone.`` prefix. With it, a key goes to
    the first prefixed name present in the target with the same shape; BatchNorm's
    ``num_batches_tracked`` counter is dropped when the target has none (FrozenBN). Any other
    key without a home raises, listing the keys, so a wrong target config is caught at export.
    """
    if target_state is None:
        return {"backbone." + k: v for k, v in backbone_state.items()}
    out, homeless = {}, []
    for k, v in backbone_state.items():
        for prefix in _TARGET_PREFIXES:
            t = target_state.get(prefix + k)
            if t is not None and tuple(t.shape) == tuple(v.shape):
                out[prefix + k] = v
                break
        else:
            if not k.endswith("num_batches_tracked"):
                homeless.append(k)
    if homeless:
        raise KeyError(
            f"{len(homeless)} backbone tensors have no key of the same shape in the target "
            f"model (tried prefixes {_TARGET_PREFIXES}): {homeless[:8]}... Train the "
            f"classifier with the detector's MODEL.BACKBONE / MODEL.RESNETS settings."
        )
    return out


def export_backbone_checkpoint(
    classifier: nn.Module, path: str, target_model: nn.Module | None = None
) -> dict:
    """Write ``{"model": mapped backbone state, "__author__": "odedet"}`` to ``path``
    (atomically) and return a summary: number of tensors and, with ``target_model``, the
    target's backbone keys the checkpoint does not cover (e.g. new FPN layers)."""
    classifier = getattr(classifier, "module", classifier)
    state = {k: v.detach().cpu() for k, v in classifier.backbone.state_dict().items()}
    target_state = target_model.state_dict() if target_model is not None else None
    mapped = map_backbone_keys(state, target_state)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_torch_save({"model": mapped, "__author__": "odedet", "matching_heuristics": False}, path)
    uncovered = []
    if target_state is not None:
        uncovered = sorted(
            k for k in target_state
            if k.startswith("backbone.") and k not in mapped and "num_batches_tracked" not in k
        )
    return {"path": path, "tensors": len(mapped), "uncovered_target_backbone_keys": uncovered}

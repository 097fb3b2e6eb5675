"""Epoch-based classifier training with progress bars, atomic per-epoch checkpoints and resume.

The checkpoint (``<out>/last_checkpoint.pth``) holds the model, optimizer, finished epoch,
per-epoch history, the run's signature and the RNG states (augmentation, shuffling); it is
written to a temp file and renamed, so an interrupted run leaves the previous epoch's checkpoint
intact, and ``resume`` continues from the epoch after it. Loading uses ``weights_only=True``.
"""
from __future__ import annotations

import math
import os
import time

import torch
from torch.nn import functional as F
from tqdm import tqdm

from odedet.ode import nfe_counts, reset_nfe

from ..evaluation.classification import evaluate_classifier
from .atomic_io import atomic_torch_save
from .checkpoint import safe_load

CHECKPOINT = "last_checkpoint.pth"


def cosine_lr(base_lr: float, it: int, total: int, warmup: int = 0) -> float:
    """Linear warm-up for ``warmup`` iterations, then cosine decay from ``base_lr`` to 0."""
    if it < warmup:
        return base_lr * (it + 1) / warmup
    progress = (it - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(1.0, progress)))


def save_checkpoint(path: str, state: dict) -> None:
    """torch.save to a temp file in the same directory, fsync, then an atomic rename onto
    ``path`` (odedet.engine.atomic_io, shared with the detectron2 checkpointer)."""
    atomic_torch_save(state, path)


def load_checkpoint(path: str, signature: dict) -> dict:
    """The checkpoint at ``path``, after checking it belongs to a run with ``signature``."""
    # weights_only; a pickle payload / truncated file raises a CheckpointError naming the file
    state = safe_load(path)
    if state.get("signature") != signature:
        raise ValueError(
            f"cannot resume from {path!r}: it was written by a run with {state.get('signature')}, "
            f"this run has {signature}; use another --output-dir or the same settings"
        )
    return state


def _train_epoch(model, loader, opt, lr_fn, it0, max_iters, desc, quiet):
    """One epoch; returns (mean loss, train accuracy, images, seconds, nfe fwd/bwd per iter)."""
    model.train()
    n_img = n_ok = loss_sum = nfe_f = nfe_b = iters = 0
    seconds = 0.0
    bar = tqdm(loader, desc=desc, leave=False, disable=quiet, dynamic_ncols=True)
    for images, labels in bar:
        if max_iters and iters >= max_iters:
            break
        for group in opt.param_groups:
            group["lr"] = lr_fn(it0 + iters)
        t0 = time.perf_counter()
        reset_nfe(model)
        images, labels = images.to(model.device), labels.to(model.device)
        logits = model.logits(images)
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seconds += time.perf_counter() - t0
        nfe = nfe_counts(model)
        nfe_f, nfe_b, iters = nfe_f + nfe["forward"], nfe_b + nfe["backward"], iters + 1
        loss_sum += loss.item() * len(labels)
        n_ok += int((logits.argmax(1) == labels).sum())
        n_img += len(labels)
        bar.set_postfix(loss=f"{loss.item():.3f}", nfe=nfe["forward"])
    if not iters:
        raise ValueError("the training loader yielded no batch: is the training split empty?")
    return dict(train_loss=loss_sum / n_img, train_top1=n_ok / n_img, images=n_img,
                seconds=seconds, nfe_forward=nfe_f / iters, nfe_backward=nfe_b / iters), iters


def train_classifier(
    model, loaders: dict, *, epochs: int, out_dir: str, num_classes: int, lr: float = 0.1,
    weight_decay: float = 5e-4, signature: dict | None = None, resume: bool = False,
    max_iters_per_epoch: int = 0, quiet: bool = False, log: bool = True,
) -> list:
    """Train ``model`` (an ImageClassifier) with SGD (momentum 0.9) and a cosine schedule,
    validating on ``loaders["val"]`` after each epoch (``quiet``: no progress bars; ``log``:
    a summary line per epoch). Returns the per-epoch history: loss,
    accuracies, training throughput (images/s over the timed train steps) and NFE."""
    os.makedirs(out_dir, exist_ok=True)
    ckpt_path = os.path.join(out_dir, CHECKPOINT)
    signature = dict(signature or {}, epochs=epochs)
    opt = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True
    )
    history, start = [], 0
    if resume and os.path.exists(ckpt_path):
        state = load_checkpoint(ckpt_path, signature)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if state.get("shuffle_rng") is not None and loaders["train"].generator is not None:
            loaders["train"].generator.set_state(state["shuffle_rng"])
        history, start = list(state["history"]), int(state["epoch"]) + 1
    per_epoch = len(loaders["train"])
    if max_iters_per_epoch:
        per_epoch = min(per_epoch, max_iters_per_epoch)
    total = epochs * per_epoch
    lr_fn = lambda it: cosine_lr(lr, it, total, warmup=min(per_epoch, total // 10))  # noqa: E731
    for epoch in range(start, epochs):
        stats, _ = _train_epoch(model, loaders["train"], opt, lr_fn, epoch * per_epoch,
                                max_iters_per_epoch, f"epoch {epoch + 1}/{epochs}", quiet)
        val = evaluate_classifier(model, loaders["val"], num_classes)
        stats.update(epoch=epoch + 1, val_top1=val["top1"],
                     train_images_per_s=stats["images"] / max(stats["seconds"], 1e-9))
        history.append(stats)
        if log:
            tqdm.write(f"epoch {epoch + 1}/{epochs}: loss {stats['train_loss']:.4f}, val top-1 "
                       f"{100 * val['top1']:.2f}%, {stats['train_images_per_s']:.1f} img/s, "
                       f"NFE fwd {stats['nfe_forward']:.1f} bwd {stats['nfe_backward']:.1f}")
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
            "history": history, "signature": signature, "rng": torch.get_rng_state(),
            "shuffle_rng": gen.get_state() if (gen := loaders["train"].generator) else None,
        })
    return history

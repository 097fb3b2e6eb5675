"""Classification metrics (top-1, per-class and macro precision/recall/F1, confusion matrix),
an evaluation pass over a loader with NFE and latency, and detectron2's evaluator for them.

Metrics come from scikit-learn; a class that is never predicted has precision 0 (and one that
never occurs has recall 0), as with ``zero_division=0``, so macro averages are over all classes.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from detectron2.evaluation import DatasetEvaluator
from sklearn.metrics import confusion_matrix as _sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from odedet.ode import nfe_counts, reset_nfe

from .build import register_evaluator_factory


def classification_metrics(labels, preds, num_classes: int, class_names=None) -> dict:
    """Top-1 accuracy, per-class and macro precision/recall/F1 and the confusion matrix
    (rows: true class, columns: predicted class) for integer ``labels``/``preds``."""
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    if labels.shape != preds.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"need equal-length non-empty 1-D labels/preds, got {labels.shape}, "
                         f"{preds.shape}")
    ks = list(range(num_classes))
    p, r, f, support = precision_recall_fscore_support(
        labels, preds, labels=ks, zero_division=0
    )
    names = list(class_names) if class_names is not None else [str(k) for k in ks]
    per_class = [
        {"class": names[k], "precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
         "support": int(support[k])}
        for k in ks
    ]
    return {
        "top1": float((labels == preds).mean()),
        "macro_precision": float(p.mean()),
        "macro_recall": float(r.mean()),
        "macro_f1": float(f.mean()),
        "per_class": per_class,
        "confusion": _sk_confusion(labels, preds, labels=ks).tolist(),
        "num_images": int(len(labels)),
    }


@torch.no_grad()
def evaluate_classifier(model, loader, num_classes: int, class_names=None) -> dict:
    """Run ``model.logits`` over ``loader`` in eval mode: metrics plus mean forward NFE per batch
    and mean latency per batch (ms, wall clock, synchronised on CUDA)."""
    was_training = model.training
    model.eval()
    labels, preds, times, nfes = [], [], [], []
    try:
        for images, y in loader:
            reset_nfe(model)
            t0 = _now(model)
            logits = model.logits(images)
            times.append(_now(model) - t0)
            nfes.append(nfe_counts(model)["forward"])
            labels.append(y.cpu())
            preds.append(logits.argmax(1).cpu())
    finally:
        model.train(was_training)
    out = classification_metrics(torch.cat(labels), torch.cat(preds), num_classes, class_names)
    out["nfe_forward_per_batch"] = float(np.mean(nfes))
    out["latency_ms_per_batch"] = 1000 * float(np.mean(times))
    out["batch_size"] = int(loader.batch_size or 1)
    return out


def _now(model) -> float:
    """Wall clock after finishing queued GPU work, so CUDA timings are not just launch times."""
    device = getattr(model, "device", torch.device("cpu"))
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class ClassificationEvaluator(DatasetEvaluator):
    """detectron2 evaluator for ImageClassifier outputs ([{"pred_class"}]) on dataset dicts with
    a "label"; reports top-1 and macro precision/recall/F1 in percent under "classification"."""

    def __init__(self, num_classes: int, class_names=None):
        self.num_classes, self.class_names = num_classes, class_names
        self.reset()

    def reset(self):
        self._labels, self._preds = [], []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            self._labels.append(int(inp["label"]))
            self._preds.append(int(out["pred_class"]))

    def evaluate(self):
        from detectron2.utils import comm

        labels = sum(comm.gather(self._labels, dst=0), [])
        preds = sum(comm.gather(self._preds, dst=0), [])
        if not comm.is_main_process():
            return {}
        m = classification_metrics(labels, preds, self.num_classes, self.class_names)
        keys = ("top1", "macro_precision", "macro_recall", "macro_f1")
        return {"classification": {k: 100 * m[k] for k in keys}}


@register_evaluator_factory("classification")
def _classification_evaluators(cfg, dataset_name, output_dir):
    from detectron2.data import MetadataCatalog

    classes = getattr(MetadataCatalog.get(dataset_name), "thing_classes", None)
    return [ClassificationEvaluator(cfg.MODEL.CLASSIFIER.NUM_CLASSES, classes)]

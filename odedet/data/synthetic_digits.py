"""The second embedded detection dataset: real handwritten digits in cluttered scenes, COCO.

Objects are scikit-learn's 1,797 8x8 handwritten digits (``sklearn.datasets.load_digits``,
shipped inside the scikit-learn package: nothing is downloaded), 10 classes "0".."9", placed at
heights uniform in [``min_size``, ``max_size``] px (12..64 by default: about half of them are
COCO-"small", area < 32^2, at the default 128 px image size, the rest "medium"), rotated up to 20 degrees, partly hidden by later digits and by
opaque occluders (at most 35% of a digit's ink), on textured backgrounds with unannotated
clutter (pen-like strokes, shapes); see ``_digits_draw.py``.

**No source image is shared between the splits**: the 1,797 digit images are split first
(stratified by class, seeded: ``val_source_fraction`` of each class goes to val), and the train
images are drawn only from train sources, the val images only from val sources. Every
annotation records its ``source_index`` (the digit's index in ``load_digits()``).

Everything is a function of the parameters: image ``i`` of split ``s`` is drawn from
``numpy.random.default_rng([seed, s, i])``, so regeneration is byte-identical. Layout under
``<root>/odedet_digits/`` (``root`` = ``$DETECTRON2_DATASETS``, default ``datasets/``)::

    generation.json                 the parameters it was generated with
    annotations/instances_{train,val}.json
    {train,val}/000000.png ...

``odedet_digits_train`` / ``odedet_digits_val`` are registered on import (evaluator_type
"coco"); the data is generated on first use, and regenerated when ``generation.json`` differs
from the requested parameters; concurrent first uses are safe (``_generated``). CLI:
``python -m odedet.data.synthetic_digits --help``.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os

import cv2
import numpy as np

from . import _generated
from ._digits_draw import CLASSES, COLORS, draw_image

logger = logging.getLogger(__name__)

DIRNAME = "odedet_digits"
SPLITS = _generated.SPLITS
# Bumped whenever the drawing code changes what given parameters produce.
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class DigitsParams:
    """Generation parameters; recorded in ``generation.json`` to detect stale data.

    Sizes are in pixels: a digit's height is uniform in [min_size, max_size].
    """

    seed: int = 0
    num_train: int = 1500
    num_val: int = 300
    image_size: int = 128
    max_objects: int = 6
    min_size: int = 12
    max_size: int = 64
    max_overlap: float = 0.3
    max_clutter: int = 8
    max_occluders: int = 2
    val_source_fraction: float = 0.25

    def __post_init__(self):
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError(f"num_train and num_val must be >= 1, got {self}")
        if not 6 <= self.min_size <= self.max_size <= self.image_size // 2:
            raise ValueError(f"need 6 <= min_size <= max_size <= image_size / 2, got {self}")
        if self.max_objects < 0 or self.max_clutter < 0 or self.max_occluders < 0:
            raise ValueError(f"max_objects, max_clutter, max_occluders must be >= 0: {self}")
        if not 0.0 <= self.max_overlap < 1.0 or not 0.0 < self.val_source_fraction < 1.0:
            raise ValueError(f"need 0 <= max_overlap < 1 and 0 < val_source_fraction < 1: {self}")

    def record(self) -> dict:
        return dict(dataclasses.asdict(self), format_version=FORMAT_VERSION, classes=list(CLASSES))


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) uint8 values 0..16, targets (1797,) int) from scikit-learn."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.uint8), d.target.astype(np.int64)


def source_split(params: DigitsParams = DigitsParams()) -> dict[str, np.ndarray]:
    """{"train": indices, "val": indices} into ``load_digits()``: disjoint, covering all 1,797,
    ``val_source_fraction`` of each class in val (seeded by ``params.seed``)."""
    _, targets = _digits()
    rng = np.random.default_rng([params.seed, 1797])
    val = []
    for c in range(len(CLASSES)):
        members = np.flatnonzero(targets == c)
        k = int(round(len(members) * params.val_source_fraction))
        val.extend(rng.permutation(members)[:k].tolist())
    val = np.array(sorted(val), dtype=np.int64)
    train = np.setdiff1d(np.arange(len(targets)), val)
    return {"train": train, "val": val}


def dataset_dir(root: str | None = None) -> str:
    """``<root>/odedet_digits``, root defaulting to $DETECTRON2_DATASETS or ``datasets``."""
    return _generated.dataset_dir(DIRNAME, root)


def _coco_split(params: DigitsParams, split: str, out_dir: str) -> dict:
    """Draw and write one split's images; return its COCO dict."""
    n = params.num_train if split == "train" else params.num_val
    digits, targets = _digits()
    sources = source_split(params)[split]
    os.makedirs(os.path.join(out_dir, split))
    images, annotations = [], []
    for i in range(n):
        rng = np.random.default_rng([params.seed, SPLITS.index(split), i])
        image, objects = draw_image(rng, params, digits, targets, sources)
        file_name = f"{i:06d}.png"
        cv2.imwrite(os.path.join(out_dir, split, file_name), image[:, :, ::-1])  # RGB -> BGR
        h, w = image.shape[:2]
        images.append(dict(id=i + 1, file_name=file_name, height=h, width=w))
        for obj in objects:
            annotations.append(dict(obj, id=len(annotations) + 1, image_id=i + 1, iscrowd=0))
    categories = [dict(id=k + 1, name=name, supercategory="digit")
                  for k, name in enumerate(CLASSES)]
    info = dict(description=f"odedet synthetic digits (scikit-learn load_digits), {split} split",
                params=params.record(), num_source_digits=int(len(sources)))
    return dict(info=info, images=images, annotations=annotations, categories=categories)


def generate(params: DigitsParams = DigitsParams(), root: str | None = None) -> str:
    """Write the dataset under ``dataset_dir(root)`` (replacing what is there); return the dir.
    Atomic and safe under concurrent generation (see ``odedet.data._generated``)."""
    return _generated.generate_atomically(
        dataset_dir(root), params.record(), lambda split, out: _coco_split(params, split, out))


def is_current(params: DigitsParams, root: str | None = None) -> bool:
    """True when the dataset on disk was generated with exactly ``params`` and is complete."""
    return _generated.is_current(dataset_dir(root), params.record())


def ensure(params: DigitsParams = DigitsParams(), root: str | None = None) -> str:
    """Generate the dataset if it is absent or was generated with other parameters."""
    return _generated.ensure_current(
        dataset_dir(root), params.record(), lambda: generate(params, root),
        "Synthetic digits dataset", logger, f"{params.num_train} + {params.num_val} images")


def register_synthetic_digits(
    root: str | None = None,
    params: DigitsParams = DigitsParams(),
    name_prefix: str = DIRNAME,
    replace: bool = False,
) -> list[str]:
    """Register ``<name_prefix>_train`` and ``<name_prefix>_val``; return the names.

    Loading a split (``DatasetCatalog.get``) generates the data first if needed. ``replace``
    drops an existing registration of the same names (e.g. to point them at another root).
    """
    return _generated.register_coco_splits(
        dataset_dir(root), lambda: ensure(params, root), name_prefix, CLASSES, COLORS, replace)


def main(argv=None) -> None:
    _generated.cli_main(argv, "python -m odedet.data.synthetic_digits",
                        "Generate odedet's handwritten-digits detection dataset (COCO format).",
                        DIRNAME, DigitsParams, generate, ensure)


if __name__ == "__main__":
    main()  # ``python -m``: the package import has registered the names already
else:
    register_synthetic_digits()

"""The embedded detection dataset: seeded synthetic shapes, written to disk in COCO format.

Each image (``image_size`` px square, PNG) has a textured, noisy background (smooth colour
gradient, low-frequency blotches, clutter lines, pixel noise) and 0..``max_objects`` shapes of
the classes circle, rectangle and triangle, with random size, colour, aspect ratio and rotation;
shapes may overlap (box IoU <= ``max_overlap``; a later shape hides at most 30% of an earlier
one, so every annotated object stays visible). Everything is a function of ``seed``: image
``i`` of split ``s`` is drawn from ``numpy.random.default_rng([seed, s, i])``, so regeneration is
byte-identical.

Layout under ``<root>/odedet_shapes/`` (``root`` = ``$DETECTRON2_DATASETS``, default
``datasets/``)::

    generation.json                 the parameters it was generated with
    annotations/instances_{train,val}.json
    {train,val}/000000.png ...

``odedet_shapes_train`` / ``odedet_shapes_val`` are registered on import with detectron2's
``load_coco_json`` (evaluator_type "coco", so COCOEvaluator/pycocotools score it). The data is
generated on first use when absent, and regenerated when ``generation.json`` differs from the
requested parameters. CLI: ``python -m odedet.data.synthetic_shapes --help``.
"""
from __future__ import annotations

import dataclasses
import logging
import os

import cv2
import numpy as np

from . import _generated
from ._shapes_draw import CLASSES, COLORS, draw_image

logger = logging.getLogger(__name__)

DIRNAME = "odedet_shapes"
SPLITS = _generated.SPLITS
# Bumped whenever the drawing code changes what a given seed produces.
FORMAT_VERSION = 2


@dataclasses.dataclass(frozen=True)
class ShapesParams:
    """Generation parameters; recorded in ``generation.json`` to detect stale data.

    Sizes are in pixels: an object's longer box side is uniform in [min_size, max_size].
    """

    seed: int = 0
    num_train: int = 1000
    num_val: int = 200
    image_size: int = 128
    max_objects: int = 4
    min_size: int = 16
    max_size: int = 64
    max_overlap: float = 0.2

    def __post_init__(self):
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError(f"num_train and num_val must be >= 1, got {self}")
        if not 4 <= self.min_size <= self.max_size <= self.image_size:
            raise ValueError(f"need 4 <= min_size <= max_size <= image_size, got {self}")
        if self.max_objects < 0 or not 0.0 <= self.max_overlap < 1.0:
            raise ValueError(f"need max_objects >= 0 and 0 <= max_overlap < 1, got {self}")

    def record(self) -> dict:
        return dict(dataclasses.asdict(self), format_version=FORMAT_VERSION, classes=list(CLASSES))


def dataset_dir(root: str | None = None) -> str:
    """``<root>/odedet_shapes``, root defaulting to $DETECTRON2_DATASETS or ``datasets``."""
    return _generated.dataset_dir(DIRNAME, root)


def _coco_split(params: ShapesParams, split: str, out_dir: str) -> dict:
    """Draw and write one split's images; return its COCO dict (images, annotations, ...)."""
    n = params.num_train if split == "train" else params.num_val
    os.makedirs(os.path.join(out_dir, split))
    images, annotations = [], []
    for i in range(n):
        rng = np.random.default_rng([params.seed, SPLITS.index(split), i])
        image, objects = draw_image(rng, params)
        file_name = f"{i:06d}.png"
        cv2.imwrite(os.path.join(out_dir, split, file_name), image[:, :, ::-1])  # RGB -> BGR
        h, w = image.shape[:2]
        images.append(dict(id=i + 1, file_name=file_name, height=h, width=w))
        for obj in objects:
            annotations.append(dict(obj, id=len(annotations) + 1, image_id=i + 1, iscrowd=0))
    categories = [
        dict(id=k + 1, name=name, supercategory="shape") for k, name in enumerate(CLASSES)
    ]
    info = dict(description=f"odedet synthetic shapes, {split} split", params=params.record())
    return dict(info=info, images=images, annotations=annotations, categories=categories)


def generate(params: ShapesParams = ShapesParams(), root: str | None = None) -> str:
    """Write the dataset under ``dataset_dir(root)`` (replacing what is there); return the dir.

    Written to a temporary sibling first and moved into place, so a reader never sees a half
    written dataset and concurrent generators (e.g. several DDP workers) do not corrupt it.
    """
    return _generated.generate_atomically(
        dataset_dir(root), params.record(), lambda split, out: _coco_split(params, split, out))


def is_current(params: ShapesParams, root: str | None = None) -> bool:
    """True when the dataset on disk was generated with exactly ``params`` and is complete."""
    return _generated.is_current(dataset_dir(root), params.record())


def ensure(params: ShapesParams = ShapesParams(), root: str | None = None) -> str:
    """Generate the dataset if it is absent or was generated with other parameters."""
    return _generated.ensure_current(dataset_dir(root), params.record(),
                                     lambda: generate(params, root), "Synthetic shapes dataset",
                                     logger)


def register_synthetic_shapes(
    root: str | None = None,
    params: ShapesParams = ShapesParams(),
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
    _generated.cli_main(argv, "python -m odedet.data.synthetic_shapes",
                        "Generate odedet's synthetic shapes detection dataset (COCO format).",
                        DIRNAME, ShapesParams, generate, ensure)


if __name__ == "__main__":
    main()  # ``python -m``: the package import has registered the names already
else:
    register_synthetic_shapes()

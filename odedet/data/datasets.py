"""COCO-format and Pascal VOC datasets: registration without code, validation before training.

COCO 2017 (``coco_2017_train``, ``coco_2017_val``) and Pascal VOC 2007/2012 (``voc_2007_trainval``,
``voc_2007_test``, ``voc_2012_trainval``, ...) are detectron2's builtin names, registered by
detectron2 itself rooted at ``$DETECTRON2_DATASETS`` (default ``datasets/``, relative to the
working directory). Any other COCO-format dataset is registered by name from

* the command line of odedet's tools: ``--register-coco NAME JSON_FILE IMAGE_ROOT`` (repeatable);
* the environment: ``ODEDET_COCO_DATASETS="NAME=JSON_FILE,IMAGE_ROOT;NAME2=..."``, read when
  ``odedet`` is imported, so every tool and every distributed worker sees the same names.

:func:`validate_datasets` checks the files behind registered names before anything is built.
"""
from __future__ import annotations

import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from .validation import DatasetError, validate_coco_json, validate_voc

ENV_VAR = "ODEDET_COCO_DATASETS"

__all__ = [
    "DatasetError", "ENV_VAR", "add_dataset_arguments", "register_coco", "register_from_args",
    "register_from_env", "validate_dataset", "validate_datasets",
]


def register_coco(name: str, json_file: str, image_root: str) -> None:
    """Register a COCO-format instances json under ``name`` (evaluator_type "coco"), like
    detectron2's ``register_coco_instances``. Registering the same files again is a no-op;
    reusing a name for other files is an error."""
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        same = (getattr(meta, "json_file", None), getattr(meta, "image_root", None)) == (
            json_file, image_root)
        if same:
            return
        raise ValueError(f"dataset name {name!r} is already registered (json_file="
                         f"{getattr(meta, 'json_file', None)!r}); choose another name")
    register_coco_instances(name, {}, json_file, image_root)


def _parse_env(text: str) -> list[tuple[str, str, str]]:
    specs = []
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        name, sep, paths = entry.partition("=")
        parts = paths.split(",")
        if not sep or len(parts) != 2 or not name.strip() or not all(p.strip() for p in parts):
            raise ValueError(f"{ENV_VAR}: entry {entry!r} is not NAME=JSON_FILE,IMAGE_ROOT "
                             "(entries are separated by ';')")
        specs.append((name.strip(), parts[0].strip(), parts[1].strip()))
    return specs


def register_from_env(environ=None) -> list[str]:
    """Register the datasets listed in ``$ODEDET_COCO_DATASETS``; returns their names."""
    specs = _parse_env((environ if environ is not None else os.environ).get(ENV_VAR, ""))
    for spec in specs:
        register_coco(*spec)
    return [s[0] for s in specs]


def add_dataset_arguments(parser):
    """Add ``--register-coco NAME JSON_FILE IMAGE_ROOT`` (repeatable) to an argparse parser."""
    parser.add_argument(
        "--register-coco", nargs=3, action="append", default=[],
        metavar=("NAME", "JSON_FILE", "IMAGE_ROOT"),
        help="register a COCO-format dataset under NAME (usable in DATASETS.TRAIN/TEST); "
        "repeatable",
    )
    return parser


def register_from_args(args) -> list[str]:
    """Register the ``--register-coco`` datasets of parsed ``args``; returns their names."""
    for spec in getattr(args, "register_coco", None) or []:
        register_coco(*spec)
    return [s[0] for s in getattr(args, "register_coco", None) or []]


def validate_dataset(name: str, check_image_files: bool = True) -> None:
    """Check the files behind a registered dataset name: COCO-json datasets (metadata
    ``json_file``) and Pascal VOC datasets (metadata ``dirname``/``split``). Datasets of other
    kinds (generated in memory, depth, ...) are checked by their own loaders."""
    if name not in DatasetCatalog.list():
        raise DatasetError(
            f"not a registered dataset name. Use a builtin name (coco_2017_train, "
            f"voc_2007_trainval, ...), an odedet dataset, or register a COCO-format dataset "
            f"with --register-coco {name} JSON_FILE IMAGE_ROOT or {ENV_VAR}"
        )
    meta = MetadataCatalog.get(name)
    if hasattr(meta, "json_file"):
        _materialize(name, meta.json_file)
        validate_coco_json(meta.json_file, getattr(meta, "image_root", None), check_image_files)
    elif getattr(meta, "evaluator_type", None) == "pascal_voc" and hasattr(meta, "dirname"):
        validate_voc(meta.dirname, meta.split, meta.thing_classes, check_image_files)


def _materialize(name: str, json_file: str) -> None:
    """Generated datasets (odedet's synthetic shapes) write their json on first load: load once
    when it is absent. A failing load is left to the validation, whose error is the clear one."""
    if os.path.isfile(json_file):
        return
    try:
        DatasetCatalog.get(name)
    except Exception:  # noqa: BLE001 - reported by validate_coco_json below
        pass


def validate_datasets(names, check_image_files: bool = True) -> None:
    """:func:`validate_dataset` for each name (duplicates checked once). Builtin names resolve
    under ``$DETECTRON2_DATASETS``; a failure says so, since that is the usual cause."""
    for name in dict.fromkeys(names):
        try:
            validate_dataset(name, check_image_files)
        except DatasetError as e:
            root = os.getenv("DETECTRON2_DATASETS", "datasets")
            raise DatasetError(f"dataset {name!r}: {e} [DETECTRON2_DATASETS={root}]") from None


register_from_env()

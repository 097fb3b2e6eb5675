"""Shared machinery of odedet's generated COCO datasets (synthetic shapes, digits): the
directory layout, generation into a temporary sibling moved into place atomically, and the
"is the data on disk the one these parameters describe" check.

Several processes may start at once (DDP workers, parallel tools, a test suite): each one that
finds the data absent writes its own temporary copy and renames it into place. Generation is a
pure function of the parameters, so whichever rename wins, the result is the same; a loser whose
rename fails finds complete, current data and returns it. A reader never sees a half-written
dataset because ``generation.json`` (what :func:`is_current` checks) is written last, inside the
temporary directory, before the rename.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from typing import Callable

SPLITS = ("train", "val")


def dataset_dir(dirname: str, root: str | None = None) -> str:
    """``<root>/<dirname>``, root defaulting to $DETECTRON2_DATASETS or ``datasets``."""
    root = root if root is not None else os.getenv("DETECTRON2_DATASETS", "datasets")
    return os.path.join(os.path.expanduser(root), dirname)


def split_paths(directory: str, split: str) -> tuple[str, str]:
    """(json_file, image_root) of a split."""
    return os.path.join(directory, "annotations", f"instances_{split}.json"), os.path.join(
        directory, split
    )


def is_current(directory: str, record: dict, splits=SPLITS) -> bool:
    """True when ``directory/generation.json`` equals ``record`` and every split's json exists."""
    try:
        with open(os.path.join(directory, "generation.json")) as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return False
    return recorded == record and all(os.path.isfile(split_paths(directory, s)[0]) for s in splits)


def ensure_current(directory: str, record: dict, generate: Callable[[], str], what: str,
                   logger: logging.Logger, detail: str = "") -> str:
    """``generate()`` the dataset at ``directory`` unless it is current for ``record``; return
    ``directory``. ``what`` names it in the log lines ("Synthetic shapes dataset"), ``detail``
    is added to the "generating" line (e.g. how many images)."""
    if not is_current(directory, record):
        why = "absent" if not os.path.exists(directory) else "stale (generation parameters differ)"
        logger.info(f"{what} at {os.path.abspath(directory)} is {why}; generating"
                    + (f" {detail}" if detail else ""))
        generate()
        logger.info(f"{what} written to {os.path.abspath(directory)}")
    return directory


def generate_atomically(target: str, record: dict, write_split: Callable[[str, str], dict],
                        splits=SPLITS) -> str:
    """Write a dataset to ``target`` (replacing what is there): ``write_split(split, tmp_dir)``
    writes a split's images under ``tmp_dir/<split>/`` and returns its COCO dict, which goes to
    ``tmp_dir/annotations/instances_<split>.json``; ``record`` goes to ``generation.json`` last.
    The temporary directory is then renamed to ``target`` (see the module docstring)."""
    dirname = os.path.basename(os.path.normpath(target))
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{dirname}-", dir=parent)
    try:
        os.makedirs(os.path.join(tmp, "annotations"))
        for split in splits:
            coco = write_split(split, tmp)
            with open(split_paths(tmp, split)[0], "w") as f:
                json.dump(coco, f, sort_keys=True)
        with open(os.path.join(tmp, "generation.json"), "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
        if is_current(target, record, splits):  # another process finished first: keep its
            return target                        # files (readers may already be using them)
        if os.path.isdir(target):
            stale = tempfile.mkdtemp(prefix=f".{dirname}-stale-", dir=parent)
            os.replace(target, os.path.join(stale, dirname))
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, target)
    except OSError:
        if is_current(target, record, splits):  # another process finished first: equal data
            return target
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def register_coco_splits(directory: str, ensure: Callable[[], str], name_prefix: str,
                         classes, colors, replace: bool = False, splits=SPLITS) -> list[str]:
    """Register ``<name_prefix>_<split>`` in detectron2's catalogs, loaded with
    ``load_coco_json`` after ``ensure()`` (which generates the data if needed); return the names.
    ``replace`` drops an existing registration of the same names (e.g. to point them at
    another root)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import load_coco_json

    names = []
    for split in splits:
        name = f"{name_prefix}_{split}"
        if replace and name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        json_file, image_root = split_paths(directory, split)

        def load(json_file=json_file, image_root=image_root, name=name):
            ensure()
            return load_coco_json(json_file, image_root, name)

        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(
            json_file=json_file, image_root=image_root, evaluator_type="coco",
            thing_classes=list(classes), thing_colors=[list(c) for c in colors],
            thing_dataset_id_to_contiguous_id={k + 1: k for k in range(len(classes))},
        )
        names.append(name)
    return names


def cli_main(argv, prog: str, description: str, dirname: str, params_cls, generate, ensure,
             splits=SPLITS) -> None:
    """``python -m odedet.data.<module>``: one flag per field of the parameters dataclass,
    ``--root`` and ``--force``; generates (or checks) the data and prints where it is."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--root", default=None, help="datasets root (default: $DETECTRON2_DATASETS "
                   f"or ./datasets); the data goes to <root>/{dirname}")
    for field in dataclasses.fields(params_cls):
        flag = "--" + field.name.replace("_", "-")
        p.add_argument(flag, type=type(field.default), default=field.default,
                       help=f"default: {field.default}")
    p.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = p.parse_args(argv)
    params = params_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(params_cls)})
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    directory = generate(params, args.root) if args.force else ensure(params, args.root)
    for split in splits:
        json_file, image_root = split_paths(directory, split)
        print(f"{split}: annotations {os.path.abspath(json_file)}, "
              f"images {os.path.abspath(image_root)}")

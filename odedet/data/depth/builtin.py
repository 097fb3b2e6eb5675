"""Register the depth datasets (evaluator_type "depth") under ``$DETECTRON2_DATASETS``.

===============================  ==========================================================
name                             files (relative to $DETECTRON2_DATASETS, default ./datasets)
===============================  ==========================================================
odedet_depth_scenes_{train,val}  odedet_depth_scenes/ (rendered on first use)
nyu_depth_v2_{train,test}        nyu_depth_v2/nyu_depth_v2_labeled.mat + splits.mat
kitti_eigen_{train,test}         kitti/eigen_{train,test}_files_with_gt.txt, kitti/raw/,
                                 kitti/depth/{train,val}/
===============================  ==========================================================
"""
from __future__ import annotations

import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .loaders import load_depth_list, load_kitti_eigen, load_nyu_labeled
from .synthetic import SCENES_MAX_DEPTH, ensure_scenes


def register_depth_dataset(name: str, loader, *, min_depth: float, max_depth: float,
                           eval_crop: str = "none", **metadata) -> None:
    """Register ``loader`` (a no-argument callable returning dataset dicts) as ``name`` with the
    metadata the depth evaluator reads: valid depth range (metres) and eval crop name."""
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(
        evaluator_type="depth", min_depth=min_depth, max_depth=max_depth, eval_crop=eval_crop,
        **metadata,
    )


def register_depth_list(name: str, list_file: str, *, min_depth=1e-3, max_depth=10.0,
                        eval_crop="none", default_scale=None) -> None:
    """Register a dataset in the plain list-file format (see :func:`load_depth_list`)."""
    register_depth_dataset(
        name, lambda: load_depth_list(list_file, default_scale=default_scale),
        min_depth=min_depth, max_depth=max_depth, eval_crop=eval_crop, list_file=list_file,
    )


def _load_scenes(root: str, split: str):
    ensure_scenes(root)
    return load_depth_list(os.path.join(root, f"{split}.txt"))


def register_all_depth(root: str) -> None:
    scenes = os.path.join(root, "odedet_depth_scenes")
    for split in ("train", "val"):
        register_depth_dataset(
            f"odedet_depth_scenes_{split}", lambda s=split: _load_scenes(scenes, s),
            min_depth=1e-3, max_depth=SCENES_MAX_DEPTH, eval_crop="none", dataset_root=scenes,
        )
    nyu = os.path.join(root, "nyu_depth_v2")
    mat, splits = os.path.join(nyu, "nyu_depth_v2_labeled.mat"), os.path.join(nyu, "splits.mat")
    for split in ("train", "test"):
        register_depth_dataset(
            f"nyu_depth_v2_{split}", lambda s=split: load_nyu_labeled(mat, splits, s),
            min_depth=1e-3, max_depth=10.0, eval_crop="eigen_nyu", dataset_root=nyu,
        )
    kitti = os.path.join(root, "kitti")
    for split in ("train", "test"):
        lst = os.path.join(kitti, f"eigen_{split}_files_with_gt.txt")
        register_depth_dataset(
            f"kitti_eigen_{split}", lambda f=lst: load_kitti_eigen(kitti, f),
            min_depth=1e-3, max_depth=80.0, eval_crop="garg", dataset_root=kitti,
        )


if __name__.endswith(".builtin"):
    register_all_depth(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))

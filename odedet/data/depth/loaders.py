"""``load_*`` functions: depth datasets as lists of detectron2 dataset dicts (see formats.py)."""
from __future__ import annotations

import os

import numpy as np

from .formats import DepthDataError, _require_file, image_size_or_none, nyu_dataset_size
from .formats import NYU_SIZE


def _text_lines(path: str) -> list:
    """The lines of a UTF-8 text file; a binary or mis-encoded file is a DepthDataError."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as e:
        raise DepthDataError(f"{path} is not a UTF-8 text file ({e}); expected one sample per "
                             f"line") from e


def load_depth_list(list_file: str, *, default_scale: float | None = None, check_files=True):
    """The plain list-file format: one sample per line, ``<rgb> <depth> [<scale>]``, paths
    relative to the list file's folder (or absolute), depth a uint16 PNG holding depth * scale
    (0 = unknown). Blank lines and lines starting with '#' are skipped; ``<depth>`` may be
    "None" for an image without ground truth. Each image's size is read from its header, so
    a list may mix image sizes (predictions are compared at each image's own size); an image
    whose header cannot be read is kept, and the mapper then skips it in training (logged) or
    stops evaluation naming it, as for detection images."""
    _require_file(list_file, "depth list file")
    base = os.path.dirname(os.path.abspath(list_file))
    dicts = []
    lines = [(i, ln.split()) for i, ln in enumerate(_text_lines(list_file), 1)]
    for lineno, parts in lines:
        if not parts or parts[0].startswith("#"):
            continue
        where = f"{list_file}:{lineno}"
        if len(parts) not in (2, 3) or (len(parts) == 2 and default_scale is None):
            raise DepthDataError(f"{where}: expected '<rgb> <depth> <scale>', got {parts}")
        try:
            scale = float(parts[2]) if len(parts) == 3 else float(default_scale)
        except ValueError:
            raise DepthDataError(f"{where}: scale {parts[2]!r} is not a number") from None
        rgb = os.path.join(base, parts[0])
        depth = None if parts[1] == "None" else os.path.join(base, parts[1])
        if check_files:
            for path, what in ((rgb, "image"), (depth, "depth PNG")):
                if path is not None and not os.path.isfile(path):
                    raise DepthDataError(f"{what} listed at {where} not found: {path}")
        dicts.append(dict(file_name=rgb, depth_file_name=depth, depth_scale=scale,
                          image_id=len(dicts)))
    if not dicts:
        raise DepthDataError(f"depth list file {list_file} lists no sample")
    for d in dicts:
        d["height"], d["width"] = image_size_or_none(d["file_name"])
    return dicts


def load_nyu_labeled(mat_file: str, splits_file: str, split: str):
    """NYU Depth v2 labelled set, official/Eigen split: ``split`` "train" (795 images,
    ``trainNdxs``) or "test" (the 654 ``testNdxs`` of Eigen et al.'s evaluation), read from the
    official ``splits.mat`` (1-based MATLAB indices)."""
    from .matfile import read_mat_arrays

    if split not in ("train", "test"):
        raise ValueError(f"NYU split must be 'train' or 'test', got {split!r}")
    n = nyu_dataset_size(mat_file)
    _require_file(splits_file, "NYU Depth v2 splits.mat")
    key = {"train": "trainNdxs", "test": "testNdxs"}[split]
    mat = read_mat_arrays(splits_file)  # not scipy's loadmat: it crashes on corrupt files
    try:
        indices = np.asarray(mat[key]).reshape(-1).astype(int) - 1
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise DepthDataError(f"{splits_file} has no usable {key!r} ({e})") from e
    if indices.size == 0 or indices.min() < 0 or indices.max() >= n:
        raise DepthDataError(f"{splits_file}: {key} must hold 1-based indices into the {n} "
                             f"images of {mat_file}")
    return [
        dict(file_name=mat_file, nyu_index=int(i), image_id=int(i),
             height=NYU_SIZE[0], width=NYU_SIZE[1])
        for i in indices
    ]


def load_kitti_eigen(root: str, split_file: str):
    """KITTI with the Eigen split, in the BTS/Monodepth list format: lines ``<rgb> <depth|None>
    <focal>`` with ``<rgb>`` relative to ``root/raw`` (KITTI raw, e.g. 2011_09_26/
    2011_09_26_drive_0002_sync/image_02/data/0000000069.png) and ``<depth>`` relative to
    ``root/depth/train`` or ``root/depth/val`` (KITTI depth completion's annotated maps,
    <drive>/proj_depth/groundtruth/image_02/<frame>.png, uint16, depth = value / 256, 0 =
    invalid). Lines without ground truth ("None") are skipped, as in the standard evaluation."""
    _require_file(split_file, "KITTI split file")
    dicts = []
    if True:  # (kept flat for the diff)
        for lineno, line in enumerate(_text_lines(split_file), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise DepthDataError(f"{split_file}:{lineno}: expected '<rgb> <depth> <focal>'")
            if parts[1] == "None":
                continue
            rgb = os.path.join(root, "raw", parts[0])
            cands = [os.path.join(root, "depth", s, parts[1]) for s in ("train", "val")]
            depth = next((c for c in cands if os.path.isfile(c)), None)
            if depth is None:
                raise DepthDataError(f"{split_file}:{lineno}: depth not found at {cands}")
            _require_file(rgb, f"KITTI image listed at {split_file}:{lineno}")
            height, width = image_size_or_none(rgb)  # KITTI drives differ by a few pixels
            dicts.append(dict(file_name=rgb, depth_file_name=depth, depth_scale=256.0,
                              image_id=len(dicts), height=height, width=width))
    if not dicts:
        raise DepthDataError(f"{split_file} lists no sample with ground truth")
    return dicts

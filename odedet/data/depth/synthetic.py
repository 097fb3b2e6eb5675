"""Write the synthetic scenes to disk in the list-file format, once, on first use.

Layout under ``root`` (default ``$DETECTRON2_DATASETS/odedet_depth_scenes``)::

    train.txt, val.txt       lines "<split>/rgb/NNNNN.png <split>/depth/NNNNN.png 1000"
    <split>/rgb/*.png        8-bit RGB renders
    <split>/depth/*.png      uint16 depth in millimetres (scale 1000), exact to 1 mm
    info.json                generator version, seed, counts, camera intrinsics (written last:
                             its presence with matching settings means the dataset is complete)
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import logging
import multiprocessing
import os
import shutil
import tempfile

import cv2
import numpy as np

from .formats import write_depth_png
from .scenes import Camera, render_scene, sample_scene

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 3  # 3: every scene has its own seed (parallel rendering)
DEPTH_SCALE = 1000.0  # uint16 millimetres
DEFAULT_COUNTS = {"train": 4000, "val": 200}
SCENES_MAX_DEPTH = 10.0  # every rendered depth is below this (room at most 8.5 m deep)
_MIN_PARALLEL = 64


def _settings(counts, seed, camera):
    return {"version": GENERATOR_VERSION, "seed": seed, "counts": dict(counts),
            "camera": dataclasses.asdict(camera), "depth_scale": DEPTH_SCALE}


def generate_scenes(root: str, counts=None, seed: int = 0, camera: Camera | None = None,
                    workers: int | None = None) -> str:
    """Render and write the dataset to ``root`` (replacing it). Scene i of a split is rendered
    from (``seed``, the split's name, i), so train and val never share a scene and the result
    does not depend on ``workers`` (processes; default: one per CPU core). Returns ``root``."""
    workers = workers or _usable_cpus()
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    camera = camera or Camera()
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".scenes-", dir=parent)  # atomic: build aside, then rename
    try:
        for split, n in counts.items():
            _write_split(tmp, split, n, seed, camera, workers)
        info = _settings(counts, seed, camera)
        info["intrinsics"] = camera.matrix()
        with open(os.path.join(tmp, "info.json"), "w") as f:
            json.dump(info, f, indent=1)
        if os.path.isdir(root):  # move aside first: readers never see a half-deleted tree
            stale = tempfile.mkdtemp(prefix=".scenes-stale-", dir=parent)
            os.replace(root, os.path.join(stale, "old"))
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, root)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    return root


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers)
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _split_key(split: str) -> int:
    return int.from_bytes(split.encode()[:8].ljust(8, b"\0"), "little")


def _render_one(root, split, i, seed, camera):
    """Render scene ``i`` of ``split`` from its own seed (reproducible alone, in any process)."""
    rng = np.random.default_rng([seed, _split_key(split), i])
    rgb, depth = render_scene(sample_scene(rng), camera, rng)
    rgb_rel, depth_rel = f"{split}/rgb/{i:05d}.png", f"{split}/depth/{i:05d}.png"
    if not cv2.imwrite(os.path.join(root, rgb_rel), rgb[:, :, ::-1]):
        raise OSError(f"could not write {os.path.join(root, rgb_rel)}")
    write_depth_png(os.path.join(root, depth_rel), depth, DEPTH_SCALE)
    return f"{rgb_rel} {depth_rel} {DEPTH_SCALE:g}\n"


def _write_split(root, split, n, seed, camera, workers):
    for sub in ("rgb", "depth"):
        os.makedirs(os.path.join(root, split, sub), exist_ok=True)
    render = functools.partial(_render_one, root, split, seed=seed, camera=camera)
    if workers > 1 and n >= _MIN_PARALLEL:  # small splits: not worth starting processes
        # spawn: no fork of a process that may hold torch / loader threads
        with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            lines = list(pool.map(render, range(n), chunksize=max(1, n // (8 * workers))))
    else:
        lines = [render(i) for i in range(n)]
    with open(os.path.join(root, f"{split}.txt"), "w") as f:
        f.writelines(lines)


def _is_current(root: str, counts, seed, camera) -> bool:
    info_path = os.path.join(root, "info.json")
    try:
        with open(info_path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return False
    info.pop("intrinsics", None)
    return info == json.loads(json.dumps(_settings(counts, seed, camera)))


@contextlib.contextmanager
def _generation_lock(root: str):
    """An exclusive lock on ``<root>.lock`` (next to the dataset), held while checking and
    generating: processes starting at once (DDP ranks, parallel test runs, two tools) generate
    the scenes once; the others wait, then find them complete."""
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    path = os.path.abspath(root).rstrip(os.sep) + ".lock"
    with open(path, "a") as f:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; generation stays atomic (rename), just racy
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_scenes(root: str, counts=None, seed: int = 0, camera: Camera | None = None) -> str:
    """Generate the dataset at ``root`` unless a complete one with these settings is there.
    Safe when several processes call it at once (see :func:`_generation_lock`)."""
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    camera = camera or Camera()
    if _is_current(root, counts, seed, camera):
        return root
    with _generation_lock(root):
        if _is_current(root, counts, seed, camera):  # another process generated it meanwhile
            return root
        if os.path.isfile(os.path.join(root, "info.json")):
            logger.info(f"{root} was generated with other settings; regenerating")
        logger.info(f"Rendering synthetic depth scenes {counts} into {root} (first use) ...")
        return generate_scenes(root, counts, seed, camera)

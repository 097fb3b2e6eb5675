"""Readers and ``load_*`` functions (lists of detectron2 dataset dicts) for depth datasets.

Dataset dicts carry: "file_name" (RGB image, or the NYU .mat), "image_id", "height", "width",
and how to read the ground truth: "depth_file_name" + "depth_scale" (a uint16 PNG holding
depth * scale, 0 = unknown; KITTI: scale 256), or "nyu_index" (an image of NYU Depth v2's
labelled .mat). :func:`read_depth_sample` reads either kind; errors name the file to fix.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
from detectron2.utils.file_io import PathManager

NYU_SIZE = (480, 640)  # H, W of NYU Depth v2 labelled images


from ..image_io import BadSampleError, read_image


class DepthDataError(BadSampleError):
    """A depth dataset file is missing or malformed; the message names the path. A
    :class:`~odedet.data.image_io.BadSampleError`, so that in a mapper it is a logged skip in
    training (DATALOADER.BAD_SAMPLES skip) and an error in evaluation, like a bad image."""


def _require_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise DepthDataError(f"{what} not found: {path} (see datasets/README.md for the layout)")


def read_depth_png(path: str, scale: float) -> np.ndarray:
    """A uint16 depth PNG as float32 metres (value / scale; 0 stays 0 = unknown)."""
    _require_file(path, "depth PNG")
    raw = _decode_depth(path)
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DepthDataError(
            f"depth PNG {path} must be single-channel uint16 (depth * scale), got "
            f"{raw.dtype} with shape {raw.shape}"
        )
    if not raw.any():
        raise DepthDataError(f"depth PNG {path} has no valid pixel (all zeros)")
    if not scale > 0:
        raise DepthDataError(f"depth scale for {path} must be > 0, got {scale}")
    return raw.astype(np.float32) / float(scale)


_PIL_16BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _decode_depth(path: str) -> np.ndarray:
    """The depth file's pixels, fully decoded by PIL (a truncated file raises instead of giving
    a partial map, as OpenCV may); 16-bit PIL modes come back as uint16."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            raw = np.asarray(im)
    except Image.UnidentifiedImageError as e:
        raise DepthDataError(f"cannot decode depth image {path}: not an image file") from e
    except Image.DecompressionBombError as e:
        raise DepthDataError(f"depth image {path} is too large to decode safely: {e}") from e
    except Exception as e:  # PIL: OSError, SyntaxError, ValueError, zlib errors, ...
        raise DepthDataError(f"depth image {path} is truncated or corrupt "
                             f"({type(e).__name__}: {e})") from e
    if mode in _PIL_16BIT:
        return raw.astype(np.uint16)
    if mode == "I" and raw.size and 0 <= raw.min() and raw.max() <= 65535:
        return raw.astype(np.uint16)  # some encoders' 16-bit gray PNGs open as mode "I"
    return raw


def write_depth_png(path: str, depth: np.ndarray, scale: float) -> None:
    """Inverse of :func:`read_depth_png`; depths beyond uint16 range after scaling become 0."""
    q = np.round(np.asarray(depth, np.float64) * scale)
    q[(q < 0) | (q > 65535) | ~np.isfinite(q)] = 0
    if not cv2.imwrite(path, q.astype(np.uint16)):
        raise OSError(f"could not write {path}")


_NYU_HANDLES: dict = {}
# What h5py raises on corrupt or unexpected files (besides crashing, which it does not here).
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)


def _nyu_file(path: str):
    """An open h5py handle per (process, path): HDF5 handles must not cross fork boundaries."""
    import h5py

    key = (os.getpid(), path)
    if key not in _NYU_HANDLES:
        _require_file(path, "NYU Depth v2 labelled .mat")
        try:
            _NYU_HANDLES[key] = h5py.File(path, "r")
        except _H5_ERRORS as e:
            raise DepthDataError(
                f"{path} is not an HDF5 (MATLAB v7.3) file: download nyu_depth_v2_labeled.mat "
                f"({e})"
            ) from e
    return _NYU_HANDLES[key]


def nyu_dataset_size(path: str) -> int:
    """Number of images in a labelled NYU .mat, after checking its keys and shapes."""
    f = _nyu_file(path)
    try:
        missing = [k for k in ("images", "depths") if k not in f]
        if missing:
            raise DepthDataError(
                f"{path} lacks the key(s) {missing}; is it nyu_depth_v2_labeled.mat?")
        images, depths = f["images"], f["depths"]
        if not (hasattr(images, "shape") and hasattr(depths, "shape")):
            raise DepthDataError(f"{path}: 'images' and 'depths' must be datasets, not groups")
        images.ndim, images.shape, depths.shape  # noqa: B018 - reading them may fail
    except DepthDataError:
        raise
    except _H5_ERRORS as e:
        raise DepthDataError(f"{path}: cannot read 'images'/'depths' ({type(e).__name__}: {e}); "
                             f"the file is corrupt or not nyu_depth_v2_labeled.mat") from e
    # MATLAB stores 480x640x3xN column-major; h5py sees it transposed: (N, 3, 640, 480).
    want_i, want_d = (3, NYU_SIZE[1], NYU_SIZE[0]), (NYU_SIZE[1], NYU_SIZE[0])
    if images.ndim != 4 or images.shape[1:] != want_i or depths.shape[1:] != want_d:
        raise DepthDataError(
            f"{path}: 'images' must be (N, 3, 640, 480) and 'depths' (N, 640, 480) as stored by "
            f"MATLAB, got {images.shape} and {depths.shape}"
        )
    if images.shape[0] != depths.shape[0]:
        raise DepthDataError(f"{path}: {images.shape[0]} images but {depths.shape[0]} depths")
    return images.shape[0]


def read_nyu(path: str, index: int):
    """(rgb uint8 (480, 640, 3), depth float32 (480, 640) metres) of image ``index``."""
    f = _nyu_file(path)
    try:
        rgb = np.ascontiguousarray(np.asarray(f["images"][index]).transpose(2, 1, 0))
        depth = np.ascontiguousarray(np.asarray(f["depths"][index], dtype=np.float32).T)
    except _H5_ERRORS as e:
        raise DepthDataError(f"{path}: cannot read image {index} ({type(e).__name__}: {e}); the "
                             f"file is truncated or corrupt") from e
    if rgb.shape != (*NYU_SIZE, 3) or depth.shape != NYU_SIZE:
        raise DepthDataError(f"{path}: image {index} is {rgb.shape} / depth {depth.shape}, "
                             f"expected {(*NYU_SIZE, 3)} / {NYU_SIZE}")
    if rgb.dtype != np.uint8:
        raise DepthDataError(f"{path}: 'images' must be uint8, got {rgb.dtype}")
    if not (depth > 0).any():
        raise DepthDataError(f"{path}: depth map {index} has no valid pixel")
    return rgb, depth


def read_depth_sample(dataset_dict: dict, image_format: str = "BGR", *, dataset_name: str = "",
                      max_pixels: int = 0, max_aspect_ratio: float = 0.0):
    """(image (H, W, C) uint8 in ``image_format``, depth (H, W) float32 metres or None)."""
    from detectron2.data.detection_utils import convert_PIL_to_numpy
    from PIL import Image

    if "nyu_index" in dataset_dict:
        rgb, depth = read_nyu(dataset_dict["file_name"], dataset_dict["nyu_index"])
        return convert_PIL_to_numpy(Image.fromarray(rgb), image_format), depth
    # odedet's robust reader: truncated / not an image / empty / odd modes -> BadImageError
    image = read_image(dataset_dict["file_name"], format=image_format, dataset_name=dataset_name,
                       max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
    depth = None
    if dataset_dict.get("depth_file_name"):
        depth = read_depth_png(dataset_dict["depth_file_name"], dataset_dict["depth_scale"])
        if depth.shape != image.shape[:2]:
            raise DepthDataError(
                f"depth {dataset_dict['depth_file_name']} is {depth.shape} but its image "
                f"{dataset_dict['file_name']} is {image.shape[:2]}"
            )
    return image, depth


def _image_size(path: str):
    """(height, width) from the image header only (no decoding)."""
    from PIL import Image

    try:
        with PathManager.open(path, "rb") as f, Image.open(f) as img:
            width, height = img.size
    except Exception as e:  # noqa: BLE001 - PIL raises many types on a broken header
        raise DepthDataError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    return height, width


def image_size_or_none(path: str):
    """(height, width) from the header, or (None, None) when the header cannot be read: the
    sample is kept, and the mapper's full read then skips it in training (logged) or stops
    evaluation, naming the file, exactly as for a detection image."""
    try:
        return _image_size(path)
    except DepthDataError:
        return None, None

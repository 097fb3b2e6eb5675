"""Robust image reading for every odedet mapper (detection, depth, classification).

:func:`read_image` returns an HWC uint8 array in the requested format, or raises
:class:`BadImageError` naming the file, the dataset and what is wrong:

==============================  ===============================================================
input                           behaviour
==============================  ===============================================================
missing file / not an image     BadImageError ("not found" / "not an image file")
truncated or corrupt            BadImageError ("truncated or corrupt"); never a partial image
grayscale, palette, CMYK        converted to the requested format (gray is replicated to 3 ch.)
RGBA / LA                       alpha channel dropped (the colour channels are kept as stored)
16-bit gray (PNG/TIFF I;16)     scaled to 8 bits over its full range (v * 255 / 65535)
EXIF orientation                applied (as detectron2's read_image), so width/height follow it
> INPUT.MAX_IMAGE_PIXELS        BadImageError before decoding (no multi-GB allocation)
aspect > INPUT.MAX_ASPECT_RATIO BadImageError (resized, its short side would vanish in the FPN)
==============================  ===============================================================

:class:`SkipBadSamples` turns these errors into a logged skip in training (detectron2's
``MapDataset`` then re-samples another index; identical with 0 or N DataLoader workers) and
keeps them errors in evaluation, where a skipped image would silently change the metrics.
"""
from __future__ import annotations

import logging

import numpy as np
from detectron2.data.detection_utils import _apply_exif_orientation, convert_PIL_to_numpy
from detectron2.utils.file_io import PathManager
from PIL import Image

logger = logging.getLogger(__name__)

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class BadSampleError(ValueError):
    """A dataset sample that cannot be used; the message names the file and the dataset.

    Subclass it for other file kinds (depth maps, labels) so :class:`SkipBadSamples` handles them.
    """


class BadImageError(BadSampleError):
    """An image file that cannot be read into a usable image."""


def _where(file_name: str, dataset_name: str) -> str:
    return f"image {file_name}" + (f" (dataset {dataset_name!r})" if dataset_name else "")


def _check_size(image: Image.Image, where: str, max_pixels: int, max_aspect_ratio: float):
    w, h = image.size
    if w < 1 or h < 1:
        raise BadImageError(f"{where} has an empty size {w}x{h}")
    if max_pixels and w * h > max_pixels:
        raise BadImageError(
            f"{where} is {w}x{h} = {w * h} pixels, more than INPUT.MAX_IMAGE_PIXELS="
            f"{max_pixels}; downscale it or raise INPUT.MAX_IMAGE_PIXELS"
        )
    aspect = max(w, h) / min(w, h)
    if max_aspect_ratio and aspect > max_aspect_ratio:
        raise BadImageError(
            f"{where} is {w}x{h} (aspect ratio {aspect:.1f} > INPUT.MAX_ASPECT_RATIO="
            f"{max_aspect_ratio:g}); resized for the model its short side would shrink below the "
            f"backbone's stride. Crop it into tiles or raise INPUT.MAX_ASPECT_RATIO"
        )


def _to_8bit(image: Image.Image, where: str) -> Image.Image:
    """16-bit gray -> 8-bit gray over the full 16-bit range; other modes pass through."""
    if image.mode not in _SIXTEEN_BIT:
        if image.mode in ("F", "I;32"):
            raise BadImageError(f"{where} has float/32-bit pixels (PIL mode {image.mode!r})")
        return image
    arr = np.asarray(image).astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise BadImageError(f"{where} has 32-bit pixel values outside 0..65535")
    return Image.fromarray((arr * 255 // 65535).astype(np.uint8), mode="L")


def read_image(
    file_name: str,
    format: str | None = "BGR",
    *,
    dataset_name: str = "",
    max_pixels: int = 0,
    max_aspect_ratio: float = 0.0,
) -> np.ndarray:
    """Read ``file_name`` as an HWC uint8 array in ``format`` (detectron2's names: "BGR", "RGB",
    "L", ...), EXIF orientation applied. ``max_pixels``/``max_aspect_ratio`` of 0 disable those
    checks. Raises :class:`BadImageError` (table in the module docstring)."""
    where = _where(file_name, dataset_name)
    try:
        with PathManager.open(file_name, "rb") as f:
            image = Image.open(f)
            _check_size(image, where, max_pixels, max_aspect_ratio)
            image.load()  # decode now, inside the try: truncation errors surface here
    except BadImageError:
        raise
    except FileNotFoundError as e:
        raise BadImageError(f"{where} not found") from e
    except Image.UnidentifiedImageError as e:
        raise BadImageError(f"{where} is not an image file PIL can read") from e
    except Image.DecompressionBombError as e:
        raise BadImageError(f"{where} is too large to decode safely: {e}") from e
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, zlib errors, ...
        raise BadImageError(f"{where} is truncated or corrupt ({type(e).__name__}: {e})") from e
    image = _apply_exif_orientation(image)
    image = _to_8bit(image, where)
    try:
        array = convert_PIL_to_numpy(image, format)
    except ValueError as e:
        raise BadImageError(f"{where}: cannot convert PIL mode {image.mode!r} to {format}") from e
    return np.ascontiguousarray(array)


class SkipBadSamples:
    """Wrap a mapper: a :class:`BadSampleError` becomes a logged skip (``None``, which detectron2's
    MapDataset answers by re-sampling another index) when ``skip`` is true, else it propagates.

    ``max_consecutive`` bad samples in a row mean the dataset itself is broken (wrong root, wrong
    format): that stops with an error instead of re-sampling forever. Picklable, so it behaves
    the same in DataLoader worker processes as in the main process.
    """

    def __init__(self, mapper, *, skip: bool = True, max_consecutive: int = 10):
        self.mapper = mapper
        self.skip = skip
        self.max_consecutive = max_consecutive
        self._consecutive = 0
        self.skipped: list[str] = []  # per process: each DataLoader worker keeps its own list

    def __call__(self, dataset_dict: dict):
        try:
            out = self.mapper(dataset_dict)
        except BadSampleError as e:
            if not self.skip:
                raise
            self._consecutive += 1
            self.skipped.append(str(dataset_dict.get("file_name", "?")))
            if self._consecutive >= self.max_consecutive:
                raise BadSampleError(
                    f"{self._consecutive} samples in a row could not be read (last: {e}); the "
                    f"dataset looks broken: check its root directory and files"
                ) from e
            logger.warning(f"Skipping a bad training sample (DATALOADER.BAD_SAMPLES=skip): {e}")
            return None
        self._consecutive = 0
        return out

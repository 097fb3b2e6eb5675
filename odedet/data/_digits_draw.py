"""Drawing of one synthetic-digits image: real handwritten digits on clutter, with occlusion.

The objects are scikit-learn's 8x8 handwritten digits (``sklearn.datasets.load_digits``, real
scans from 43 writers), cropped to their ink, upsampled to the object's size, optionally
rotated, and alpha-composited in a colour contrasting with what lies under them. Around them:
a textured background (gradient, blotches, a grating or checker pattern or fine noise),
unannotated clutter (pen-like strokes, outlined and filled shapes) and, after the digits,
opaque occluders that may hide part of a digit. Pure functions of a numpy ``Generator`` plus
the digit images, so an image is reproducible from its seed alone.
"""
from __future__ import annotations

import cv2
import numpy as np

from ._shapes_draw import _background, _box_iou, _contrasting_color, _mask, _polygon

CLASSES = tuple(str(d) for d in range(10))
# Visualizer colours per class (RGB); the digits themselves are drawn in random colours.
COLORS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
          (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))
_EMPTY_IMAGE_PROB = 0.04  # images without any digit (negatives)
_MAX_HIDDEN = 0.35  # later digits and occluders may cover at most this fraction of a digit's ink
_INK = 0.5  # alpha above which a pixel counts as the digit's ink (visibility bookkeeping)
_BOX_ALPHA = 0.25  # alpha above which a pixel is inside the annotated box


def _texture(rng, img: np.ndarray) -> np.ndarray:
    """Add one of: a sinusoidal grating, a checkerboard, fine noise, or nothing."""
    size = img.shape[0]
    kind = rng.integers(4)
    amp = rng.uniform(10, 35)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == 0:  # grating of random period and orientation
        a, period = rng.uniform(0, np.pi), rng.uniform(4, 20)
        pattern = np.sin(2 * np.pi * (np.cos(a) * xx + np.sin(a) * yy) / period)
    elif kind == 1:  # checkerboard
        cell = rng.uniform(4, 16)
        pattern = ((xx // cell + yy // cell) % 2) * 2.0 - 1.0
    elif kind == 2:  # fine noise texture (2..4 px grain)
        grain = int(rng.integers(2, 5))
        cells = rng.normal(0, 1, (size // grain + 1, size // grain + 1)).astype(np.float32)
        pattern = cv2.resize(cells, (size, size), interpolation=cv2.INTER_LINEAR)
    else:
        return img
    tint = rng.uniform(0.5, 1.0, 3)
    return img + amp * pattern[..., None] * tint


def _clutter(rng, img: np.ndarray, n: int) -> None:
    """Unannotated distractors drawn under the digits: pen-like strokes and shapes."""
    size = img.shape[0]
    for _ in range(n):
        color = tuple(float(v) for v in rng.uniform(0, 255, 3))
        if rng.random() < 0.6:  # a stroke: a smooth random polyline, digit-like thickness
            k = int(rng.integers(3, 7))
            start = rng.uniform(0, size, 2)
            steps = np.cumsum(rng.normal(0, size / 10, (k, 2)), 0)
            pts = np.round((start + steps) * 16).astype(np.int32)
            cv2.polylines(img, [pts], False, color, int(rng.integers(1, 4)), cv2.LINE_AA, 4)
        else:  # a shape, filled or outlined
            kind = ("circle", "rectangle", "triangle")[int(rng.integers(3))]
            poly = _polygon(rng, kind, rng.uniform(6, size / 3)) + rng.uniform(0, size, 2)
            pts = np.round(poly * 16).astype(np.int32)
            if rng.random() < 0.5:
                cv2.fillPoly(img, [pts], color, cv2.LINE_AA, 4)
            else:
                cv2.polylines(img, [pts], True, color, int(rng.integers(1, 3)), cv2.LINE_AA, 4)


def digit_alpha(rng, digit: np.ndarray, height: float) -> np.ndarray:
    """The 8x8 digit (values 0..16) cropped to its ink, resized to ``height`` px tall (width
    by its aspect ratio, jittered), sharpened a little and randomly rotated: alpha in [0, 1]."""
    ink = digit > 0
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = digit[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1].astype(np.float32) / 16.0
    crop = np.pad(crop, 1)  # a zero border so the upsampled ink fades out inside the patch
    h = max(int(round(height * crop.shape[0] / (crop.shape[0] - 2))), 4)
    w = max(int(round(h * crop.shape[1] / crop.shape[0] * rng.uniform(0.8, 1.2))), 3)
    alpha = cv2.resize(crop, (w, h), interpolation=cv2.INTER_CUBIC)
    alpha = np.clip((alpha - 0.15) / 0.55, 0, 1)  # crisper strokes than the bilinear blur
    angle = rng.uniform(-20, 20) if rng.random() < 0.6 else 0.0
    if angle:
        side = int(np.ceil(np.hypot(h, w))) + 2
        canvas = np.zeros((side, side), np.float32)
        y0, x0 = (side - h) // 2, (side - w) // 2
        canvas[y0: y0 + h, x0: x0 + w] = alpha
        m = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), angle, 1.0)
        alpha = cv2.warpAffine(canvas, m, (side, side), flags=cv2.INTER_LINEAR)
    rows = np.flatnonzero((alpha > _BOX_ALPHA).any(1))
    cols = np.flatnonzero((alpha > _BOX_ALPHA).any(0))
    return alpha[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]


def _hides_too_much(new_mask, label, full) -> bool:
    """Would covering ``new_mask`` leave some earlier digit with < (1 - _MAX_HIDDEN) of its
    ink visible? (``label``: per-pixel index+1 of the visible digit, 0 = none.)"""
    if not full:
        return False
    visible = np.bincount(label.ravel(), minlength=len(full) + 1)[1:]
    hidden = np.bincount(label[new_mask], minlength=len(full) + 1)[1:]
    return bool(np.any(visible - hidden < (1 - _MAX_HIDDEN) * np.asarray(full)))


def draw_image(rng, params, digits: np.ndarray, targets: np.ndarray, sources: np.ndarray):
    """One image (uint8 RGB) and its digits as COCO annotation dicts (bbox XYWH, category_id
    1..10 for digits 0..9, area, ``source_index`` = the digit's index in ``load_digits``).
    Digits are drawn from ``sources`` (indices into ``digits``/``targets``) only."""
    size = params.image_size
    img = _texture(rng, _background(rng, size))
    _clutter(rng, img, int(rng.integers(params.max_clutter // 2, params.max_clutter + 1)))
    n = 0 if rng.random() < _EMPTY_IMAGE_PROB else int(rng.integers(1, params.max_objects + 1))
    label, full, boxes, objects = np.zeros((size, size), np.int64), [], [], []
    for _ in range(n):
        src = int(sources[rng.integers(len(sources))])
        alpha = digit_alpha(rng, digits[src], float(rng.uniform(params.min_size, params.max_size)))
        h, w = alpha.shape
        if h > size or w > size:
            continue
        for _try in range(30):
            y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            box = (x, y, x + w, y + h)
            if any(_box_iou(box, b) > params.max_overlap for b in boxes):
                continue
            ink = np.zeros((size, size), bool)
            ink[y: y + h, x: x + w] = alpha > _INK
            if not _hides_too_much(ink, label, full):
                break
        else:
            continue
        color = np.asarray(_contrasting_color(rng, img, box))
        region = img[y: y + h, x: x + w]
        a = alpha[..., None]
        region[...] = region * (1 - a) + color * a
        label[ink] = len(full) + 1
        full.append(int(ink.sum()))
        boxes.append(box)
        objects.append(dict(category_id=int(targets[src]) + 1, bbox=[x, y, w, h],
                            area=float(w * h), source_index=src))
    # occluders: opaque shapes over the digits, each hiding at most _MAX_HIDDEN of any digit
    for _ in range(int(rng.integers(0, params.max_occluders + 1)) if boxes else 0):
        b = boxes[int(rng.integers(len(boxes)))]
        side = rng.uniform(0.3, 0.7) * max(b[2] - b[0], b[3] - b[1])
        kind = ("circle", "rectangle", "triangle")[int(rng.integers(3))]
        centre = np.array([rng.uniform(b[0], b[2]), rng.uniform(b[1], b[3])])
        poly = _polygon(rng, kind, max(side, 3.0)) + centre
        mask = _mask(poly, size)
        if _hides_too_much(mask, label, full):
            continue
        label[mask] = 0
        color = tuple(float(v) for v in rng.uniform(0, 255, 3))
        cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], color, cv2.LINE_AA, 4)
    if rng.random() < 0.3:  # slight defocus
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.9))
    img += rng.normal(0, rng.uniform(2, 10), img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), objects

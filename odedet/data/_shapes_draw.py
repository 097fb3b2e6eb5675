"""Drawing of one synthetic-shapes image: background texture, shapes, COCO annotations.

Pure functions of a numpy ``Generator`` (no global random state), so an image is reproducible
from its seed alone. Shapes are polygons in continuous pixel coordinates (x right, y down); the
annotation box is the polygon's extent, the segmentation is the polygon itself.
"""
from __future__ import annotations

import cv2
import numpy as np

CLASSES = ("circle", "rectangle", "triangle")
# Visualizer colours per class (RGB), not the colours shapes are drawn with (those are random).
COLORS = ((220, 60, 60), (60, 180, 75), (70, 110, 230))
_SHIFT = 4  # sub-pixel bits for cv2.fillPoly
_EMPTY_IMAGE_PROB = 0.05  # images without any object (negatives)
_MAX_HIDDEN = 0.3  # a later shape may cover at most this fraction of an earlier one
_MIN_CONTRAST = 150  # L1 distance (RGB, 0..765) of a shape's colour from what lies under it


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float image: colour gradient + low-frequency blotches + clutter lines."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    img = c0 + (c1 - c0) * ramp[..., None]
    cells = int(rng.integers(3, 9))
    blotches = rng.normal(0, rng.uniform(5, 20), (cells, cells, 3)).astype(np.float32)
    img += cv2.resize(blotches, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(0, 4))):
        p0, p1 = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        color = tuple(float(v) for v in np.clip(img.mean((0, 1)) + rng.normal(0, 30, 3), 0, 255))
        cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), color, 1, cv2.LINE_AA)
    return img


def _polygon(rng: np.random.Generator, kind: str, side: float) -> np.ndarray:
    """(K, 2) vertices centred on 0 whose longer extent is about ``side`` px."""
    r = side / 2
    if kind == "circle":
        a = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)
    if kind == "rectangle":
        w, h = side, side * rng.uniform(0.4, 1.0)
        if rng.random() < 0.5:
            w, h = h, w
        pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        theta = rng.uniform(-np.pi / 6, np.pi / 6) if rng.random() < 0.5 else 0.0
    elif kind == "triangle":
        a0 = rng.uniform(0, 2 * np.pi)
        a1 = a0 + np.deg2rad(rng.uniform(100, 140))
        a2 = a1 + np.deg2rad(rng.uniform(100, 140))
        a = np.array([a0, a1, a2])
        pts, theta = np.stack([r * np.cos(a), r * np.sin(a)], 1), 0.0
    else:
        raise ValueError(f"unknown shape {kind!r}; known: {CLASSES}")
    c, s = np.cos(theta), np.sin(theta)
    return pts @ np.array([[c, s], [-s, c]])


def _box_iou(a, b) -> float:
    """IoU of two XYXY boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _mask(poly: np.ndarray, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(poly * (1 << _SHIFT)).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return mask.astype(bool)


def _place(rng, poly: np.ndarray, size: int, boxes: list, max_overlap: float, label, full):
    """Translate ``poly`` to a random spot inside the image where its box has IoU <=
    ``max_overlap`` with every earlier box and at most ``_MAX_HIDDEN`` of any earlier shape ends
    up hidden (``label``: per-pixel index+1 of the visible shape, 0 = background; ``full``:
    earlier shapes' unoccluded pixel counts). Returns (polygon, XYXY box, mask), or None if 30
    tries fail."""
    lo, hi = poly.min(0), poly.max(0)
    visible = np.bincount(label.ravel(), minlength=len(boxes) + 1)[1:]
    full = np.asarray(full, dtype=np.int64)
    for _ in range(30):
        centre = rng.uniform(-lo, size - hi)
        box = np.concatenate([lo + centre, hi + centre])
        if not all(_box_iou(box, b) <= max_overlap for b in boxes):
            continue
        mask = _mask(poly + centre, size)
        hidden = np.bincount(label[mask], minlength=len(boxes) + 1)[1:]
        if np.all(visible - hidden >= (1 - _MAX_HIDDEN) * full):
            return poly + centre, box, mask
    return None


def _contrasting_color(rng, background: np.ndarray, box) -> tuple:
    """A random colour at least _MIN_CONTRAST (L1 over RGB) from the mean under ``box``."""
    x0, y0, x1, y1 = (int(v) for v in box)
    local = background[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].reshape(-1, 3).mean(0)
    color = rng.uniform(0, 255, 3)
    for _ in range(50):
        if np.abs(color - local).sum() >= _MIN_CONTRAST:
            break
        color = rng.uniform(0, 255, 3)
    return tuple(float(v) for v in color)


def _xywh_outward(box) -> list[float]:
    """XYXY -> COCO XYWH at 0.01 px, rounded outward so the box still contains the shape."""
    x0, y0 = np.floor(np.asarray(box[:2]) * 100) / 100
    x1, y1 = np.ceil(np.asarray(box[2:]) * 100) / 100
    return [float(x0), float(y0), round(float(x1 - x0), 2), round(float(y1 - y0), 2)]


def draw_image(rng: np.random.Generator, params) -> tuple[np.ndarray, list[dict]]:
    """One image (uint8 RGB, HxWx3) and its objects as COCO annotation dicts (bbox XYWH in
    pixels, category_id 1..len(CLASSES), area, polygon segmentation); ``params`` is a
    ``ShapesParams``."""
    size = params.image_size
    img = _background(rng, size)
    n = 0 if rng.random() < _EMPTY_IMAGE_PROB else int(rng.integers(1, params.max_objects + 1))
    boxes, objects = [], []
    label, full = np.zeros((size, size), np.int64), []
    for _ in range(n):
        k = int(rng.integers(len(CLASSES)))
        poly = _polygon(rng, CLASSES[k], rng.uniform(params.min_size, params.max_size))
        placed = _place(rng, poly, size, boxes, params.max_overlap, label, full)
        if placed is None:
            continue
        poly, box, mask = placed
        label[mask] = len(boxes) + 1
        full.append(int(mask.sum()))
        color = _contrasting_color(rng, img, box)
        pts = np.round(poly * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA, _SHIFT)
        boxes.append(box)
        objects.append(dict(
            category_id=k + 1,
            bbox=_xywh_outward(box),
            area=round(float(cv2.contourArea(poly.astype(np.float32))), 2),
            segmentation=[[round(float(v), 2) for v in poly.reshape(-1)]],
        ))
    img += rng.normal(0, rng.uniform(2, 8), img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), objects

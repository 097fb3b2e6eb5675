"""Run a trained model on images, folders or videos and draw what it predicts.

The model is whatever ``MODEL.META_ARCHITECTURE`` the config names; how its outputs are drawn is
looked up in :data:`RENDERERS` by the same name, so each application registers its own drawing
(detection here: detectron2's ``Visualizer``; the depth estimator registers its colour map)::

    @register_renderer("MyMetaArch")
    def render(image_rgb, outputs, metadata, threshold) -> np.ndarray: ...  # HxWx3 uint8 RGB
"""
from __future__ import annotations

import glob
import logging
import os
from typing import Callable

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.utils.visualizer import Visualizer

from odedet.data.image_io import BadImageError, read_image
from odedet.registry import keyed_register

from .checkpoint import load_weights
from .trainer import Trainer

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# MODEL.META_ARCHITECTURE -> render(image_rgb, outputs, metadata, threshold) -> RGB uint8 image
RENDERERS: dict[str, Callable] = {}


register_renderer = keyed_register(RENDERERS, "a renderer")


def titled_panels(panels, titles, bar: int = 0) -> np.ndarray:
    """Panels (H, W, 3 uint8 images of one height) side by side, each under a white bar with its
    title (e.g. "ground truth" | "prediction"), so a saved figure says what is what."""
    height = max(p.shape[0] for p in panels)
    bar = bar or max(18, height // 12)
    out = []
    for panel, title in zip(panels, titles):
        head = np.full((bar, panel.shape[1], 3), 255, np.uint8)
        (w1, _), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
        scale = min(bar / 30.0, 0.95 * panel.shape[1] / w1)  # fits the bar and the panel
        (w, h), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        org = (max(2, (panel.shape[1] - w) // 2), (bar + h) // 2)
        cv2.putText(head, title, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    max(1, int(round(scale * 1.5))), cv2.LINE_AA)
        out.append(np.vstack([head, panel]))
    return np.hstack(out)


@register_renderer("GeneralizedRCNN")
def render_detections(image_rgb, outputs, metadata, threshold):
    """Boxes, class names and scores of detections scoring at least ``threshold``."""
    instances = outputs["instances"].to("cpu")
    instances = instances[instances.scores >= threshold]
    return Visualizer(image_rgb, metadata).draw_instance_predictions(instances).get_image()


def get_renderer(meta_architecture: str) -> Callable:
    if meta_architecture not in RENDERERS:
        raise KeyError(f"no demo renderer for MODEL.META_ARCHITECTURE {meta_architecture!r}; "
                       f"known: {sorted(RENDERERS)} (add one with register_renderer)")
    return RENDERERS[meta_architecture]


def dataset_metadata(cfg):
    """Metadata (class names, colours) of the first test (else train) dataset of ``cfg``."""
    names = list(cfg.DATASETS.TEST) or list(cfg.DATASETS.TRAIN)
    if not names:
        return MetadataCatalog.get("__unused")
    meta = MetadataCatalog.get(names[0])
    if not hasattr(meta, "thing_classes") and hasattr(meta, "json_file"):
        DatasetCatalog.get(names[0])  # a COCO-json dataset learns its class names when loaded
    return meta


class Predictor:
    """The model of ``cfg`` with ``MODEL.WEIGHTS`` (loaded weights-only, all keys must match),
    applied to one BGR image at the test resolution (``INPUT.MIN_SIZE_TEST``/``MAX_SIZE_TEST``).
    Outputs are at the original image size, as the model's postprocessing returns them."""

    def __init__(self, cfg):
        if not cfg.MODEL.WEIGHTS:
            raise ValueError("the demo needs trained weights: set MODEL.WEIGHTS "
                             "(e.g. output/model_final.pth)")
        self.cfg = cfg.clone()
        self.model = Trainer.build_model(self.cfg)
        self.model.eval()
        load_weights(self.model, cfg.MODEL.WEIGHTS)
        self.aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        self.input_format = cfg.INPUT.FORMAT

    @torch.no_grad()
    def __call__(self, image_bgr: np.ndarray) -> dict:
        image = image_bgr[:, :, ::-1] if self.input_format == "RGB" else image_bgr
        height, width = image.shape[:2]
        resized = self.aug.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)),
                                 dtype=torch.float32)
        return self.model([{"image": tensor, "height": height, "width": width}])[0]


def image_paths(inputs) -> list[str]:
    """Image files named by ``inputs``: files, folders (their images, sorted) or glob patterns."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item)
                           if f.lower().endswith(IMAGE_EXTENSIONS))
        else:
            found = [item] if os.path.isfile(item) else sorted(glob.glob(os.path.expanduser(item)))
        if not found:
            raise FileNotFoundError(f"--input {item}: no such image file, folder with images "
                                    f"({', '.join(IMAGE_EXTENSIONS)}) or matching glob")
        paths.extend(found)
    return paths


def _output_path(output: str, src: str, single: bool) -> str:
    if single and output.lower().endswith(IMAGE_EXTENSIONS):
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        return output
    os.makedirs(output, exist_ok=True)
    return os.path.join(output, os.path.basename(src))


def read_inputs(paths, cfg):
    """(path, BGR image) for each input, read by odedet's robust reader (INPUT.MAX_IMAGE_PIXELS,
    INPUT.MAX_ASPECT_RATIO apply): a bad image among several is skipped with a warning naming
    it; a bad image given alone raises :class:`BadImageError`."""
    for path in paths:
        try:
            image = read_image(path, format="BGR", max_pixels=cfg.INPUT.MAX_IMAGE_PIXELS,
                               max_aspect_ratio=cfg.INPUT.MAX_ASPECT_RATIO)
        except BadImageError as e:
            if len(paths) == 1:
                raise
            logger.warning(f"Skipping an input that cannot be used: {e}")
            continue
        yield path, image


def write_image(dst: str, image_bgr: np.ndarray) -> str:
    """``cv2.imwrite`` that fails loudly: an OSError naming ``dst`` unless a non-empty file was
    written (unknown extension, missing folder, full disk, ...)."""
    try:
        ok = cv2.imwrite(dst, np.ascontiguousarray(image_bgr))
    except cv2.error as e:
        raise OSError(f"could not write {dst}: {str(e).strip().splitlines()[-1]}") from e
    if not ok or not os.path.isfile(dst) or os.path.getsize(dst) == 0:
        raise OSError(f"could not write {dst} (is the folder writable, and the extension an "
                      f"image format OpenCV writes?)")
    return dst


def run_on_images(predictor, paths, output, threshold=0.5) -> list[str]:
    """Draw predictions on each image; writes ``output`` (a file, for one image) or
    ``output/<basename>``. Returns the written paths (each checked to exist)."""
    render = get_renderer(predictor.cfg.MODEL.META_ARCHITECTURE)
    meta = dataset_metadata(predictor.cfg)
    written = []
    for path, image in read_inputs(paths, predictor.cfg):
        vis = render(image[:, :, ::-1], predictor(image), meta, threshold)
        dst = write_image(_output_path(output, path, len(paths) == 1), vis[:, :, ::-1])
        written.append(dst)
        logger.info(f"{path} -> {dst}")
    return written


def run_on_video(predictor, video, output, threshold=0.5) -> tuple[str, int]:
    """Draw predictions on every frame of ``video`` into an mp4 (``output`` file, or
    ``output/<name>.mp4`` for a folder). Returns (written path, number of frames)."""
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise FileNotFoundError(f"--video-input {video}: cannot open (missing or not a video)")
    render = get_renderer(predictor.cfg.MODEL.META_ARCHITECTURE)
    meta = dataset_metadata(predictor.cfg)
    if not output.lower().endswith((".mp4", ".avi", ".mkv")):
        os.makedirs(output, exist_ok=True)
        output = os.path.join(output, os.path.splitext(os.path.basename(video))[0] + ".mp4")
    else:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer, frames = None, 0
    try:
        ok, frame = cap.read()
        while ok:
            vis = np.ascontiguousarray(render(frame[:, :, ::-1], predictor(frame), meta,
                                              threshold)[:, :, ::-1])
            if writer is None:
                fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                writer = cv2.VideoWriter(output, fourcc, fps, (vis.shape[1], vis.shape[0]))
                if not writer.isOpened():  # OpenCV then drops every frame without a word
                    raise OSError(
                        f"cannot write the video {output}: OpenCV's VideoWriter (codec mp4v) "
                        f"did not open it; check the folder is writable and the name ends in "
                        f".mp4, or write frames to a folder with --input")
            writer.write(vis)
            frames += 1
            ok, frame = cap.read()
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        raise ValueError(f"--video-input {video}: no frames could be read")
    if not os.path.isfile(output) or os.path.getsize(output) == 0:
        raise OSError(f"the video {output} was not written ({frames} frames were rendered)")
    return output, frames

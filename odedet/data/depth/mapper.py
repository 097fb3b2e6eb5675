"""DepthDatasetMapper: reads an image and its depth map, augments both consistently."""
from __future__ import annotations

import copy
import logging
from typing import List

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..image_io import BadSampleError, SkipBadSamples
from ..mappers import register_mapper_factory
from ..robust_mapper import skip_policy
from .formats import DepthDataError, read_depth_sample

logger = logging.getLogger(__name__)


class DepthDatasetMapper:
    """Dataset dict -> model input: "image" (C, H, W) uint8 tensor in the model's format, and
    "depth" (H, W) float32 metres (0 = unknown) when the dataset has ground truth.

    Training: the augmentations (resize, flip, crop) are applied to image and depth alike; depth
    is resampled with nearest neighbour so unknown (0) pixels never blend into valid ones.
    Testing: only the image is resized; "depth" stays at the original resolution, which is
    where the evaluator compares (predictions are resized back to "height" x "width").
    """

    @configurable
    def __init__(self, is_train: bool, *, augmentations: List, image_format: str,
                 dataset_name: str = "", max_pixels: int = 0, max_aspect_ratio: float = 0.0):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.dataset_name = dataset_name
        self.max_pixels, self.max_aspect_ratio = max_pixels, max_aspect_ratio
        logger.info(f"[DepthDatasetMapper] augmentations ({'train' if is_train else 'test'}): "
                    f"{augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        augs = utils.build_augmentation(cfg, is_train)
        if is_train and cfg.INPUT.CROP.ENABLED:  # after the resize: crops of the trained scale
            augs.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
        names = cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST
        return {"is_train": is_train, "augmentations": augs, "image_format": cfg.INPUT.FORMAT,
                "dataset_name": ",".join(names), "max_pixels": cfg.INPUT.MAX_IMAGE_PIXELS,
                "max_aspect_ratio": cfg.INPUT.MAX_ASPECT_RATIO}

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image, depth = read_depth_sample(
            dataset_dict, self.image_format, dataset_name=self.dataset_name,
            max_pixels=self.max_pixels, max_aspect_ratio=self.max_aspect_ratio)
        size = image.shape[:2]
        if dataset_dict.get("height") is None or dataset_dict.get("width") is None:
            dataset_dict["height"], dataset_dict["width"] = size
        elif (dataset_dict["height"], dataset_dict["width"]) != size:
            # the evaluator resizes predictions to height x width: a stale size would mis-size
            raise BadSampleError(
                f"image {dataset_dict['file_name']} is {size[1]}x{size[0]} but its dataset entry "
                f"says {dataset_dict['width']}x{dataset_dict['height']} (dataset "
                f"{self.dataset_name!r}); re-create the list / dataset entry")
        if self.is_train:
            if depth is None:
                raise DepthDataError(f"training sample {dataset_dict['file_name']} has no depth "
                                     f"(dataset {self.dataset_name!r})")
            aug_input = T.AugInput(image, sem_seg=depth)
            self.augmentations(aug_input)
            image, depth = aug_input.image, aug_input.sem_seg
        else:
            aug_input = T.AugInput(image)
            self.augmentations(aug_input)
            image = aug_input.image
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if depth is not None:
            dataset_dict["depth"] = torch.as_tensor(np.ascontiguousarray(depth, np.float32))
        return dataset_dict


@register_mapper_factory("DepthEstimator")
def build_depth_mapper(cfg, is_train: bool) -> SkipBadSamples:
    """The depth mapper, with detection's bad-sample policy: a bad image / depth file is a
    logged skip in training (DATALOADER.BAD_SAMPLES skip), an error naming it in evaluation."""
    return SkipBadSamples(DepthDatasetMapper(cfg, is_train), skip=skip_policy(cfg, is_train))

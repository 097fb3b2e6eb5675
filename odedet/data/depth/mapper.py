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

from ..mappers import register_mapper_factory
from .formats import read_depth_sample

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
    def __init__(self, is_train: bool, *, augmentations: List, image_format: str):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        logger.info(f"[DepthDatasetMapper] augmentations ({'train' if is_train else 'test'}): "
                    f"{augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        augs = utils.build_augmentation(cfg, is_train)
        if is_train and cfg.INPUT.CROP.ENABLED:  # after the resize: crops of the trained scale
            augs.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
        return {"is_train": is_train, "augmentations": augs, "image_format": cfg.INPUT.FORMAT}

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image, depth = read_depth_sample(dataset_dict, self.image_format)
        dataset_dict.setdefault("height", image.shape[0])
        dataset_dict.setdefault("width", image.shape[1])
        if self.is_train:
            if depth is None:
                raise ValueError(f"training sample {dataset_dict['file_name']} has no depth")
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
def build_depth_mapper(cfg, is_train: bool) -> DepthDatasetMapper:
    return DepthDatasetMapper(cfg, is_train)

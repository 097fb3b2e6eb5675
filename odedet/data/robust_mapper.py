"""The default detection mapper, made robust: detectron2's DatasetMapper reading images through
:func:`odedet.data.image_io.read_image`, wrapped in :class:`~odedet.data.image_io.SkipBadSamples`.
"""
from __future__ import annotations

import copy
import random

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import (
    DatasetFromList,
    DatasetMapper,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .image_io import BadSampleError, SkipBadSamples, read_image


class CheckedDatasetMapper(DatasetMapper):
    """detectron2's DatasetMapper with :func:`read_image`'s checks and conversions (bad files
    raise :class:`BadImageError` naming file and dataset) and annotation size mismatches raised
    as :class:`BadSampleError`. Everything after reading is detectron2's code path."""

    @configurable
    def __init__(
        self, is_train: bool, *, dataset_name: str = "", max_pixels: int = 0,
        max_aspect_ratio: float = 0.0, **kwargs
    ):
        super().__init__(is_train, **kwargs)
        self.dataset_name = dataset_name
        self.max_pixels = max_pixels
        self.max_aspect_ratio = max_aspect_ratio

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        names = cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST
        ret.update(
            dataset_name=",".join(names),
            max_pixels=cfg.INPUT.MAX_IMAGE_PIXELS,
            max_aspect_ratio=cfg.INPUT.MAX_ASPECT_RATIO,
        )
        return ret

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(
            dataset_dict["file_name"], self.image_format, dataset_name=self.dataset_name,
            max_pixels=self.max_pixels, max_aspect_ratio=self.max_aspect_ratio,
        )
        try:
            utils.check_image_size(dataset_dict, image)
        except utils.SizeMismatchError as e:
            raise BadSampleError(f"{e} (dataset {self.dataset_name!r})") from e
        # From here on: detectron2's DatasetMapper.__call__ (v0.6).
        sem_seg = None
        if "sem_seg_file_name" in dataset_dict:
            sem_seg = read_image(dataset_dict.pop("sem_seg_file_name"), "L").squeeze(2)
        aug_input = T.AugInput(image, sem_seg=sem_seg)
        transforms = self.augmentations(aug_input)
        image, sem_seg = aug_input.image, aug_input.sem_seg
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if sem_seg is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg.astype("long"))
        if self.proposal_topk is not None:
            utils.transform_proposals(
                dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk
            )
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            dataset_dict.pop("sem_seg_file_name", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict


def skip_policy(cfg, is_train: bool) -> bool:
    """Skip bad samples? Only in training with DATALOADER.BAD_SAMPLES "skip"; evaluation always
    stops, since re-sampling another image would silently change the metrics."""
    policy = cfg.DATALOADER.BAD_SAMPLES
    if policy not in ("skip", "error"):
        raise ValueError(f"DATALOADER.BAD_SAMPLES must be 'skip' or 'error', got {policy!r}")
    return is_train and policy == "skip"


def build_checked_mapper(cfg, is_train: bool) -> SkipBadSamples:
    """The default mapper of :func:`odedet.data.mappers.build_mapper`."""
    return SkipBadSamples(CheckedDatasetMapper(cfg, is_train), skip=skip_policy(cfg, is_train))


class ResampleBadSamples:
    """Wrap a training mapper: when it returns ``None`` (a skipped bad sample) map another random
    sample of ``dataset`` instead, and stop with an error once every file has been skipped.

    detectron2 v0.6's ``MapDataset`` does this re-sampling itself, but with ``random.sample`` on a
    set, which raises TypeError on Python >= 3.11; this wrapper never hands it a ``None``. Each
    DataLoader worker holds its own copy, so 0 and N workers behave the same.
    """

    def __init__(self, mapper, dataset: list, seed: int = 42):
        self.mapper = mapper
        self.dataset = DatasetFromList(dataset, copy=False)
        self.n_files = len({d.get("file_name", i) for i, d in enumerate(dataset)})
        self._rng = random.Random(seed)
        self._bad: set = set()

    def __call__(self, dataset_dict: dict):
        out = self.mapper(dataset_dict)
        while out is None:
            self._bad.add(dataset_dict.get("file_name"))
            if len(self._bad) >= self.n_files:
                raise BadSampleError(
                    f"all {self.n_files} training images were skipped as bad (see the warnings "
                    f"naming them); check DATASETS.TRAIN's files"
                )
            dataset_dict = self.dataset[self._rng.randrange(len(self.dataset))]
            if dataset_dict.get("file_name") not in self._bad:
                out = self.mapper(dataset_dict)
        return out


def train_dataset_dicts(cfg) -> list:
    """The training dicts exactly as detectron2's ``build_detection_train_loader`` gathers them."""
    return get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE
        if cfg.MODEL.KEYPOINT_ON else 0,
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )


def build_train_loader(cfg, mapper, dataset: list | None = None):
    """detectron2's train loader over ``dataset`` (default: cfg.DATASETS.TRAIN) with ``mapper``
    wrapped in :class:`ResampleBadSamples`."""
    dataset = train_dataset_dicts(cfg) if dataset is None else dataset
    return build_detection_train_loader(
        cfg, mapper=ResampleBadSamples(mapper, dataset), dataset=dataset
    )

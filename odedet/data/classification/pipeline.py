"""From a dataset name to seeded train/val/test splits, augmentation and data loaders.

Images leave the pipeline as float tensors (C, H, W) in 0..255; normalisation by the training
split's per-channel mean/std happens inside the model (detectron2's PIXEL_MEAN/PIXEL_STD), so
a backbone exported to a detector sees inputs in the same convention it was trained on.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .sources import ImageSet, load_cifar, load_digits, load_image_folder, load_mnist

DATASET_NAMES = ("digits", "cifar10", "cifar100", "mnist", "folder")
# Augmentation per dataset: (random-crop padding in pixels, horizontal flip). Digits and MNIST
# are not flipped (a mirrored digit is another symbol) and are only shifted a little.
AUGMENT = {
    "digits": (2, False), "mnist": (2, False), "cifar10": (4, True), "cifar100": (4, True),
    "folder": (4, True),
}


@dataclasses.dataclass
class ClassificationData:
    """Seeded splits of one dataset plus what a model needs to know about them."""

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    classes: list
    pixel_mean: list  # per channel, 0..255 scale, from the training split
    pixel_std: list

    @property
    def channels(self) -> int:
        return self.train.images.shape[-1]

    @property
    def image_size(self) -> tuple:
        return tuple(self.train.images.shape[1:3])


def default_root() -> str:
    """``$DETECTRON2_DATASETS`` (detectron2's convention), else ``datasets``."""
    return os.environ.get("DETECTRON2_DATASETS", "datasets")


def _split(n: int, fractions: tuple, seed: int) -> list:
    """Seeded random partition of range(n) into len(fractions) index arrays (last gets the rest)."""
    perm = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return np.split(perm, cuts)


def _raw_splits(name, root, val_fraction, test_fraction, seed, download, image_size):
    """(train, val, test) ImageSets: official train/test files where the dataset has them,
    with val carved from train; otherwise one seeded three-way split."""
    if name == "digits":
        full = load_digits(image_size or 28)
    elif name == "folder":
        if all(os.path.isdir(os.path.join(root, s)) for s in ("train", "test")):
            train = load_image_folder(os.path.join(root, "train"), image_size or 32)
            test = load_image_folder(os.path.join(root, "test"), image_size or 32)
            return _carve_val(train, test, val_fraction, seed)
        full = load_image_folder(root, image_size or 32)
    elif name in ("cifar10", "cifar100"):
        train = load_cifar(root, name, True, download)
        return _carve_val(train, load_cifar(root, name, False, download), val_fraction, seed)
    elif name == "mnist":
        train = load_mnist(root, True, download)
        return _carve_val(train, load_mnist(root, False, download), val_fraction, seed)
    else:
        raise ValueError(f"unknown dataset {name!r}: use one of {', '.join(DATASET_NAMES)}")
    fractions = (1 - val_fraction - test_fraction, val_fraction, test_fraction)
    return tuple(full.subset(i) for i in _split(len(full), fractions, seed))


def _carve_val(train: ImageSet, test: ImageSet, val_fraction: float, seed: int):
    tr, va = _split(len(train), (1 - val_fraction, val_fraction), seed)
    return train.subset(tr), train.subset(va), test


def to_channels(s: ImageSet, channels: int) -> ImageSet:
    """Gray -> RGB by repetition (3-channel backbones, detector export); RGB -> gray by mean."""
    c = s.images.shape[-1]
    if c == channels:
        return s
    if c == 1 and channels == 3:
        return ImageSet(np.repeat(s.images, 3, axis=-1), s.labels, s.classes)
    if c == 3 and channels == 1:
        gray = s.images.astype(np.float32).mean(-1).round().astype(np.uint8)
        return ImageSet(gray, s.labels, s.classes)
    raise ValueError(f"cannot convert {c}-channel images to {channels} channels")


def load_classification_data(
    name: str = "digits", root: str | None = None, *, val_fraction: float = 0.1,
    test_fraction: float = 0.2, seed: int = 0, channels: int | None = None,
    download: bool = False, image_size: int | None = None,
) -> ClassificationData:
    """Load ``name`` (one of ``DATASET_NAMES``) from ``root``, split with ``seed``.

    ``test_fraction`` applies only to datasets without an official test set (digits, a single
    ImageFolder tree). ``channels`` converts gray <-> RGB (None keeps the native count).
    ``image_size`` sets the side of digits (default 28) and ImageFolder images (default 32).
    """
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 - val_fraction:
        raise ValueError(f"bad split fractions val={val_fraction}, test={test_fraction}")
    root = root or default_root()
    if name == "folder" and not os.path.isdir(root):
        raise FileNotFoundError(f"ImageFolder root {root!r} is not a directory")
    splits = _raw_splits(name, root, val_fraction, test_fraction, seed, download, image_size)
    if channels:
        splits = [to_channels(s, channels) for s in splits]
    train, val, test = splits
    pixels = train.images.reshape(-1, train.images.shape[-1]).astype(np.float64)
    std = np.maximum(pixels.std(0), 1.0)  # a constant channel must not divide by ~0
    return ClassificationData(
        name, train, val, test, list(train.classes), pixels.mean(0).tolist(), std.tolist()
    )


class AugmentedImages(Dataset):
    """(image float (C, H, W) in 0..255, label) pairs, with random crop (zero padding) and
    optional horizontal flip when ``train``; random draws come from torch's global generator,
    which the training tool seeds."""

    def __init__(self, images: ImageSet, *, train: bool, pad: int = 0, flip: bool = False):
        self.images = torch.from_numpy(images.images).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy(images.labels)
        self.train, self.pad, self.flip = train, pad, flip

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i].float()
        if self.train and self.pad:
            h, w = x.shape[1:]
            x = torch.nn.functional.pad(x, (self.pad,) * 4)
            dy, dx = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
            x = x[:, dy : dy + h, dx : dx + w]
        if self.train and self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.labels[i]


def build_loaders(data: ClassificationData, batch_size: int, *, seed: int = 0, workers: int = 0):
    """{"train", "val", "test"} DataLoaders; train is shuffled/augmented by a seeded generator."""
    pad, flip = AUGMENT.get(data.name, (0, False))
    g = torch.Generator().manual_seed(seed)
    loaders = {"train": DataLoader(
        AugmentedImages(data.train, train=True, pad=pad, flip=flip), batch_size=batch_size,
        shuffle=True, generator=g, num_workers=workers, drop_last=len(data.train) > batch_size,
    )}
    for split in ("val", "test"):
        ds = AugmentedImages(getattr(data, split), train=False)
        loaders[split] = DataLoader(ds, batch_size=batch_size, num_workers=workers)
    return loaders

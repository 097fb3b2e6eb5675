"""Image-classification sources read into memory as uint8 arrays, one loader per on-disk format.

Every loader returns :class:`ImageSet` s (images (N, H, W, C) uint8, labels (N,) int64, class
names). CIFAR and MNIST are read by torchvision's own dataset classes; only their md5 checks are
relaxed (to "the file exists") so that re-saved or subset files in the same format load too, and
a file in the wrong format fails with an error that names it and the expected layout.
"""
from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np
import torch
from torch.nn import functional as F
from torchvision import datasets as tvd

CIFAR_LAYOUT = {
    "cifar10": (
        "cifar-10-batches-py",
        "cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} (python pickles)",
    ),
    "cifar100": (
        "cifar-100-python",
        "cifar-100-python/{train, test, meta} (python pickles)",
    ),
}
MNIST_LAYOUT = (
    "MNIST/raw/{train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte} (uncompressed idx files)"
)


@dataclasses.dataclass
class ImageSet:
    """Images (N, H, W, C) uint8 with labels (N,) int64 in [0, len(classes))."""

    images: np.ndarray
    labels: np.ndarray
    classes: list

    def __post_init__(self):
        if self.images.ndim == 3:  # grayscale (N, H, W)
            self.images = self.images[..., None]
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}"
            )
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self):
        return len(self.labels)

    def subset(self, index) -> "ImageSet":
        return ImageSet(self.images[index], self.labels[index], list(self.classes))


def load_digits(size: int = 28) -> ImageSet:
    """scikit-learn's 8x8 handwritten digits (1797 real images, 10 classes, shipped inside the
    package, so no download), upsampled bilinearly to ``size`` x ``size`` like MNIST."""
    from sklearn.datasets import load_digits as _sk_digits

    digits = _sk_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]  # values 0..16
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].numpy()
    return ImageSet(images, digits.target, [str(i) for i in range(10)])


class _CIFAR10(tvd.CIFAR10):
    """torchvision's CIFAR10 that accepts any files with the official names and pickle layout."""

    def _check_integrity(self) -> bool:
        names = [n for n, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        return all(os.path.isfile(os.path.join(self.root, self.base_folder, n)) for n in names)

    def _load_meta(self) -> None:
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        with open(path, "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _CIFAR100(_CIFAR10, tvd.CIFAR100):
    """CIFAR-100 (fine labels) with the same relaxed check as :class:`_CIFAR10`."""


def load_cifar(root: str, variant: str = "cifar10", train: bool = True, download=False):
    """CIFAR-10/100 from ``root/cifar-10-batches-py`` or ``root/cifar-100-python``."""
    if variant not in CIFAR_LAYOUT:
        raise ValueError(f"unknown CIFAR variant {variant!r}: use one of {sorted(CIFAR_LAYOUT)}")
    folder, layout = CIFAR_LAYOUT[variant]
    cls = _CIFAR10 if variant == "cifar10" else _CIFAR100
    try:
        ds = cls(root, train=train, download=download)
    except RuntimeError as e:
        raise FileNotFoundError(
            f"{variant} not found under {os.path.join(root, folder)!r}: expected {root}/{layout}. "
            f"Put the extracted official archive there, or pass --download if the network "
            f"allows ({e})"
        ) from e
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
        raise ValueError(
            f"malformed {variant} file under {os.path.join(root, folder)!r} ({type(e).__name__}: "
            f"{e}); expected {layout} with 'data' (N, 3072) uint8 and labels"
        ) from e
    return ImageSet(np.ascontiguousarray(ds.data), np.asarray(ds.targets), list(ds.classes))


def load_mnist(root: str, train: bool = True, download=False) -> ImageSet:
    """MNIST from its idx files under ``root/MNIST/raw`` (torchvision's raw layout)."""
    try:
        ds = tvd.MNIST(root, train=train, download=download)
    except RuntimeError as e:
        raise FileNotFoundError(
            f"MNIST not found under {os.path.join(root, 'MNIST', 'raw')!r}: expected "
            f"{root}/{MNIST_LAYOUT}; pass --download if the network allows"
        ) from e
    except (TypeError, ValueError, AssertionError, KeyError) as e:
        raise ValueError(
            f"malformed MNIST idx file under {os.path.join(root, 'MNIST', 'raw')!r} "
            f"({type(e).__name__}: {e}); expected {MNIST_LAYOUT}"
        ) from e
    return ImageSet(ds.data.numpy(), ds.targets.numpy(), [str(i) for i in range(10)])


def load_image_folder(root: str, size: int = 32) -> ImageSet:
    """Any ``root/<class>/<image>`` tree (torchvision ``ImageFolder``), RGB, resized to
    ``size`` x ``size`` and held in memory (meant for trees that fit in memory at that size)."""
    from PIL import Image

    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"ImageFolder root {root!r} is not a directory (expected root/<class>/<image>)"
        )
    try:
        ds = tvd.ImageFolder(root)
    except (FileNotFoundError, RuntimeError) as e:
        raise FileNotFoundError(
            f"no class folders with images under {root!r}: expected root/<class>/<image>.png|jpg "
            f"({e})"
        ) from e
    images = np.empty((len(ds), size, size, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(ds.samples):
        try:
            with Image.open(path) as im:
                images[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
        except OSError as e:
            raise ValueError(f"cannot read image {path!r}: {e}") from e
    return ImageSet(images, np.asarray(ds.targets), list(ds.classes))

"""Image-classification sources read into memory as uint8 arrays, one loader per on-disk format.

Every loader returns :class:`ImageSet` s (images (N, H, W, C) uint8, labels (N,) int64, class
names). CIFAR and MNIST are read by torchvision's own dataset classes; only their md5 checks are
relaxed (to "the file exists") so that re-saved or subset files in the same format load too, and
a file in the wrong format fails with an error that names it and the expected layout.
"""
from __future__ import annotations

import dataclasses
import os
import numpy as np
import torch
from torch.nn import functional as F
from torchvision import datasets as tvd

from ..safe_pickle import load_data_pickle
from ..validation import DatasetError

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


# Official file names and keys of the CIFAR python pickles (as torchvision reads them).
_CIFAR_FILES = {
    "cifar10": dict(train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    meta="batches.meta", names="label_names", labels="labels"),
    "cifar100": dict(train=["train"], test=["test"], meta="meta", names="fine_label_names",
                     labels="fine_labels"),
}


def _cifar_batch(path: str, labels_key: str, layout: str):
    """(images (N, 32, 32, 3) uint8, labels (N,)) of one CIFAR pickle, read without running
    code (odedet.data.safe_pickle). Errors name the file and the expected layout."""
    entry = load_data_pickle(path)
    if not isinstance(entry, dict) or "data" not in entry or labels_key not in entry:
        keys = sorted(map(str, entry))[:6] if isinstance(entry, dict) else type(entry).__name__
        raise DatasetError(f"{path}: expected a dict with 'data' and {labels_key!r} ({layout}), "
                           f"got {keys}")
    data, labels = np.asarray(entry["data"]), np.asarray(entry[labels_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{path}: 'data' must be (N, 3072) uint8, got {data.dtype} "
                           f"{data.shape}")
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{path}: {labels_key!r} must be {len(data)} integers, got "
                           f"{labels.dtype} {labels.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar(root: str, variant: str = "cifar10", train: bool = True, download=False):
    """CIFAR-10/100 from ``root/cifar-10-batches-py`` or ``root/cifar-100-python``: the official
    python pickles (or re-saved subsets in the same layout), read with odedet's restricted
    unpickler, so a hostile file is refused (UnsafeDataFileError), never run."""
    if variant not in CIFAR_LAYOUT:
        raise ValueError(f"unknown CIFAR variant {variant!r}: use one of {sorted(CIFAR_LAYOUT)}")
    folder, layout = CIFAR_LAYOUT[variant]
    spec = _CIFAR_FILES[variant]
    base = os.path.join(root, folder)
    names = spec["train"] + spec["test"] + [spec["meta"]]
    if download and not all(os.path.isfile(os.path.join(base, n)) for n in names):
        cls = tvd.CIFAR10 if variant == "cifar10" else tvd.CIFAR100
        ds = cls.__new__(cls)  # only the md5-checked download + extraction, no pickle.load
        ds.root = root
        ds.download()
    missing = [n for n in names if not os.path.isfile(os.path.join(base, n))]
    if missing:
        raise FileNotFoundError(
            f"{variant} not found under {base!r} (missing {missing}): expected {root}/{layout}. "
            f"Put the extracted official archive there, or pass --download if the network allows"
        )
    parts = [_cifar_batch(os.path.join(base, n), spec["labels"], layout)
             for n in spec["train" if train else "test"]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    meta_path = os.path.join(base, spec["meta"])
    meta = load_data_pickle(meta_path)
    classes = meta.get(spec["names"]) if isinstance(meta, dict) else None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DatasetError(f"{meta_path}: expected a dict with a list of class names under "
                           f"{spec['names']!r} ({layout})")
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DatasetError(f"{base}: labels must be in [0, {len(classes)}) (the classes of "
                           f"{meta_path}), got {labels.min()}..{labels.max()}")
    return ImageSet(np.ascontiguousarray(images), labels, list(classes))


_MNIST_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _read_idx(path: str, ndim: int) -> np.ndarray:
    """A uint8 idx file (MNIST's format: 2 zero bytes, type 0x08, ndim, big-endian sizes,
    data) as an array; every malformation raises a DatasetError naming the file."""
    import struct

    with open(path, "rb") as f:
        data = f.read()
    head = 4 + 4 * ndim
    if len(data) < head or data[:3] != b"\x00\x00\x08" or data[3] != ndim:
        raise DatasetError(f"malformed MNIST idx file {path}: expected a uint8 idx file with "
                           f"{ndim} dimension(s) ({MNIST_LAYOUT})")
    dims = struct.unpack(f">{ndim}I", data[4:head])
    if len(data) - head != int(np.prod(dims, dtype=np.int64)):
        raise DatasetError(f"malformed MNIST idx file {path}: its header says {dims} "
                           f"({int(np.prod(dims, dtype=np.int64))} bytes of data) but it holds "
                           f"{len(data) - head}; the file is truncated or corrupt")
    return np.frombuffer(data, np.uint8, offset=head).reshape(dims)


def load_mnist(root: str, train: bool = True, download=False) -> ImageSet:
    """MNIST from its (uncompressed) idx files under ``root/MNIST/raw`` (torchvision's raw
    layout), read by odedet's checked idx reader: errors name the file."""
    raw = os.path.join(root, "MNIST", "raw")
    images_file, labels_file = (os.path.join(raw, n) for n in _MNIST_FILES[train])
    if download and not (os.path.isfile(images_file) and os.path.isfile(labels_file)):
        tvd.MNIST(root, train=train, download=True)
    missing = [p for p in (images_file, labels_file) if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"MNIST not found under {raw!r} (missing {missing}): expected {root}/{MNIST_LAYOUT}; "
            f"pass --download if the network allows"
        )
    images, labels = _read_idx(images_file, 3), _read_idx(labels_file, 1)
    if len(images) != len(labels):
        raise DatasetError(f"{images_file} holds {len(images)} images but {labels_file} "
                           f"{len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{labels_file}: labels must be digits 0..9, got up to {labels.max()}")
    return ImageSet(np.ascontiguousarray(images), labels, [str(i) for i in range(10)])


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
    from ..image_io import read_image

    images = np.empty((len(ds), size, size, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(ds.samples):
        # odedet's robust reader: truncated / not an image / odd modes -> BadImageError naming it
        rgb = read_image(path, "RGB", dataset_name=root)
        images[i] = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
    return ImageSet(images, np.asarray(ds.targets), list(ds.classes))

"""Classification loaders on fixtures in the real on-disk formats (CIFAR pickles, MNIST idx,
ImageFolder PNGs), the embedded digits, splits and augmentation."""
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from odedet.data.classification import (
    AugmentedImages, build_loaders, load_cifar, load_classification_data, load_image_folder,
    load_mnist,
)


def _cifar_batch(rng, n, key, classes):
    data = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
    return {"data": data, key: rng.integers(0, classes, n).tolist()}


def write_cifar10(root, n=4, seed=0):
    """The official layout: data_batch_1..5, test_batch, batches.meta (latin1 pickles)."""
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(d)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = _cifar_batch(rng, n, "labels", 10)
        with open(os.path.join(d, name), "wb") as f:
            pickle.dump(batches[name], f)
    with open(os.path.join(d, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return batches


def test_cifar10_pickles_load_in_hwc_order(tmp_path):
    batches = write_cifar10(str(tmp_path))
    train = load_cifar(str(tmp_path), "cifar10", train=True)
    assert train.images.shape == (20, 32, 32, 3) and train.classes[3] == "c3"
    first = batches["data_batch_1"]["data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(train.images[0], first)
    assert train.labels.tolist()[:4] == batches["data_batch_1"]["labels"]
    test = load_cifar(str(tmp_path), "cifar10", train=False)
    assert test.labels.tolist() == batches["test_batch"]["labels"]
    data = load_classification_data("cifar10", str(tmp_path), val_fraction=0.25, seed=1)
    assert (len(data.train), len(data.val), len(data.test)) == (15, 5, 4)
    assert data.channels == 3 and len(data.pixel_mean) == 3


def test_cifar100_fine_labels(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    for name in ("train", "test"):
        batch = _cifar_batch(rng, 3, "fine_labels", 100)
        batch["coarse_labels"] = [0, 0, 0]
        (d / name).write_bytes(pickle.dumps(batch))
    (d / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"f{i}" for i in range(100)]}))
    s = load_cifar(str(tmp_path), "cifar100", train=True)
    assert len(s.classes) == 100 and s.labels.tolist() == pickle.loads((d / "train").read_bytes())[
        "fine_labels"]


def test_cifar_missing_and_malformed_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*data_batch_1"):
        load_cifar(str(tmp_path), "cifar10")
    write_cifar10(str(tmp_path))
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cifar-10-batches-py/data_batch_2.*not a valid pickle"):
        load_cifar(str(tmp_path), "cifar10")


def _idx(path, array, magic_type=0x08):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", (magic_type << 8) | array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_mnist(root, n=5, seed=0):
    rng = np.random.default_rng(seed)
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw)
    out = {}
    for split in ("train", "t10k"):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        _idx(os.path.join(raw, f"{split}-images-idx3-ubyte"), images)
        _idx(os.path.join(raw, f"{split}-labels-idx1-ubyte"), labels)
        out[split] = (images, labels)
    return out


def test_mnist_idx_files(tmp_path):
    written = write_mnist(str(tmp_path))
    s = load_mnist(str(tmp_path), train=False)
    np.testing.assert_array_equal(s.images[..., 0], written["t10k"][0])
    assert s.labels.tolist() == written["t10k"][1].tolist()
    data = load_classification_data("mnist", str(tmp_path), val_fraction=0.2, channels=3)
    assert data.channels == 3 and len(data.train) == 4 and len(data.test) == 5


def test_mnist_missing_and_malformed(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST.*raw.*train-images-idx3-ubyte"):
        load_mnist(str(tmp_path))
    write_mnist(str(tmp_path))
    # a 2-D "image" file: right magic, wrong rank
    _idx(str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"), np.zeros((5, 784)))
    with pytest.raises(ValueError, match="malformed MNIST idx file"):
        load_mnist(str(tmp_path), train=True)


def test_image_folder_tree(tmp_path):
    for c, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (10 + i, 12), color).save(tmp_path / c / f"{i}.png")
    s = load_image_folder(str(tmp_path), size=8)
    assert s.classes == ["cat", "dog"] and s.images.shape == (6, 8, 8, 3)
    assert s.images[0, 0, 0].tolist() == [255, 0, 0] and s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_image_folder(str(tmp_path / "nope"))


def test_digits_embedded_seeded_split():
    a = load_classification_data("digits", seed=3)
    b = load_classification_data("digits", seed=3)
    c = load_classification_data("digits", seed=4)
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert a.image_size == (28, 28) and a.channels == 1 and a.train.images.max() == 255
    np.testing.assert_array_equal(a.test.labels, b.test.labels)
    assert not np.array_equal(a.test.labels, c.test.labels)
    # splits are disjoint: no image appears in two splits
    flat = lambda s: {im.tobytes() for im in s.images}  # noqa: E731
    assert not flat(a.train) & flat(a.test)


def test_augmentation_crop_and_flip():
    images = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    images[0, :, :4] = 200  # left half bright
    from odedet.data.classification import ImageSet

    s = ImageSet(images, np.array([0]), ["a"])
    flips = AugmentedImages(s, train=True, pad=0, flip=True)
    outs = {float(flips[0][0][0, 0, 0]) for _ in range(30)}
    assert outs == {0.0, 200.0}  # both orientations occur
    shifted = AugmentedImages(s, train=True, pad=2)
    shapes = {tuple(shifted[0][0].shape) for _ in range(5)}
    assert shapes == {(3, 8, 8)}
    assert torch.equal(AugmentedImages(s, train=False, pad=2, flip=True)[0][0],
                       torch.from_numpy(images[0]).permute(2, 0, 1).float())


def test_loaders_digits_no_flip():
    data = load_classification_data("digits", image_size=12)
    loaders = build_loaders(data, 32)
    assert not loaders["train"].dataset.flip and loaders["train"].dataset.pad == 2
    x, y = next(iter(loaders["test"]))
    assert x.shape == (32, 1, 12, 12) and x.dtype == torch.float32 and y.dtype == torch.int64

"""Property-based tests (hypothesis): generated corruptions of valid files, one test per loader
(COCO JSON, VOC XML, depth PNG, depth list file, NYU .mat + splits.mat, CIFAR pickles, MNIST idx,
images). The only outcomes allowed are success or odedet's documented error type naming the file
(DatasetError, DepthDataError, BadImageError); anything else (KeyError, TypeError, a crash, a
hang) fails the test. Hypothesis shrinks a failure to a minimal corrupted file.

Budget: the "odedet" settings profile (derandomized, so CI runs the same cases every time) runs
CASES[loader] examples per loader; ``ODEDET_HYPOTHESIS_SCALE`` multiplies them (e.g. 10 for a
long local soak). The number of cases run per loader is printed at the end of the session
(tests/reliability/conftest.py) and written to $ODEDET_PROPERTY_REPORT when that is set.
"""
from __future__ import annotations

import copy
import io
import json
import os
import pickle
import struct
import tempfile
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odedet.data.depth.formats import DepthDataError
from odedet.data.image_io import BadImageError
from odedet.data.validation import DatasetError

SCALE = float(os.environ.get("ODEDET_HYPOTHESIS_SCALE", "1"))
CASES = {"coco_json": 500, "voc_xml": 450, "depth_png": 450, "depth_list": 400, "nyu_mat": 100,
         "cifar": 450, "mnist": 400, "image": 600}  # ~45 s on this 2-core machine under load
settings.register_profile(
    "odedet", derandomize=True, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)
settings.load_profile("odedet")
COUNTS: dict = {}  # loader -> cases run (reported by conftest.py)


def _examples(name):
    return settings(max_examples=max(1, int(CASES[name] * SCALE)))


_WORK = tempfile.mkdtemp(prefix="odedet-hypothesis-")


def _fresh(name: str) -> str:
    """The path of ``name`` in a scratch folder of its own, reused by every example of a test
    (overwritten each time: creating thousands of folders costs more than the tests)."""
    d = os.path.join(_WORK, os.path.splitext(name)[0])
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name)


# -- corruptions of bytes ------------------------------------------------------------------------
@st.composite
def corrupted(draw, base: bytes):
    """``base`` with 1-3 byte-level corruptions: truncation, flipped bytes, inserted / deleted /
    overwritten / duplicated slices, or an empty file."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "overwrite",
                                   "duplicate", "empty"]))
        n = len(data)
        pos = draw(st.integers(0, max(n - 1, 0)))
        if op == "truncate":
            data = data[:pos]
        elif op == "flip" and n:
            for _ in range(draw(st.integers(1, 8))):
                i = draw(st.integers(0, n - 1))
                data[i] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 256))]
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=64))
            data[pos:pos + len(chunk)] = chunk
        elif op == "duplicate":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 256))]
        elif op == "empty" and draw(st.integers(0, 9)) == 0:
            data = bytearray()
    return bytes(data)


_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6),
                       st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
_JSON_VALUE = st.recursive(_JSON_LEAF, lambda c: st.one_of(
    st.lists(c, max_size=3), st.dictionaries(st.text(max_size=6), c, max_size=3)), max_leaves=6)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated_json(draw, base: dict):
    """``base`` with 1-3 values replaced by random JSON values or deleted."""
    obj = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(obj) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        if draw(st.booleans()):
            parent[path[-1]] = draw(_JSON_VALUE)
        else:
            del parent[path[-1]]
    return json.dumps(obj).encode()


def _check(loader: str, call, path: str, allowed):
    """Run ``call``; success, or an ``allowed`` error whose message names ``path``."""
    COUNTS[loader] = COUNTS.get(loader, 0) + 1
    try:
        call()
    except allowed as e:
        assert os.path.basename(path) in str(e), f"error does not name {path}: {e}"


# -- COCO JSON -----------------------------------------------------------------------------------
def _coco_base():
    root = tempfile.mkdtemp(prefix="coco-", dir=_WORK)
    images = []
    for i in range(2):
        cv2.imwrite(os.path.join(root, f"{i}.jpg"), np.full((16, 16, 3), 50 * i, np.uint8))
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": 16, "width": 16})
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 5, 6], "area": 30,
             "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [0, 0, 8, 4.5], "area": 36,
             "iscrowd": 0}]
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    return root, {"images": images, "annotations": anns, "categories": cats}


_COCO_ROOT, _COCO = _coco_base()


def _load_coco(path):
    from detectron2.data.datasets import load_coco_json

    from odedet.data.validation import validate_coco_json

    validate_coco_json(path, _COCO_ROOT)
    load_coco_json(path, _COCO_ROOT)  # what training then does: must not fail after validation


@_examples("coco_json")
@given(st.one_of(mutated_json(_COCO), corrupted(json.dumps(_COCO).encode())))
def test_coco_json_corruptions(data):
    path = _fresh("instances.json")
    open(path, "wb").write(data)
    _check("coco_json", lambda: _load_coco(path), path, DatasetError)


# -- VOC XML -------------------------------------------------------------------------------------
_VOC_XML = (b"<annotation><filename>000001.jpg</filename><size><width>32</width><height>24"
            b"</height><depth>3</depth></size><object><name>cat</name><pose>Left</pose>"
            b"<truncated>0</truncated><difficult>1</difficult><bndbox><xmin>2</xmin><ymin>3"
            b"</ymin><xmax>20</xmax><ymax>15</ymax></bndbox></object><object><name>dog</name>"
            b"<pose>Unspecified</pose><truncated>1</truncated><difficult>0</difficult><bndbox>"
            b"<xmin>1</xmin><ymin>1</ymin><xmax>32</xmax><ymax>24</ymax></bndbox></object>"
            b"</annotation>")


@st.composite
def mutated_xml(draw):
    root = ET.fromstring(_VOC_XML)
    for _ in range(draw(st.integers(1, 3))):
        elements = [e for e in root.iter() if e is not root]
        e = draw(st.sampled_from(elements))
        op = draw(st.sampled_from(["text", "remove", "duplicate"]))
        if op == "text":
            e.text = draw(st.one_of(st.text(max_size=6), st.integers(-50, 10**9).map(str),
                                    st.floats().map(str)))
        else:
            parent = next(p for p in root.iter() if e in list(p))
            if op == "remove":
                parent.remove(e)
            else:
                parent.append(copy.deepcopy(e))
    return ET.tostring(root)


def _voc_dir():
    voc = tempfile.mkdtemp(prefix="voc-", dir=_WORK)
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        os.makedirs(os.path.join(voc, sub))
    open(os.path.join(voc, "ImageSets/Main/test.txt"), "w").write("000001\n")
    cv2.imwrite(os.path.join(voc, "JPEGImages/000001.jpg"), np.zeros((24, 32, 3), np.uint8))
    return voc


_VOC_DIR = _voc_dir()


def _load_voc(voc):
    from odedet.data.d2_loaders import load_voc_instances
    from odedet.data.validation import validate_voc

    validate_voc(voc, "test", ("cat", "dog"))
    load_voc_instances(voc, "test", ("cat", "dog"))


@_examples("voc_xml")
@given(st.one_of(mutated_xml(), corrupted(_VOC_XML)))
def test_voc_xml_corruptions(data):
    voc = _VOC_DIR
    path = os.path.join(voc, "Annotations", "000001.xml")
    open(path, "wb").write(data)
    _check("voc_xml", lambda: _load_voc(voc), path, DatasetError)


# -- depth PNG and list files --------------------------------------------------------------------
def _png16():
    depth = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 97) % 60000 + 1
    return cv2.imencode(".png", depth)[1].tobytes()


_DEPTH_PNG = _png16()


@_examples("depth_png")
@given(corrupted(_DEPTH_PNG))
def test_depth_png_corruptions(data):
    from odedet.data.depth.formats import read_depth_png

    path = _fresh("depth.png")
    open(path, "wb").write(data)

    def read():
        depth = read_depth_png(path, 1000.0)
        assert depth.dtype == np.float32 and depth.ndim == 2 and (depth > 0).any()

    _check("depth_png", read, path, DepthDataError)


_LIST_DIR = tempfile.mkdtemp(prefix="list-", dir=_WORK)
for _i in range(2):
    cv2.imwrite(os.path.join(_LIST_DIR, f"{_i}.png"), np.zeros((12, 16, 3), np.uint8))
    open(os.path.join(_LIST_DIR, f"{_i}_d.png"), "wb").write(_DEPTH_PNG)
_LIST = b"# rgb depth scale\n0.png 0_d.png 1000\n1.png 1_d.png 256.0\n\n1.png None 1\n"
_TOKENS = st.sampled_from(["0.png", "1_d.png", "None", "1000", "-3", "nan", "x", "#", "", "2.png",
                           "0_d.png", "1e9", "  ", "\t"])


@st.composite
def mutated_list(draw):
    lines = _LIST.decode().split("\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = " ".join(draw(st.lists(_TOKENS, max_size=5)))
    return "\n".join(lines).encode()


@_examples("depth_list")
@given(st.one_of(mutated_list(), corrupted(_LIST)))
def test_depth_list_corruptions(data):
    from odedet.data.depth.loaders import load_depth_list

    path = os.path.join(_LIST_DIR, "list.txt")
    open(path, "wb").write(data)
    _check("depth_list", lambda: load_depth_list(path), path, DepthDataError)


# -- NYU .mat (HDF5) and splits.mat --------------------------------------------------------------
def _nyu_bases():
    import h5py
    from scipy.io import savemat

    mat = os.path.join(_WORK, "nyu_base.mat")
    with h5py.File(mat, "w") as f:
        f["images"] = np.zeros((1, 3, 640, 480), np.uint8)
        f["depths"] = np.full((1, 640, 480), 2.0, np.float32)
    buf = io.BytesIO()
    savemat(buf, {"trainNdxs": np.array([[1]]), "testNdxs": np.array([[1]])})
    return open(mat, "rb").read(), buf.getvalue()


_NYU_MAT, _NYU_SPLITS = _nyu_bases()


def _nyu_header_corruption(base):
    # HDF5 keeps its metadata in the first few KiB; corrupting the 900 KiB of pixel data says
    # little about robustness, so corruptions land in the first 8 KiB (plus truncations).
    return corrupted(base[:8192]).map(lambda head: head + base[8192:])


@_examples("nyu_mat")
@given(st.one_of(_nyu_header_corruption(_NYU_MAT), corrupted(_NYU_MAT[:4096])),
       st.one_of(st.just(_NYU_SPLITS), corrupted(_NYU_SPLITS)))
def test_nyu_mat_corruptions(mat_data, splits_data):
    from odedet.data.depth.formats import read_nyu
    from odedet.data.depth.loaders import load_nyu_labeled

    from odedet.data.depth import formats

    for handle in formats._NYU_HANDLES.values():  # the handle is cached per path: drop it
        handle.close()
    formats._NYU_HANDLES.clear()
    mat, splits = _fresh("nyu_depth_v2_labeled.mat"), _fresh("splits.mat")
    open(mat, "wb").write(mat_data)
    open(splits, "wb").write(splits_data)

    def load():
        for d in load_nyu_labeled(mat, splits, "train"):
            read_nyu(mat, d["nyu_index"])

    COUNTS["nyu_mat"] = COUNTS.get("nyu_mat", 0) + 1
    try:
        load()
    except DepthDataError as e:
        assert "nyu_depth_v2_labeled.mat" in str(e) or "splits.mat" in str(e), e


# -- CIFAR pickles and MNIST idx -----------------------------------------------------------------
def _cifar_batch_bytes():
    rng = np.random.default_rng(0)
    return pickle.dumps({"data": rng.integers(0, 255, (2, 3072), dtype=np.uint8),
                         "labels": [3, 7], "batch_label": "b"}, protocol=2)


_CIFAR_BATCH = _cifar_batch_bytes()
_CIFAR_META = pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=2)
_CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@_examples("cifar")
@given(st.sampled_from(_CIFAR_FILES[:1] + _CIFAR_FILES[-1:] + ["batches.meta"]),
       st.data())
def test_cifar_corruptions(victim, data):
    from odedet.data.classification import load_cifar

    root = os.path.dirname(_fresh("cifar"))
    d = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(d, exist_ok=True)
    for name in _CIFAR_FILES + ["batches.meta"]:  # the intact files (written once)
        if not os.path.exists(os.path.join(d, name)):
            open(os.path.join(d, name), "wb").write(
                _CIFAR_META if name == "batches.meta" else _CIFAR_BATCH)
    path = os.path.join(d, victim)
    base = _CIFAR_META if victim == "batches.meta" else _CIFAR_BATCH
    content = data.draw(corrupted(base))  # before opening: a draw may stop the example
    open(path, "wb").write(content)
    train = victim != "test_batch"
    try:
        _check("cifar", lambda: load_cifar(root, "cifar10", train=train), path, DatasetError)
    finally:
        open(path, "wb").write(base)


def _idx(array):
    return struct.pack(">I", 0x0800 | array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


_MNIST = {"t10k-images-idx3-ubyte": _idx(np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256),
          "t10k-labels-idx1-ubyte": _idx(np.array([1, 2, 9]))}


@_examples("mnist")
@given(st.sampled_from(sorted(_MNIST)), st.data())
def test_mnist_corruptions(victim, data):
    from odedet.data.classification import load_mnist

    root = os.path.dirname(_fresh("mnist"))
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    content = data.draw(corrupted(_MNIST[victim]))
    for name, base in _MNIST.items():
        open(os.path.join(raw, name), "wb").write(content if name == victim else base)
    path = os.path.join(raw, victim)
    _check("mnist", lambda: load_mnist(root, train=False), path, DatasetError)


# -- images --------------------------------------------------------------------------------------
def _image_bases():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    out = {ext: cv2.imencode(ext, rgb)[1].tobytes() for ext in (".png", ".jpg", ".bmp")}
    out[".gray16.png"] = cv2.imencode(".png", (rgb[..., 0].astype(np.uint16) * 257))[1].tobytes()
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).convert("P").save(buf, "PNG")
    out[".palette.png"] = buf.getvalue()
    return out


_IMAGES = _image_bases()


@_examples("image")
@given(st.sampled_from(sorted(_IMAGES)), st.data())
def test_image_corruptions(kind, data):
    from odedet.data.image_io import read_image

    path = _fresh("img" + kind)
    content = data.draw(corrupted(_IMAGES[kind]))
    open(path, "wb").write(content)

    def read():
        image = read_image(path, "BGR", max_pixels=10**6, max_aspect_ratio=20)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3

    _check("image", read, path, BadImageError)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    import shutil

    shutil.rmtree(_WORK, ignore_errors=True)

"""Bad and unusual image files: clear errors naming file and dataset, or correct conversions;
bad training samples skipped identically with and without DataLoader workers."""
import gc
import logging

import numpy as np
import pytest
import torch
from PIL import Image

import odedet
from odedet.data.image_io import BadImageError, BadSampleError, SkipBadSamples, read_image
from odedet.data.mappers import build_mapper
from odedet.data.robust_mapper import build_train_loader


def _rgb(h=24, w=32):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_truncated_images_are_errors_not_partial_images(tmp_path):
    for ext in ("jpg", "png"):
        f = tmp_path / f"cut.{ext}"
        Image.fromarray(_rgb(64, 64)).save(f)
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
        with pytest.raises(BadImageError, match=rf"cut\.{ext} \(dataset 'shapes'\).*truncated"):
            read_image(str(f), "BGR", dataset_name="shapes")


def test_not_an_image_and_missing_file(tmp_path):
    f = tmp_path / "notes.jpg"
    f.write_text("this is not a jpeg")
    with pytest.raises(BadImageError, match="notes.jpg.*not an image"):
        read_image(str(f))
    with pytest.raises(BadImageError, match="nope.png.*not found"):
        read_image(str(tmp_path / "nope.png"))


def test_grayscale_rgba_and_16bit_convert_to_3_channels(tmp_path):
    gray = (np.arange(24 * 32) % 256).astype(np.uint8).reshape(24, 32)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = read_image(str(tmp_path / "g.png"), "BGR")
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], gray) and np.array_equal(out[..., 2], gray)

    rgba = np.concatenate([_rgb(), np.full((24, 32, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(str(tmp_path / "a.png"), "BGR")
    assert out.shape == (24, 32, 3) and np.array_equal(out, rgba[..., 2::-1])

    deep = np.array([[0, 257, 65535, 32896]], dtype=np.uint16).repeat(4, axis=0)
    Image.fromarray(deep).save(tmp_path / "d16.png")
    assert Image.open(tmp_path / "d16.png").mode.startswith("I")
    out = read_image(str(tmp_path / "d16.png"), "RGB")
    assert out.dtype == np.uint8 and out[0, :, 1].tolist() == [0, 1, 255, 128]


def test_exif_rotation_is_applied(tmp_path):
    img = Image.fromarray(_rgb(20, 40))  # 40 wide, 20 high
    exif = Image.Exif()
    exif[274] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    out = read_image(str(tmp_path / "r.jpg"), "RGB")
    assert out.shape[:2] == (40, 20)


def test_large_and_elongated_images_are_refused_before_decoding(tmp_path):
    Image.fromarray(_rgb(200, 300)).save(tmp_path / "big.png")
    with pytest.raises(BadImageError, match=r"200 = 60000 pixels.*INPUT.MAX_IMAGE_PIXELS"):
        read_image(str(tmp_path / "big.png"), max_pixels=50_000)
    Image.fromarray(_rgb(4, 400)).save(tmp_path / "strip.png")
    with pytest.raises(BadImageError, match=r"aspect ratio 100.0 > INPUT.MAX_ASPECT_RATIO=20"):
        read_image(str(tmp_path / "strip.png"), max_aspect_ratio=20)


def test_skip_wrapper_logs_skips_and_stops_on_a_broken_dataset(caplog):
    def mapper(d):
        if d["file_name"].startswith("bad"):
            raise BadImageError(f"image {d['file_name']} is truncated")
        return d

    wrapped = SkipBadSamples(mapper, max_consecutive=3)
    with caplog.at_level(logging.WARNING):
        assert wrapped({"file_name": "bad1.jpg"}) is None
    assert "bad1.jpg" in caplog.text
    assert wrapped({"file_name": "ok.jpg"}) == {"file_name": "ok.jpg"}
    wrapped({"file_name": "bad2.jpg"})
    wrapped({"file_name": "bad3.jpg"})
    with pytest.raises(BadSampleError, match="3 samples in a row.*bad4.jpg"):
        wrapped({"file_name": "bad4.jpg"})
    with pytest.raises(BadImageError, match="bad5.jpg"):
        SkipBadSamples(mapper, skip=False)({"file_name": "bad5.jpg"})


def _dataset(tmp_path, n_good=3):
    dicts = []
    for i in range(n_good):
        f = tmp_path / f"good{i}.png"
        Image.fromarray(_rgb(32, 32)).save(f)
        dicts.append({"file_name": str(f), "height": 32, "width": 32, "image_id": i,
                      "annotations": []})
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    dicts.append({"file_name": str(bad), "height": 32, "width": 32, "image_id": 99,
                  "annotations": []})
    return dicts


def _cfg(workers, policy="skip"):
    cfg = odedet.get_odedet_cfg()
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.DATALOADER.BAD_SAMPLES = policy
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.INPUT.MIN_SIZE_TRAIN = (32,)
    cfg.INPUT.MAX_SIZE_TRAIN = 32
    return cfg


def _first_batch_error(loader, monkeypatch, exc, match):
    """Assert the first batch raises ``exc`` matching ``match``. After a worker raised, torch's
    DataLoader shutdown waits MP_STATUS_CHECK_INTERVAL (5 s) per worker before terminating it;
    shorten that wait so the tests stay fast (behaviour is otherwise unchanged)."""
    monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.1)
    with pytest.raises(exc, match=match) as info:
        next(iter(loader))
    del info
    gc.collect()


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_skips_a_bad_sample_the_same_with_workers(tmp_path, workers):
    cfg = _cfg(workers)
    loader = build_train_loader(cfg, build_mapper(cfg, True), _dataset(tmp_path))
    it = iter(loader)
    seen = {d["image_id"] for _ in range(8) for d in next(it)}
    assert seen <= {0, 1, 2} and len(seen) >= 2
    assert all(isinstance(d["image"], torch.Tensor) for d in next(it))


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_with_error_policy_names_the_file_with_workers(tmp_path, workers, monkeypatch):
    cfg = _cfg(workers, policy="error")
    loader = build_train_loader(cfg, build_mapper(cfg, True), _dataset(tmp_path, n_good=0))
    _first_batch_error(loader, monkeypatch, BadImageError, "bad.png")


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_where_every_image_is_bad_stops_clearly(tmp_path, workers, monkeypatch):
    loader = build_train_loader(_cfg(workers), build_mapper(_cfg(workers), True),
                                _dataset(tmp_path, n_good=0))
    _first_batch_error(loader, monkeypatch, BadSampleError, "all 1 training images were skipped")


def test_evaluation_mapper_never_skips(tmp_path):
    cfg = _cfg(0, policy="skip")
    with pytest.raises(BadImageError, match="bad.png"):
        build_mapper(cfg, False)(_dataset(tmp_path, n_good=0)[0])

"""Depth loaders on fixtures in the real on-disk formats, their errors, the synthetic renderer
and the mapper."""
import os

import cv2
import h5py
import numpy as np
import pytest
from scipy.io import savemat

from odedet.data.depth import (
    DepthDataError, DepthDatasetMapper, load_depth_list, load_kitti_eigen, load_nyu_labeled,
    read_depth_sample, write_depth_png,
)
from odedet.data.depth.scenes import Camera, render_scene
from odedet.data.depth.synthetic import ensure_scenes


def _write_pair(root, stem, depth, scale, size=(6, 8)):
    rgb = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    cv2.imwrite(os.path.join(root, f"{stem}_rgb.png"), rgb)
    write_depth_png(os.path.join(root, f"{stem}_d.png"), depth, scale)
    return f"{stem}_rgb.png", f"{stem}_d.png"


def test_list_file_roundtrip_and_errors(tmp_path):
    depth = np.full((6, 8), 2.5, np.float32)
    depth[0, 0] = 0
    rgb, d = _write_pair(tmp_path, "a", depth, 1000)
    lst = tmp_path / "list.txt"
    lst.write_text(f"# comment\n{rgb} {d} 1000\n\n")
    (rec,) = load_depth_list(str(lst))
    assert (rec["height"], rec["width"]) == (6, 8)
    image, gt = read_depth_sample(rec)
    assert image.shape == (6, 8, 3) and gt.dtype == np.float32
    assert gt[0, 0] == 0 and gt[3, 3] == pytest.approx(2.5)

    lst.write_text(f"{rgb} missing.png 1000\n")
    with pytest.raises(DepthDataError, match=r"list.txt:1.*missing.png"):
        load_depth_list(str(lst))
    lst.write_text(f"{rgb} {d} one\n")
    with pytest.raises(DepthDataError, match="list.txt:1: scale 'one'"):
        load_depth_list(str(lst))
    with pytest.raises(DepthDataError, match="nope.txt"):
        load_depth_list(str(tmp_path / "nope.txt"))


def test_bad_depth_files_name_the_path(tmp_path):
    rgb, d = _write_pair(tmp_path, "b", np.ones((6, 8)), 256)
    rec = dict(file_name=str(tmp_path / rgb), depth_file_name=str(tmp_path / d), depth_scale=256)
    cv2.imwrite(str(tmp_path / d), np.full((6, 8), 7, np.uint8))  # 8-bit: wrong dtype
    with pytest.raises(DepthDataError, match=f"{d}.*uint16.*uint8"):
        read_depth_sample(rec)
    cv2.imwrite(str(tmp_path / d), np.zeros((6, 8), np.uint16))
    with pytest.raises(DepthDataError, match=f"{d} has no valid pixel"):
        read_depth_sample(rec)
    cv2.imwrite(str(tmp_path / d), np.ones((5, 8), np.uint16))
    with pytest.raises(DepthDataError, match=r"\(5, 8\).*\(6, 8\)"):
        read_depth_sample(rec)


def test_kitti_eigen_split_uint16_over_256(tmp_path):
    drive = "2011_09_26/2011_09_26_drive_0002_sync"
    img_dir = tmp_path / "raw" / drive / "image_02" / "data"
    gt_dir = tmp_path / "depth" / "val" / "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02"
    img_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    cv2.imwrite(str(img_dir / "0000000069.png"), np.zeros((7, 9, 3), np.uint8))
    raw = np.zeros((7, 9), np.uint16)
    raw[3:, :] = 256 * 12 + 128  # 12.5 m
    cv2.imwrite(str(gt_dir / "0000000069.png"), raw)
    split = tmp_path / "eigen_test_files_with_gt.txt"
    split.write_text(
        f"{drive}/image_02/data/0000000069.png 2011_09_26_drive_0002_sync/proj_depth/"
        f"groundtruth/image_02/0000000069.png 721.5377\n{drive}/image_02/data/x.png None 721.5\n"
    )
    (rec,) = load_kitti_eigen(str(tmp_path), str(split))
    _, depth = read_depth_sample(rec)
    assert (rec["height"], rec["width"]) == (7, 9)
    assert depth[4, 4] == pytest.approx(12.5) and depth[0, 0] == 0
    split.write_text(f"{drive}/image_02/data/0000000069.png nowhere/0.png 721.5\n")
    with pytest.raises(DepthDataError, match="nowhere/0.png"):
        load_kitti_eigen(str(tmp_path), str(split))


def _nyu_fixture(tmp_path, n=3):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, 3, 640, 480), dtype=np.uint8)  # as MATLAB stores them
    depths = rng.uniform(0.5, 9.0, (n, 640, 480)).astype(np.float32)
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(mat, "w") as f:
        f["images"], f["depths"] = images, depths
    splits = tmp_path / "splits.mat"
    savemat(splits, {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2]])})
    return str(mat), str(splits), images, depths


def test_nyu_labelled_mat_and_official_split(tmp_path):
    mat, splits, images, depths = _nyu_fixture(tmp_path)
    train = load_nyu_labeled(mat, splits, "train")
    (test,) = load_nyu_labeled(mat, splits, "test")
    assert [d["nyu_index"] for d in train] == [0, 2] and test["nyu_index"] == 1
    rgb, depth = read_depth_sample(test, "RGB")
    assert rgb.shape == (480, 640, 3) and depth.shape == (480, 640)
    assert rgb[10, 20, 1] == images[1, 1, 20, 10] and depth[10, 20] == depths[1, 20, 10]
    with pytest.raises(DepthDataError, match="absent/splits.mat"):
        load_nyu_labeled(mat, str(tmp_path / "absent" / "splits.mat"), "test")


def test_nyu_wrong_layout_names_the_file(tmp_path):
    bad = tmp_path / "bad.mat"
    with h5py.File(bad, "w") as f:
        f["images"] = np.zeros((1, 3, 10, 10), np.uint8)
        f["depths"] = np.zeros((1, 10, 10), np.float32)
    with pytest.raises(DepthDataError, match="bad.mat.*'images' must be"):
        load_nyu_labeled(str(bad), str(bad), "test")


def test_renderer_floor_depth_is_exact():
    cam = Camera(width=16, height=12, fx=10.0, fy=10.0, cx=8.0, cy=6.0)
    tex = dict(pattern="solid", c1=np.ones(3) * 0.5, c2=np.ones(3) * 0.5, tile=1.0, axes=(0, 2))
    scene = dict(pitch=0.0, light=np.array([0.0, -1.0, 2.0]), ambient=0.3, objects=[], planes=[
        dict(kind="plane", normal=np.array([0.0, -1.0, 0.0]), offset=-1.5, tex=tex),  # floor
        dict(kind="plane", normal=np.array([0.0, 1.0, 0.0]), offset=-1.0, tex=tex),  # ceiling
        dict(kind="plane", normal=np.array([0.0, 0.0, -1.0]), offset=-6.0, tex=tex),  # back
    ])
    rgb, depth = render_scene(scene, cam)
    v = np.arange(12) + 0.5
    floor = 1.5 * 10.0 / (v - 6.0)  # pinhole: depth = height * f / (v - cy)
    ceiling = 1.0 * 10.0 / (6.0 - v)
    want = np.minimum(6.0, np.where(v > 6, floor, ceiling))
    np.testing.assert_allclose(depth[:, 3], want, rtol=1e-5)
    assert rgb.dtype == np.uint8 and rgb.shape == (12, 16, 3)


def test_synthetic_dataset_written_once_in_list_format(tmp_path):
    root = str(tmp_path / "scenes")
    cam = Camera(width=32, height=24, fx=28.0, fy=28.0, cx=16.0, cy=12.0)
    ensure_scenes(root, counts={"train": 3, "val": 2}, seed=1, camera=cam)
    mtime = os.path.getmtime(os.path.join(root, "info.json"))
    ensure_scenes(root, counts={"train": 3, "val": 2}, seed=1, camera=cam)  # no re-render
    assert os.path.getmtime(os.path.join(root, "info.json")) == mtime
    train = load_depth_list(os.path.join(root, "train.txt"))
    val = load_depth_list(os.path.join(root, "val.txt"))
    assert len(train) == 3 and len(val) == 2 and train[0]["height"] == 24
    _, d0 = read_depth_sample(train[0])
    _, v0 = read_depth_sample(val[0])
    assert 0.3 < d0.min() and d0.max() < 10.0 and not np.array_equal(d0, v0)


def test_mapper_flips_image_and_depth_together(tmp_path):
    import detectron2.data.transforms as T

    depth = np.tile(np.arange(1, 9, dtype=np.float32), (6, 1))
    rgb, d = _write_pair(tmp_path, "c", depth, 1000)
    rec = dict(file_name=str(tmp_path / rgb), depth_file_name=str(tmp_path / d),
               depth_scale=1000.0, height=6, width=8)
    mapper = DepthDatasetMapper(True, augmentations=[T.RandomFlip(prob=1.0)], image_format="BGR")
    out = mapper(rec)
    image = cv2.imread(str(tmp_path / rgb))
    assert out["depth"][0].tolist() == list(range(8, 0, -1))
    assert np.array_equal(out["image"].permute(1, 2, 0).numpy(), image[:, ::-1])
    test = DepthDatasetMapper(False, augmentations=[T.Resize((3, 4))], image_format="BGR")(rec)
    assert tuple(test["image"].shape) == (3, 3, 4) and tuple(test["depth"].shape) == (6, 8)


def test_mapper_from_config_resizes_then_crops_with_nearest_depth(tmp_path):
    from odedet import get_odedet_cfg

    depth = np.tile(np.arange(1, 9, dtype=np.float32), (6, 1)) * np.arange(1, 7)[:, None]
    rgb, d = _write_pair(tmp_path, "e", depth, 1000)
    rec = dict(file_name=str(tmp_path / rgb), depth_file_name=str(tmp_path / d),
               depth_scale=1000.0, height=6, width=8)
    cfg = get_odedet_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (12,), 16
    cfg.INPUT.CROP.ENABLED, cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE = True, "absolute", [10, 14]
    out = DepthDatasetMapper(cfg, True)(rec)
    assert tuple(out["image"].shape) == (3, 10, 14) and tuple(out["depth"].shape) == (10, 14)
    # nearest-neighbour resampling: every depth is one of the originals, never a blend
    assert set(out["depth"].flatten().tolist()) <= set(depth.flatten().tolist())


def test_synthetic_scenes_do_not_depend_on_the_number_of_render_processes(tmp_path):
    from odedet.data.depth.synthetic import generate_scenes

    cam = Camera(width=16, height=12, fx=14.0, fy=14.0, cx=8.0, cy=6.0)
    counts = {"train": 64, "val": 1}
    one = generate_scenes(str(tmp_path / "one"), counts, seed=3, camera=cam, workers=1)
    two = generate_scenes(str(tmp_path / "two"), counts, seed=3, camera=cam, workers=2)
    for split in ("train", "val"):
        a = load_depth_list(os.path.join(one, f"{split}.txt"))
        b = load_depth_list(os.path.join(two, f"{split}.txt"))
        assert len(a) == counts[split] == len(b)
        for x, y in zip(a, b):
            for u, v in zip(read_depth_sample(x), read_depth_sample(y)):
                np.testing.assert_array_equal(u, v)
    depths = [read_depth_sample(x)[1] for x in load_depth_list(os.path.join(one, "train.txt"))]
    assert not np.array_equal(depths[0], depths[1])  # scenes differ from each other

"""pytest plugin for detectron2's own v0.6 test suite run against odedet's pure-PyTorch build.

Loaded by tools/detectron2_tests/run_v06.sh with ``-p d2_v06_skips``; the vendored test files are
never edited. Each entry of SKIPS names one test (a node id relative to the extracted folder, or a
prefix of one) and the reason it cannot run here. Reasons are about this environment (no
network, no COCO files, no GPU, ...) except the ones marked PURE-BUILD, which name the one place
where the pure build knowingly differs from the compiled ops (docs/compatibility.md).
An entry that no longer matches any collected test fails the run, so the list cannot go stale.
"""
import pytest

NO_COCO = "needs the COCO val2017 annotation files under datasets/coco (not on this machine)"
NO_NETWORK = "downloads a file from dl.fbaipublicfiles.com (this machine reaches no network but PyPI)"

NO_ZOO_WEIGHTS = (
    "downloads model-zoo weights (.pkl) from dl.fbaipublicfiles.com (this machine reaches no "
    "network but PyPI)"
)
NO_CAFFE2 = "exports to caffe2, which torch no longer ships (and downloads model-zoo weights)"

SKIPS = {
    "tests/test_export_caffe2.py::TestCaffe2Export": NO_CAFFE2,
    "tests/test_export_torchscript.py::TestScripting::testMaskRCNNFPN": NO_ZOO_WEIGHTS,
    "tests/test_export_torchscript.py::TestScripting::testMaskRCNNC4": NO_ZOO_WEIGHTS,
    "tests/test_export_torchscript.py::TestScripting::testRetinaNet": NO_ZOO_WEIGHTS,
    "tests/test_export_torchscript.py::TestTracing::testMaskRCNNFPN": NO_ZOO_WEIGHTS,
    "tests/test_export_torchscript.py::TestTracing::testMaskRCNNC4": NO_ZOO_WEIGHTS,
    "tests/test_export_torchscript.py::TestTracing::testRetinaNet": NO_ZOO_WEIGHTS,
    "tests/data/test_coco_evaluation.py::TestCOCOeval::test_unknown_category": NO_COCO,
    "tests/data/test_dataset.py::TestDataLoader::test_build_dataloader_train": NO_COCO,
    "tests/data/test_dataset.py::TestDataLoader::test_build_iterable_dataloader_train": NO_COCO,
    "tests/test_engine.py::TestTrainer::test_default_trainer": NO_COCO,
    "tests/data/test_detection_utils.py::TestTransformAnnotations::test_opencv_exif_orientation": NO_NETWORK,
    "tests/data/test_detection_utils.py::TestTransformAnnotations::test_read_exif_orientation": NO_NETWORK,
    "tests/data/test_coco_evaluation.py::TestCOCOeval::test_fast_eval": (
        "numpy >= 2: the test feeds pycocotools' loadRes detections that an earlier loadRes call "
        "mutated (bbox became an ndarray), and `ndarray == []` now raises instead of returning False; "
        "the same failure happens with the compiled COCOeval_opt"
    ),
    "tests/data/test_transforms.py::TestTransforms::test_resize_and_crop": (
        "shapely >= 2 (fvcore's polygon crop) returns the same clipped rectangle starting at "
        "another vertex; the test compares vertex order"
    ),
    "tests/modeling/test_roi_heads.py::ROIHeadsTest::test_rroi_heads": (
        "PURE-BUILD: expected losses are float32 artifacts of the compiled box_iou_rotated, which "
        "breaks exact IoU ties (15 anchors at IoU 1/256 in exact arithmetic) that the exact "
        "pure-PyTorch IoU keeps, so RRPN matches more low-quality anchors; RRPN training itself is "
        "tested in odedet's tests/install"
    ),
}


def pytest_collection_modifyitems(config, items):
    used = set()
    for item in items:
        for key, reason in SKIPS.items():
            if item.nodeid == key or item.nodeid.startswith(key + "::"):
                item.add_marker(pytest.mark.skip(reason=reason))
                used.add(key)
    stale = sorted(set(SKIPS) - used)
    if stale and not config.getoption("keyword") and not config.args[1:]:
        raise pytest.UsageError(f"d2_v06_skips: entries match no collected test: {stale}")

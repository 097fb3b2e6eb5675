"""The rest of the edges, through the tools: config typos give odedet's ConfigError with close
keys in every tool; the demo checks that its video writer opened and that every image it
reports was written; tools/object_depth.py reads through odedet's robust reader and checks its
writes."""
import os
import sys

import cv2
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "detection"))
from _engine_fixtures import load_tool, tiny_cfg, write_cfg  # noqa: E402

from odedet.config_check import ConfigError  # noqa: E402
from odedet.data.image_io import BadImageError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TYPO = ["MODEL.ODE.RTOL_TRAN", "0.1"]
CLOSE = r"'MODEL.ODE.RTOL_TRAN'.*Close valid keys: MODEL.ODE.RTOL_TRAIN"


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """(config file, weights) of the tiny Faster R-CNN."""
    from odedet.engine import Trainer

    d = tmp_path_factory.mktemp("det")
    cfg = tiny_cfg(str(d / "out"))
    torch.save({"model": Trainer.build_model(cfg).state_dict()}, d / "w.pth")
    return write_cfg(str(d / "cfg.yaml"), cfg), str(d / "w.pth")


def _image(path, h=48, w=64):
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    return str(path)


def _typo_yaml(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("MODEL:\n  ODE:\n    RTOL_TRAN: 0.1\n")
    return str(path)


TOOLS = ["demo", "quickstart", "quickstart_depth", "train_cifar", "benchmark_tolerance",
         "benchmark_models", "visualize_data", "object_depth"]


@pytest.mark.parametrize("tool", TOOLS)
def test_config_typos_give_close_keys_in_every_tool(tool, tmp_path, detector, monkeypatch):
    cfg, weights = detector
    out = str(tmp_path / "out")
    if tool == "demo":
        call = lambda: load_tool("demo").main(  # noqa: E731
            ["--config-file", cfg, "--input", _image(tmp_path / "a.jpg"), "--output", out, *TYPO])
    elif tool == "quickstart":
        monkeypatch.chdir(os.getcwd())  # the quickstart chdirs to the repository
        call = lambda: load_tool("quickstart").main(["--quick", "--output-dir", out, *TYPO])  # noqa
    elif tool == "quickstart_depth":
        call = lambda: load_tool("quickstart_depth").main(  # noqa: E731
            ["--output-dir", out, "--models", "ode_resnet18", *TYPO])
    elif tool == "train_cifar":
        call = lambda: load_tool("train_cifar").main(  # noqa: E731
            ["train", "--model", "mnist-odenet", "--epochs", "1", "--output-dir", out, "--quiet",
             "--no-memory", *TYPO])
    elif tool == "benchmark_tolerance":
        call = lambda: load_tool("benchmark").main(  # noqa: E731
            ["tolerance", "--config-file", cfg, "--weights", weights, "--out", out, "--quick",
             *TYPO])
    elif tool == "benchmark_models":
        call = lambda: load_tool("benchmark").main(  # noqa: E731
            ["models", "--quick", "--models", "ODE-FPN", "--model-config",
             f"ODE-FPN={_typo_yaml(tmp_path)}", "--out", out])
    elif tool == "visualize_data":
        call = lambda: load_tool("visualize_data").main(  # noqa: E731
            ["--config-file", cfg, "--output-dir", out, *TYPO])
    else:
        call = lambda: load_tool("object_depth").main(  # noqa: E731
            ["--det-config", _typo_yaml(tmp_path), "--det-weights", weights, "--depth-config",
             cfg, "--depth-weights", weights, "--input", _image(tmp_path / "a.png"),
             "--output", out])
    with pytest.raises(ConfigError, match=CLOSE):
        call()


def _video(path, frames=3):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4v videos")
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    return str(path)


def test_demo_video_writer_that_cannot_open_is_an_error(tmp_path, detector):
    cfg, weights = detector
    demo = load_tool("demo")
    clip = _video(tmp_path / "clip.mp4")
    written = demo.main(["--config-file", cfg, "--video-input", clip, "--output",
                         str(tmp_path / "vis"), "MODEL.WEIGHTS", weights])
    assert os.path.getsize(written[0]) > 0
    (tmp_path / "taken.mp4").mkdir()  # a folder where the video file should go
    with pytest.raises(OSError, match=r"cannot write the video .*taken.mp4.*VideoWriter"):
        demo.main(["--config-file", cfg, "--video-input", clip, "--output",
                   str(tmp_path / "taken.mp4"), "MODEL.WEIGHTS", weights])


def test_demo_image_it_reports_is_really_written(tmp_path, detector):
    cfg, weights = detector
    demo = load_tool("demo")
    img = _image(tmp_path / "a.jpg", 64, 64)
    (tmp_path / "out.jpg").mkdir()  # cv2.imwrite returns False for a folder
    with pytest.raises(OSError, match=r"could not write .*out.jpg"):
        demo.main(["--config-file", cfg, "--input", img, "--output", str(tmp_path / "out.jpg"),
                   "MODEL.WEIGHTS", weights])
    written = demo.main(["--config-file", cfg, "--input", img, "--output",
                         str(tmp_path / "vis"), "MODEL.WEIGHTS", weights])
    assert written and all(os.path.getsize(w) > 0 for w in written)


@pytest.fixture(scope="module")
def object_depth_models(tmp_path_factory):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "depth"))
    from test_depth_object_tool import _save, _vgg

    from odedet import get_odedet_cfg

    d = tmp_path_factory.mktemp("objdepth")
    det = get_odedet_cfg()
    _vgg(det, ["vgg3"])
    det.MODEL.RPN.IN_FEATURES = ["vgg3"]
    det.MODEL.ANCHOR_GENERATOR.SIZES = [[16, 32]]
    det.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    det.MODEL.ROI_HEADS.IN_FEATURES = ["vgg3"]
    det.MODEL.ROI_HEADS.NUM_CLASSES = 2
    det.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    det.MODEL.ROI_BOX_HEAD.NUM_FC, det.MODEL.ROI_BOX_HEAD.FC_DIM = 1, 16
    dep = get_odedet_cfg()
    _vgg(dep, ["vgg1", "vgg2", "vgg3", "vgg4", "vgg5"])
    dep.MODEL.META_ARCHITECTURE = "DepthEstimator"
    dep.MODEL.DEPTH.IN_FEATURES = ["vgg1", "vgg2", "vgg3", "vgg4", "vgg5"]
    dep.MODEL.DEPTH.CONVS_DIM = 16
    (dc, dw), (pc, pw) = _save(det, d, "det"), _save(dep, d, "dep")
    return ["--det-config", dc, "--det-weights", dw, "--depth-config", pc, "--depth-weights", pw]


def test_object_depth_reads_robustly_and_checks_its_writes(tmp_path, object_depth_models):
    tool = load_tool("object_depth")
    good = _image(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(open(good, "rb").read()[:200])  # truncated
    gray = tmp_path / "gray.png"  # odd mode: converted by the robust reader
    cv2.imwrite(str(gray), np.full((48, 64), 90, np.uint8))
    out = tmp_path / "vis"
    report = tool.main([*object_depth_models, "--input", good, str(bad), str(gray), "--output",
                        str(out)])
    assert set(report) == {good, str(gray)}  # the bad one skipped with a warning
    assert (out / "good.png").stat().st_size > 0 and (out / "object_depths.json").exists()
    with pytest.raises(BadImageError, match="bad.png"):  # alone: an error naming it
        tool.main([*object_depth_models, "--input", str(bad), "--output", str(out)])
    blocked = tmp_path / "blocked"
    (blocked / "good.png").mkdir(parents=True)  # where the output image should go
    with pytest.raises(OSError, match=r"could not write .*blocked/good.png"):
        tool.main([*object_depth_models, "--input", good, "--output", str(blocked)])

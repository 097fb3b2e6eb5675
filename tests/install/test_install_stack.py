"""The install route: detectron2's pure-PyTorch build works, and its build script fails safely."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools" / "detectron2_pure" / "build.py"


def _load_build_module():
    spec = importlib.util.spec_from_file_location("d2_build", BUILD)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_env_command_reports_pure_build_and_versions():
    out = subprocess.run(
        [sys.executable, "-m", "odedet.env"], capture_output=True, text=True, check=True
    ).stdout
    assert "detectron2 ops" in out and "pure-pytorch" in out
    assert "0.6+purepytorch" in out and "torchdiffeq" in out and torch.__version__ in out


def test_detectron2_is_a_real_distribution():
    import importlib.metadata

    dist = importlib.metadata.distribution("detectron2")
    assert dist.version.startswith("0.6")
    files = {str(f) for f in dist.files}
    assert "detectron2/_pure_ops.py" in files  # so `pip uninstall detectron2` removes it


def test_faster_rcnn_r50_fpn_trains_and_infers_on_cpu():
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 100
    model = build_model(cfg)
    img = torch.rand(3, 96, 128) * 255
    inst = Instances((96, 128))
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 10.0, 60.0, 50.0]]))
    inst.gt_classes = torch.tensor([1])
    model.train()
    with EventStorage():
        losses = model([{"image": img, "instances": inst}])
    total = sum(losses.values())
    assert torch.isfinite(total)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    opt.zero_grad()
    total.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        out = model([{"image": img, "height": 96, "width": 128}])
    assert out[0]["instances"].image_size == (96, 128)


def test_deform_conv_runs_on_cpu_with_gradients():
    from detectron2.layers import DeformConv, ModulatedDeformConv

    x = torch.randn(1, 4, 9, 9, requires_grad=True)
    conv = DeformConv(4, 6, 3, padding=1)
    offset = torch.zeros(1, 18, 9, 9, requires_grad=True)
    y = conv(x, offset)
    # Zero offsets make deformable convolution an ordinary convolution.
    assert torch.allclose(y, torch.nn.functional.conv2d(x, conv.weight, padding=1), atol=1e-5)
    y.sum().backward()
    assert x.grad.abs().sum() > 0 and offset.grad is not None
    mconv = ModulatedDeformConv(4, 6, 3, padding=1)
    mask = torch.full((1, 9, 9, 9), 0.5)
    ref = 0.5 * torch.nn.functional.conv2d(x, mconv.weight, padding=1) + mconv.bias.view(1, -1, 1, 1)
    assert torch.allclose(mconv(x, offset, mask), ref, atol=1e-5)


def test_rotated_ops_raise_a_clear_error():
    from detectron2._pure_ops import CompiledOpUnavailable
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    with pytest.raises(CompiledOpUnavailable, match="box_iou_rotated.*build detectron2 from source"):
        pairwise_iou_rotated(torch.zeros(1, 5), torch.zeros(1, 5))


def test_coco_evaluator_falls_back_to_pycocotools(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.evaluation import COCOEvaluator

    name = "odedet_install_test_ds"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: [])
        MetadataCatalog.get(name).set(thing_classes=["a"], json_file=str(tmp_path / "x.json"))
    (tmp_path / "x.json").write_text('{"images": [], "annotations": [], "categories": []}')
    ev = COCOEvaluator(name, output_dir=str(tmp_path), use_fast_impl=True)
    assert ev._use_fast_impl is False


def test_build_refuses_a_tampered_sdist(tmp_path):
    build = _load_build_module()
    (tmp_path / build.SDIST_FILE).write_bytes(b"not the real sdist")
    with pytest.raises(SystemExit) as info:
        build.fetch_sdist(tmp_path)
    msg = str(info.value)
    assert "sha256 mismatch" in msg and build.SDIST_SHA256 in msg
    assert not (tmp_path / build.SDIST_FILE).exists()  # moved aside, never used


def test_build_script_cli_fails_with_clear_message_on_bad_hash(tmp_path):
    """The whole script (as the set-up runs it) exits 1 with one readable line, no traceback."""
    build = _load_build_module()
    (tmp_path / build.SDIST_FILE).write_bytes(b"tampered")
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, str(BUILD), "--cache", str(tmp_path), "--force"],
        capture_output=True, text=True, env=env,
    )
    assert proc.returncode == 1
    assert "sha256 mismatch" in proc.stderr and "Traceback" not in proc.stderr


def test_patches_fail_loudly_when_sources_differ(tmp_path):
    build = _load_build_module()
    rel = build.PATCHES[0][0]
    target = tmp_path / "detectron2" / rel
    target.parent.mkdir(parents=True)
    target.write_text("# a different detectron2\n")
    with pytest.raises(SystemExit, match="expected its target text exactly once, found 0"):
        build.apply_patches(tmp_path)


def test_a_compiled_detectron2_is_detected_and_left_alone(tmp_path):
    """A detectron2 with an importable _C is reported as compiled, so the build skips it."""
    fake = tmp_path / "detectron2"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "_C.py").write_text("")  # stands in for _C.cpython-311-x86_64-linux-gnu.so
    code = (
        f"import importlib.util, sys; spec = importlib.util.spec_from_file_location('b', {str(BUILD)!r});"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m);"
        "print(m.installed_state()[0])"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "compiled", out.stderr

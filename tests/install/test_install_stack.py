"""The install route: detectron2's pure-PyTorch build works, and its build script fails safely."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from odedet.env import detectron2_build

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools" / "detectron2_pure" / "build.py"
PURE_OPS = ROOT / "tools" / "detectron2_pure" / "_pure_ops.py"
BUILD_KIND = detectron2_build()
pure_only = pytest.mark.skipif(
    BUILD_KIND != "pure-pytorch",
    reason=f"about odedet's pure-PyTorch detectron2 build; the active one is {BUILD_KIND}",
)
compiled_only = pytest.mark.skipif(
    BUILD_KIND != "compiled", reason="needs a detectron2 with compiled ops (detectron2._C) to compare"
)


def _load_build_module():
    spec = importlib.util.spec_from_file_location("d2_build", BUILD)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_env_command_reports_the_active_build_and_versions():
    out = subprocess.run(
        [sys.executable, "-m", "odedet.env"], capture_output=True, text=True, check=True
    ).stdout
    assert "detectron2 ops" in out and BUILD_KIND in out
    assert "torchdiffeq" in out and torch.__version__ in out
    if BUILD_KIND == "pure-pytorch":
        assert "0.6+purepytorch" in out


@pure_only
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


@pure_only  # detectron2's compiled deformable conv has no CPU kernel; the pure build uses torchvision
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


def test_rotated_box_ops_work():
    """Rotated IoU, NMS and ROIAlignRotated run (pure-PyTorch or compiled) with known answers."""
    from detectron2.layers import ROIAlign, ROIAlignRotated, batched_nms_rotated, nms_rotated
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    a = torch.tensor([[10.0, 10.0, 4.0, 2.0, 0.0]])
    b = torch.tensor([[10.0, 10.0, 4.0, 2.0, 90.0], [11.0, 10.0, 4.0, 2.0, 0.0]])
    # a cross: intersection 2x2 = 4 of 8 + 8 - 4; a half-shifted box: 6 of 8 + 8 - 6
    assert torch.allclose(pairwise_iou_rotated(a, b), torch.tensor([[4 / 12, 6 / 10]]), atol=1e-5)
    boxes = torch.cat([a, b, a + torch.tensor([50.0, 0, 0, 0, 0])])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert nms_rotated(boxes, scores, 0.5).tolist() == [0, 1, 3]
    assert batched_nms_rotated(boxes, scores, torch.tensor([0, 0, 1, 0]), 0.5).tolist() == [0, 1, 2, 3]
    x = torch.rand(1, 2, 12, 12, requires_grad=True)
    rot = ROIAlignRotated((3, 3), spatial_scale=1.0, sampling_ratio=2)
    ref = ROIAlign((3, 3), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    y = rot(x, torch.tensor([[0.0, 6.0, 5.0, 6.0, 4.0, 0.0]]))
    assert torch.allclose(y, ref(x, torch.tensor([[0.0, 3.0, 3.0, 9.0, 7.0]])), atol=1e-5)
    y.sum().backward()
    assert x.grad.abs().sum() > 0


def _load_pure_ops():
    spec = importlib.util.spec_from_file_location("odedet_pure_ops", PURE_OPS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _random_rotated(n, gen, spread=60.0):
    ctr = torch.rand(n, 2, generator=gen) * spread
    size = torch.rand(n, 2, generator=gen) * 30 + 1
    ang = torch.rand(n, 1, generator=gen) * 360 - 180
    return torch.cat([ctr, size, ang], 1)


@compiled_only
def test_pure_rotated_ops_match_the_compiled_ones():
    """odedet's pure-PyTorch rotated ops against detectron2._C's CPU kernels, on random input."""
    import detectron2.layers  # noqa: F401  (loads _C, which registers torch.ops.detectron2.*)

    _C = torch.ops.detectron2  # main registers its rotated ops here (v0.6 had them on _C)
    pure = _load_pure_ops()
    gen = torch.Generator().manual_seed(0)
    b1, b2 = _random_rotated(60, gen), _random_rotated(70, gen)
    b2[:10] = b1[:10] + torch.randn(10, 5, generator=gen) * 0.5  # near-duplicates too
    assert torch.allclose(pure.box_iou_rotated(b1, b2), _C.box_iou_rotated(b1, b2), atol=1e-4)
    dets, scores = _random_rotated(300, gen, spread=40.0), torch.rand(300, generator=gen)
    assert torch.equal(
        pure.nms_rotated(dets, scores, 0.3), torch.ops.detectron2.nms_rotated(dets, scores, 0.3)
    )
    x = torch.rand(2, 3, 20, 24, generator=gen, dtype=torch.float64)
    rois = torch.cat([torch.randint(0, 2, (15, 1), generator=gen).double(),
                      _random_rotated(15, gen, spread=40.0).double()], 1)
    for ratio in (0, 2):
        args = (0.5, 4, 5, ratio)
        out = pure.roi_align_rotated_forward(x, rois, *args)
        assert torch.allclose(out, _C.roi_align_rotated_forward(x, rois, *args), atol=1e-10)
        g = torch.rand_like(out)
        bw = (0.5, 4, 5, 2, 3, 20, 24, ratio)
        assert torch.allclose(
            pure.roi_align_rotated_backward(g, rois, *bw),
                _C.roi_align_rotated_backward(g, rois, *bw), atol=1e-10,
        )


@pure_only
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
    if BUILD_KIND == "compiled":  # a user's compiled detectron2 is never replaced, even --force
        assert proc.returncode == 0 and "leaving it untouched" in proc.stdout, proc.stderr
        return
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


def test_rotated_faster_rcnn_trains_and_infers():
    """RRPN + rotated Fast R-CNN heads (rotated anchors, IoU, NMS, ROIAlignRotated) train a few
    steps with a falling loss and run inference, on whichever detectron2 build is active."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.structures import Instances, RotatedBoxes
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "RRPN"
    cfg.MODEL.ANCHOR_GENERATOR.NAME = "RotatedAnchorGenerator"
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16, 32]]
    cfg.MODEL.ANCHOR_GENERATOR.ANGLES = [[-60, 0, 60]]
    cfg.MODEL.RPN.BBOX_REG_WEIGHTS = (1, 1, 1, 1, 1)
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.MODEL.ROI_HEADS.NAME = "RROIHeads"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignRotated"
    cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10, 10, 5, 5, 1)
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    model = build_model(cfg)
    img = torch.rand(3, 64, 80) * 255
    inst = Instances((64, 80))
    inst.gt_boxes = RotatedBoxes(torch.tensor([[30.0, 30.0, 30.0, 14.0, 30.0], [55, 40, 16, 16, -10]]))
    inst.gt_classes = torch.tensor([0, 1])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    totals = []
    with EventStorage():
        for _ in range(6):
            losses = model([{"image": img, "instances": inst}])
            total = sum(losses.values())
            assert torch.isfinite(total), losses
            opt.zero_grad()
            total.backward()
            opt.step()
            totals.append(float(total))
    assert min(totals[-2:]) < totals[0], totals
    model.eval()
    with torch.no_grad():
        out = model([{"image": img, "height": 64, "width": 80}])[0]["instances"]
    assert isinstance(out.pred_boxes, RotatedBoxes) and out.pred_boxes.tensor.shape[1] == 5


def test_compiled_build_script_refuses_a_missing_or_wrong_source(tmp_path):
    """tools/test_detectron2_build.sh stops with one message before creating anything."""
    script = str(ROOT / "tools" / "test_detectron2_build.sh")
    env = dict(os.environ, ODEDET_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(["bash", script, str(tmp_path / "nope.tar.gz")], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 1 and "no such source" in proc.stderr
    (tmp_path / "tree").mkdir()
    proc = subprocess.run(["bash", script, str(tmp_path / "tree")], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 1 and "not a detectron2 source tree" in proc.stderr
    assert not (tmp_path / "cache").exists()

# Added by odedet's pure-PyTorch build of detectron2 v0.6 (tools/detectron2_pure/build.py).
"""Stand-ins for detectron2's compiled extension ``detectron2._C``.

detectron2 v0.6 imports ``detectron2._C`` at module level in a few places. This build ships no
compiled extension, so those imports go through :func:`load_compiled_ops`, which returns the real
``_C`` when one exists (a user who built detectron2 from source keeps it) and otherwise a
placeholder whose every attribute raises an error that names the missing op.

Ops with a pure-PyTorch replacement:

* deformable convolution (plain and modulated): ``torchvision.ops.deform_conv2d``, which has
  autograd on CPU and CUDA;
* the fast COCO evaluation (``COCOeval_opt``): ``pycocotools.cocoeval.COCOeval`` is used instead,
  see ``detectron2/evaluation/coco_evaluation.py``.

Ops without one (rotated boxes: ``box_iou_rotated``, ``ROIAlignRotated``) raise
:class:`CompiledOpUnavailable` when called.
"""
import importlib

import torchvision

PURE_PYTORCH_BUILD = True

_INSTALL_HINT = (
    "This detectron2 is odedet's pure-PyTorch build (no compiled detectron2._C). To use this op, "
    "build detectron2 from source with its C++/CUDA extension "
    "(https://detectron2.readthedocs.io/en/latest/tutorials/install.html) in this environment; "
    "odedet's set-up leaves such a build untouched."
)


class CompiledOpUnavailable(RuntimeError):
    """Raised when code needs an op that exists only in detectron2's compiled extension."""


class _MissingCompiledOps:
    """Placeholder for ``detectron2._C``: falsy, and each attribute access names the op."""

    def __bool__(self):
        return False

    def __getattr__(self, name):
        raise CompiledOpUnavailable(f"detectron2 op '{name}' needs detectron2._C. {_INSTALL_HINT}")


def load_compiled_ops():
    """Return the compiled ``detectron2._C`` module if importable, else a falsy placeholder."""
    try:
        return importlib.import_module("detectron2._C")
    except ImportError:
        return _MissingCompiledOps()


def compiled_ops_available() -> bool:
    return bool(load_compiled_ops())


def deform_conv(
    input, offset, weight, stride=1, padding=0, dilation=1, groups=1, deformable_groups=1,
    im2col_step=64,
):
    """Deformable convolution (Dai et al. 2017) via torchvision.

    Same argument order as detectron2's ``deform_conv``. ``groups`` and ``deformable_groups`` are
    implied by the shapes of ``weight`` (C_out, C_in / groups, kh, kw) and ``offset``
    (N, 2 * deformable_groups * kh * kw, H, W), as torchvision infers them; ``im2col_step`` is a
    CUDA-kernel tuning knob with no meaning here.
    """
    _check_groups(input, weight, offset, groups, deformable_groups, mask_factor=2)
    return torchvision.ops.deform_conv2d(
        input, offset, weight, stride=stride, padding=padding, dilation=dilation
    )


def modulated_deform_conv(
    input, offset, mask, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
    deformable_groups=1,
):
    """Modulated deformable convolution (DCNv2, Zhu et al. 2019) via torchvision."""
    _check_groups(input, weight, offset, groups, deformable_groups, mask_factor=2)
    return torchvision.ops.deform_conv2d(
        input, offset, weight, bias=bias, stride=stride, padding=padding, dilation=dilation,
        mask=mask,
    )


def _check_groups(input, weight, offset, groups, deformable_groups, mask_factor):
    kh, kw = weight.shape[-2:]
    if input.shape[1] != weight.shape[1] * groups:
        raise ValueError(
            f"deform_conv: input has {input.shape[1]} channels but weight {tuple(weight.shape)} "
            f"with groups={groups} expects {weight.shape[1] * groups}"
        )
    if offset.shape[1] != mask_factor * deformable_groups * kh * kw:
        raise ValueError(
            f"deform_conv: offset has {offset.shape[1]} channels, expected "
            f"2 * deformable_groups({deformable_groups}) * {kh} * {kw}"
        )

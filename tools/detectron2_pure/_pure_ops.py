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
  see ``detectron2/evaluation/coco_evaluation.py``;
* rotated boxes: :func:`box_iou_rotated` (exact intersection of the two rectangles, vectorised
  over box pairs), :func:`nms_rotated` (greedy NMS on top of it, registered as the op
  ``torch.ops.detectron2.nms_rotated`` that ``detectron2.layers.nms`` calls, so it stays
  scriptable), and ROIAlignRotated (:func:`roi_align_rotated_forward` / ``_backward``, the same
  bilinear sampling grid as detectron2's ``ROIAlignRotated_cpu.cpp``, as a sparse matrix).

Every other attribute of the placeholder raises :class:`CompiledOpUnavailable`.
"""
import importlib
import math

import torch
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
    """Placeholder for ``detectron2._C``: falsy (callers test ``if not _C``); the rotated-box ops
    are the pure-PyTorch ones below, and any other attribute access names the missing op."""

    def __bool__(self):
        return False

    def __getattr__(self, name):
        if name in _PURE_C_OPS:
            return _PURE_C_OPS[name]
        raise CompiledOpUnavailable(f"detectron2 op '{name}' needs detectron2._C. {_INSTALL_HINT}")


def load_compiled_ops():
    """Return the compiled ``detectron2._C`` module if importable, else a falsy placeholder
    (and register the pure ``torch.ops.detectron2.nms_rotated``)."""
    try:
        return importlib.import_module("detectron2._C")
    except ImportError:
        _register_torch_ops()
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


# -- rotated boxes ---------------------------------------------------------------------------
# Boxes are (x_ctr, y_ctr, w, h, angle_degrees), angle counter-clockwise, y pointing down, as in
# detectron2's box_iou_rotated_utils.h. The IoU is computed in float64 (the compiled CPU op uses
# float32), so results agree with it to float32 precision and are at least as accurate.

_IOU_EPS = 1e-5  # the compiled op's tolerance for "point on segment / inside rectangle"
_PAIRS_PER_CHUNK = 1 << 13  # bounds the memory of one vectorised step (and stays in cache)


def _rotated_vertices(b):
    """(..., 5) float64 boxes -> (..., 4, 2) corners, in the compiled op's order."""
    x, y, w, h, a = b.unbind(-1)
    theta = a * 0.01745329251
    c, s = torch.cos(theta) * 0.5, torch.sin(theta) * 0.5
    p0 = torch.stack([x + s * h + c * w, y + c * h - s * w], -1)
    p1 = torch.stack([x - s * h + c * w, y - c * h - s * w], -1)
    ctr = torch.stack([x, y], -1)
    return torch.stack([p0, p1, 2 * ctr - p0, 2 * ctr - p1], -2)


def _cross(a, b):
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _inside(pts, rect, vec):
    """Which of ``pts`` (K, P, 2) lie in the rectangles ``rect`` (K, 4, 2) (edges ``vec``)."""
    ab, da = vec[:, 0:1], vec[:, 3:4]
    ap = pts - rect[:, 0:1]
    ap_ab = (ap * ab).sum(-1)
    ap_ad = -(ap * da).sum(-1)
    ab_ab, ad_ad = (ab * ab).sum(-1), (da * da).sum(-1)
    e = _IOU_EPS
    return (ap_ab > -e) & (ap_ad > -e) & (ap_ab < ab_ab + e) & (ap_ad < ad_ad + e)


def _intersection_area(b1, b2):
    """Exact intersection areas of paired rotated rectangles b1[k], b2[k] ((K, 5) float64).

    The intersection of two convex polygons is convex, and its vertices are among the edge
    crossings and the corners of either box inside the other (24 candidates, as in the compiled
    op). The area of their convex hull is the shoelace sum over the candidates ordered by angle
    around their mean, which lies inside the hull; duplicates add zero area.
    """
    p1, p2 = _rotated_vertices(b1), _rotated_vertices(b2)
    v1, v2 = p1.roll(-1, 1) - p1, p2.roll(-1, 1) - p2
    # edge i of box 1 against edge j of box 2: (K, 4, 4)
    ev1, ev2 = v1[:, :, None], v2[:, None, :]
    det = _cross(ev2, ev1)
    d12 = p2[:, None, :] - p1[:, :, None]
    ok = det.abs() > 1e-14
    safe = torch.where(ok, det, torch.ones_like(det))
    t1, t2 = _cross(ev2, d12) / safe, _cross(ev1, d12) / safe
    e = _IOU_EPS
    ok &= (t1 > -e) & (t1 < 1 + e) & (t2 > -e) & (t2 < 1 + e)
    cross_pts = p1[:, :, None] + ev1 * t1[..., None]
    pts = torch.cat([cross_pts.flatten(1, 2), p1, p2], 1)  # (K, 24, 2)
    valid = torch.cat([ok.flatten(1), _inside(p1, p2, v2), _inside(p2, p1, v1)], 1)
    pts = torch.where(valid[..., None], pts, torch.zeros_like(pts))
    num = valid.sum(1)
    mean = pts.sum(1) / num.clamp(min=1)[:, None].to(pts)
    rel = pts - mean[:, None]
    ang = torch.atan2(rel[..., 1], rel[..., 0])
    ang = torch.where(valid, ang, torch.full_like(ang, 10.0))  # invalid ones sort last
    order = ang.argsort(1)
    rel = rel.gather(1, order[..., None].expand_as(rel))
    vsorted = valid.gather(1, order)
    rel = torch.where(vsorted[..., None], rel, rel[:, :1].expand_as(rel))  # pad with the first
    area = _cross(rel, rel.roll(-1, 1)).sum(1).abs() * 0.5
    return torch.where(num > 2, area, torch.zeros_like(area))


def _paired_iou(b1, b2):
    """IoU of paired boxes (K, 5) -> (K,), float64, with the compiled op's conventions."""
    shift = (b1[:, :2] + b2[:, :2]) / 2  # centre on the pair's midpoint, for precision
    b1 = torch.cat([b1[:, :2] - shift, b1[:, 2:]], 1)
    b2 = torch.cat([b2[:, :2] - shift, b2[:, 2:]], 1)
    area1, area2 = b1[:, 2] * b1[:, 3], b2[:, 2] * b2[:, 3]
    iou = torch.zeros_like(area1)
    # Only pairs whose circumscribed circles meet can intersect: the exact (costly) polygon step
    # runs on those alone; the others have IoU 0 exactly, as the full computation would give.
    reach = (b1[:, 2:4].norm(dim=1) + b2[:, 2:4].norm(dim=1)) / 2
    near = ((b1[:, :2] - b2[:, :2]).norm(dim=1) <= reach * (1 + 1e-6) + 1e-6) & (area1 >= 1e-14) & (
        area2 >= 1e-14
    )
    idx = near.nonzero().flatten()
    if idx.numel():
        inter = _intersection_area(b1[idx], b2[idx])
        union = (area1[idx] + area2[idx] - inter).clamp(min=1e-300)
        iou[idx] = inter / union
    return iou


def box_iou_rotated(boxes1, boxes2):
    """Pairwise IoU (N, M) of rotated boxes (N, 5) and (M, 5); float32, like the compiled op."""
    n, m = boxes1.shape[0], boxes2.shape[0]
    out = torch.zeros(n, m, dtype=torch.float32, device=boxes1.device)
    if n == 0 or m == 0:
        return out
    b1, b2 = boxes1.detach().double(), boxes2.detach().double()
    rows = max(1, _PAIRS_PER_CHUNK // m)
    for i in range(0, n, rows):
        blk = b1[i : i + rows]
        r = blk.shape[0]
        iou = _paired_iou(blk[:, None].expand(r, m, 5).reshape(-1, 5), b2.repeat(r, 1))
        out[i : i + r] = iou.view(r, m).float()
    return out


_NMS_BLOCK = 256


def nms_rotated(dets, scores, iou_threshold: float):
    """Greedy rotated NMS, the compiled op's algorithm: indices of kept boxes by decreasing score.

    Boxes are taken in blocks of the score order: a block is first suppressed by the boxes kept
    so far (one vectorised IoU), then resolved greedily with its own IoU matrix.
    """
    if dets.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=dets.device)
    order = scores.argsort(descending=True)
    boxes = dets.detach().double()[order]
    kept = []  # positions in ``order``
    for start in range(0, boxes.shape[0], _NMS_BLOCK):
        blk = boxes[start : start + _NMS_BLOCK]
        b = blk.shape[0]
        alive = torch.ones(b, dtype=torch.bool)
        if kept:
            prev = boxes[torch.tensor(kept)]
            over = _paired_iou(
                prev[:, None].expand(-1, b, 5).reshape(-1, 5), blk.repeat(len(prev), 1)
            ).view(len(prev), b)
            alive &= ~(over >= iou_threshold).any(0).cpu()
        idx = alive.nonzero().flatten()
        if idx.numel() == 0:
            continue
        cand = blk[idx.to(blk.device)]
        k = cand.shape[0]
        sup = _paired_iou(cand[:, None].expand(k, k, 5).reshape(-1, 5), cand.repeat(k, 1))
        sup = (sup.view(k, k) >= iou_threshold).cpu().numpy()
        removed = [False] * k
        for i in range(k):
            if removed[i]:
                continue
            kept.append(start + int(idx[i]))
            row = sup[i]
            for j in range(i + 1, k):
                if row[j]:
                    removed[j] = True
    return order[torch.tensor(kept, dtype=torch.long, device=order.device)]


_TORCH_OPS_REGISTERED = False


def _register_torch_ops():
    """Define ``torch.ops.detectron2.nms_rotated`` (what ``detectron2.layers.nms`` calls), unless
    a compiled detectron2 already did."""
    global _TORCH_OPS_REGISTERED
    if _TORCH_OPS_REGISTERED:
        return
    _TORCH_OPS_REGISTERED = True
    try:
        torch.ops.detectron2.nms_rotated
        return
    except (AttributeError, RuntimeError):
        pass

    @torch.library.custom_op("detectron2::nms_rotated", mutates_args=())
    def _nms_rotated_op(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        return nms_rotated(dets, scores, iou_threshold)


def _roi_align_rotated_matrix(rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, shape,
                              dtype):
    """Sparse (R*PH*PW, N*H*W) matrix of ROIAlignRotated's bilinear weights (sum of 1/count).

    Same sampling as ROIAlignRotated_cpu.cpp: continuous coordinates (centre minus 0.5), a
    sampling_ratio x sampling_ratio grid per bin (ceil(roi size / bin count) when it is 0),
    samples outside [-1, H] x [-1, W] contribute nothing, others are clamped to the border.
    """
    n, h, w = shape
    rois = rois.detach().to(dtype)
    dev = rois.device
    rows_all, cols_all, vals_all = [], [], []
    if rois.shape[0]:
        batch = rois[:, 0].long()
        cw = rois[:, 1] * spatial_scale - 0.5
        ch = rois[:, 2] * spatial_scale - 0.5
        rw = rois[:, 3] * spatial_scale
        rh = rois[:, 4] * spatial_scale
        if bool(((rw < 0) | (rh < 0)).any()):
            raise RuntimeError("ROIs in ROIAlignRotated do not have non-negative size!")
        theta = (rois[:, 5].double() * math.pi / 180.0).to(dtype)
        cos, sin = torch.cos(theta), torch.sin(theta)
        bin_h, bin_w = rh / pooled_h, rw / pooled_w
        if sampling_ratio > 0:
            gh = torch.full_like(rh, sampling_ratio, dtype=torch.long)
            gw = gh.clone()
        else:
            gh, gw = torch.ceil(rh / pooled_h).long(), torch.ceil(rw / pooled_w).long()
        grids = torch.stack([gh, gw], 1)
        for g in torch.unique(grids, dim=0).tolist():
            gy, gx = g
            if gy * gx == 0:
                continue  # an empty box: its bins stay 0, as in the compiled op
            sel = ((gh == gy) & (gw == gx)).nonzero().flatten()
            r = sel.numel()
            ph = torch.arange(pooled_h, device=dev, dtype=dtype).view(1, -1, 1, 1, 1)
            pw = torch.arange(pooled_w, device=dev, dtype=dtype).view(1, 1, -1, 1, 1)
            iy = (torch.arange(gy, device=dev, dtype=dtype) + 0.5).view(1, 1, 1, -1, 1)
            ix = (torch.arange(gx, device=dev, dtype=dtype) + 0.5).view(1, 1, 1, 1, -1)

            def v(t):
                return t[sel].view(-1, 1, 1, 1, 1)

            yy = -v(rh) / 2.0 + ph * v(bin_h) + iy * v(bin_h) / gy
            xx = -v(rw) / 2.0 + pw * v(bin_w) + ix * v(bin_w) / gx
            y = yy * v(cos) - xx * v(sin) + v(ch)
            x = yy * v(sin) + xx * v(cos) + v(cw)
            y, x = y.expand(r, pooled_h, pooled_w, gy, gx), x.expand(r, pooled_h, pooled_w, gy, gx)
            inside = ~((y < -1.0) | (y > h) | (x < -1.0) | (x > w))
            y, x = y.clamp(min=0), x.clamp(min=0)
            y_low, x_low = y.long(), x.long()
            y_edge, x_edge = y_low >= h - 1, x_low >= w - 1
            y_low = torch.where(y_edge, torch.full_like(y_low, h - 1), y_low)
            x_low = torch.where(x_edge, torch.full_like(x_low, w - 1), x_low)
            y = torch.where(y_edge, y_low.to(dtype), y)
            x = torch.where(x_edge, x_low.to(dtype), x)
            y_high = torch.where(y_edge, y_low, y_low + 1)
            x_high = torch.where(x_edge, x_low, x_low + 1)
            ly, lx = y - y_low, x - x_low
            hy, hx = 1.0 - ly, 1.0 - lx
            scale = inside.to(dtype) / float(gy * gx)
            base = (v(batch) * (h * w)).expand_as(y_low)
            out_row = (
                sel.view(-1, 1, 1) * (pooled_h * pooled_w)
                + torch.arange(pooled_h, device=dev).view(1, -1, 1) * pooled_w
                + torch.arange(pooled_w, device=dev).view(1, 1, -1)
            )[..., None, None].expand_as(y_low)
            for yi, xi, wt in (
                (y_low, x_low, hy * hx), (y_low, x_high, hy * lx),
                (y_high, x_low, ly * hx), (y_high, x_high, ly * lx),
            ):
                rows_all.append(out_row.reshape(-1))
                cols_all.append((base + yi * w + xi).reshape(-1))
                vals_all.append((wt * scale).reshape(-1))
    size = (rois.shape[0] * pooled_h * pooled_w, n * h * w)
    if rows_all:
        idx = torch.stack([torch.cat(rows_all), torch.cat(cols_all)])
        vals = torch.cat(vals_all)
    else:
        idx = torch.zeros(2, 0, dtype=torch.long, device=dev)
        vals = torch.zeros(0, dtype=dtype, device=dev)
    return torch.sparse_coo_tensor(idx, vals, size, check_invariants=False).coalesce()


def roi_align_rotated_forward(input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio):
    """(R, C, PH, PW) pooled features; signature of ``_C.roi_align_rotated_forward``."""
    n, c, h, w = input.shape
    r = rois.shape[0]
    if r * c * pooled_h * pooled_w == 0:
        return input.new_zeros(r, c, pooled_h, pooled_w)
    mat = _roi_align_rotated_matrix(
        rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, (n, h, w), input.dtype
    )
    feat = input.permute(0, 2, 3, 1).reshape(n * h * w, c)
    out = torch.sparse.mm(mat, feat)
    return out.view(r, pooled_h, pooled_w, c).permute(0, 3, 1, 2).contiguous()


def roi_align_rotated_backward(grad, rois, spatial_scale, pooled_h, pooled_w, n, c, h, w,
                               sampling_ratio):
    """Gradient w.r.t. the input (N, C, H, W); signature of ``_C.roi_align_rotated_backward``."""
    r = rois.shape[0]
    if grad.numel() == 0:
        return grad.new_zeros(n, c, h, w)
    mat = _roi_align_rotated_matrix(
        rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, (n, h, w), grad.dtype
    )
    g = grad.permute(0, 2, 3, 1).reshape(r * pooled_h * pooled_w, c)
    out = torch.sparse.mm(mat.t(), g)
    return out.view(n, h, w, c).permute(0, 3, 1, 2).contiguous()


_PURE_C_OPS = {
    "box_iou_rotated": box_iou_rotated,
    "nms_rotated": nms_rotated,
    "roi_align_rotated_forward": roi_align_rotated_forward,
    "roi_align_rotated_backward": roi_align_rotated_backward,
}

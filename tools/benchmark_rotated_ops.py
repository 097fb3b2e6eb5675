#!/usr/bin/env python
"""Speed of odedet's pure-PyTorch rotated-box ops against detectron2's compiled CPU ops.

Run in an environment whose detectron2 has its compiled ops (e.g. the one
tools/test_detectron2_build.sh builds); the pure ops are loaded from
tools/detectron2_pure/_pure_ops.py. Each case times the two implementations alternately
(pure, compiled, pure, ...) on the same inputs, so both see the same machine load, and reports
the median time of each and their ratio. Results are also checked to agree.

    OMP_NUM_THREADS=1 taskset -c 0 ENV/bin/python tools/benchmark_rotated_ops.py [--repeats 7] [--json out.json]
"""
import argparse
import importlib.util
import json
import platform
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load_pure_ops():
    spec = importlib.util.spec_from_file_location("odedet_pure_ops", ROOT / "tools/detectron2_pure/_pure_ops.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rotated_boxes(n, gen, spread=800.0, size=(10.0, 150.0)):
    ctr = torch.rand(n, 2, generator=gen) * spread
    wh = torch.rand(n, 2, generator=gen) * (size[1] - size[0]) + size[0]
    ang = torch.rand(n, 1, generator=gen) * 180 - 90
    return torch.cat([ctr, wh, ang], 1)


def cases(pure, gen):
    import detectron2.layers  # noqa: F401  (loads detectron2._C: registers torch.ops.detectron2.*)

    c = torch.ops.detectron2
    b1, b2 = rotated_boxes(200, gen), rotated_boxes(500, gen)
    yield ("box_iou_rotated 200x500", lambda: pure.box_iou_rotated(b1, b2),
           lambda: c.box_iou_rotated(b1, b2), "allclose")
    d1, d2 = rotated_boxes(200, gen, spread=40.0), rotated_boxes(500, gen, spread=40.0)
    yield ("box_iou_rotated 200x500, all pairs overlap (worst case)",
           lambda: pure.box_iou_rotated(d1, d2), lambda: c.box_iou_rotated(d1, d2), "allclose")
    anchors, gt = rotated_boxes(5000, gen), rotated_boxes(10, gen)
    yield ("box_iou_rotated 10x5000 (RRPN matching)", lambda: pure.box_iou_rotated(gt, anchors),
           lambda: c.box_iou_rotated(gt, anchors), "allclose")
    dets = rotated_boxes(2000, gen, spread=400.0)
    scores = torch.rand(2000, generator=gen)
    yield ("nms_rotated 2000 boxes, IoU 0.7", lambda: pure.nms_rotated(dets, scores, 0.7),
           lambda: c.nms_rotated(dets, scores, 0.7), "equal")
    x = torch.rand(2, 256, 50, 68, generator=gen)
    rois = torch.cat([torch.randint(0, 2, (256, 1), generator=gen).float(),
                      rotated_boxes(256, gen, spread=800.0, size=(16.0, 300.0))], 1)
    for ratio in (2, 0):
        args = (1 / 16, 7, 7, ratio)
        yield (f"ROIAlignRotated forward 256 rois, 256ch, 7x7, sampling_ratio={ratio}",
               lambda a=args: pure.roi_align_rotated_forward(x, rois, *a),
               lambda a=args: c.roi_align_rotated_forward(x, rois, *a), "allclose")
        g = torch.rand(256, 256, 7, 7, generator=gen)
        bw = (1 / 16, 7, 7, 2, 256, 50, 68, ratio)
        yield (f"ROIAlignRotated backward 256 rois, 256ch, 7x7, sampling_ratio={ratio}",
               lambda b=bw: pure.roi_align_rotated_backward(g, rois, *b),
               lambda b=bw: c.roi_align_rotated_backward(g, rois, *b), "allclose")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args()
    pure = load_pure_ops()
    gen = torch.Generator().manual_seed(0)
    rows = []
    print(f"machine: {platform.processor() or platform.machine()}, torch threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}")
    print(f"{'case':<62} {'pure ms':>9} {'compiled ms':>11} {'pure/compiled':>13}")
    for name, f_pure, f_comp, check in cases(pure, gen):
        f_pure(), f_comp()  # warm-up
        tp, tc = [], []
        for _ in range(args.repeats):
            dt, out_p = timed(f_pure)
            tp.append(dt)
            dt, out_c = timed(f_comp)
            tc.append(dt)
        ok = torch.equal(out_p, out_c) if check == "equal" else torch.allclose(out_p, out_c, atol=1e-4)
        mp, mc = statistics.median(tp) * 1e3, statistics.median(tc) * 1e3
        rows.append({"case": name, "pure_ms": mp, "compiled_ms": mc, "ratio": mp / mc, "agree": ok})
        print(f"{name:<62} {mp:>9.1f} {mc:>11.1f} {mp / mc:>12.1f}x{'' if ok else '  MISMATCH'}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

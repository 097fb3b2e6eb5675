#!/usr/bin/env python
"""Depth of each detected object: a Faster R-CNN and a depth model, labelled "class | depth m".

An odedet Faster R-CNN finds the objects, a depth model estimates the depth map, and each
detection gets the median depth inside its mask (or the central half of its box). Writes the image labelled "class score | depth m" and prints a table.

  python tools/object_depth.py --det-config DET.yaml --det-weights det.pth \\
      --depth-config configs/Depth/ode_resnet18_scenes.yaml --depth-weights depth.pth \\
      --input img.png folder/ --output vis/ [--confidence-threshold 0.5] [--box-fraction 0.5]
"""
import argparse
import json
import os

import numpy as np
import odedet  # noqa: F401,I001  (first: registers odedet, quiets detectron2 v0.6 warnings)
from detectron2.utils.logger import setup_logger

from odedet.config_check import config_file_arg, load_config
from odedet.engine.atomic_io import atomic_write_text
from odedet.engine.demo import Predictor, dataset_metadata, image_paths, read_inputs, write_image
from odedet.modeling.depth.visualize import draw_object_depths


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--det-config", required=True, type=config_file_arg,
                   help="detector config: a path, or a name under configs/")
    p.add_argument("--det-weights", required=True)
    p.add_argument("--depth-config", required=True, type=config_file_arg,
                   help="depth config: a path, or a name under configs/ (Depth/...)")
    p.add_argument("--depth-weights", required=True)
    p.add_argument("--input", nargs="+", required=True, help="images, folders or globs")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--confidence-threshold", type=float, default=0.5)
    p.add_argument("--box-fraction", type=float, default=0.5,
                   help="central fraction of a box used when there is no mask")
    return p


def _predictor(config, weights):
    cfg = load_config(config, ["MODEL.WEIGHTS", weights])
    cfg.freeze()
    return Predictor(cfg)


def main(argv=None):
    args = build_parser().parse_args(argv)
    logger = setup_logger(name="odedet")
    detector = _predictor(args.det_config, args.det_weights)
    depth_model = _predictor(args.depth_config, args.depth_weights)
    meta = dataset_metadata(detector.cfg)
    os.makedirs(args.output, exist_ok=True)
    report = {}
    paths = image_paths(args.input)
    # odedet's robust reader: a bad image among several is skipped (warning), alone an error
    for path, image in read_inputs(paths, detector.cfg):
        instances = detector(image)["instances"].to("cpu")
        instances = instances[instances.scores >= args.confidence_threshold]
        depth = depth_model(image)["depth"].cpu()
        vis, depths = draw_object_depths(image[:, :, ::-1], instances, depth, meta,
                                         box_fraction=args.box_fraction)
        dst = write_image(os.path.join(args.output, os.path.basename(path)), vis[:, :, ::-1])
        names = getattr(meta, "thing_classes", None)
        rows = [dict(cls=names[c] if names else int(c), score=round(float(s), 3),
                     box=[float(v) for v in b], depth_m=None if np.isnan(d) else
                     round(float(d), 3))
                for c, s, b, d in zip(instances.pred_classes.tolist(), instances.scores,
                                      instances.pred_boxes.tensor, depths.tolist())]
        report[path] = rows
        logger.info(f"{path} -> {dst}: " + "; ".join(f"{r['cls']} {r['depth_m']} m" for r in rows))
    if not report:
        raise ValueError(f"none of the {len(paths)} input image(s) could be read (see the "
                         f"warnings naming them)")
    atomic_write_text(os.path.join(args.output, "object_depths.json"),
                      json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()

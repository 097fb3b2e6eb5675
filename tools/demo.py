#!/usr/bin/env python
"""Run a trained odedet model on images, folders or a video and write annotated outputs.

  python tools/demo.py --config-file output/config.yaml --input img.jpg --output out.jpg \\
      MODEL.WEIGHTS output/model_final.pth
  python tools/demo.py --config-file CFG --input datasets/mine/images/ --output vis/ \\
      MODEL.WEIGHTS model.pth MODEL.ODE.RTOL_TEST 1e-2
  python tools/demo.py --config-file CFG --video-input clip.mp4 --output vis/ \\
      MODEL.WEIGHTS model.pth

What is drawn depends on MODEL.META_ARCHITECTURE (detections with class names and scores for
Faster R-CNN; other models register their own renderer in odedet.engine.demo). Class names come
from the config's first test dataset.
"""
import argparse
import sys

import odedet  # noqa: F401,I001  (first: registers odedet, quiets detectron2 v0.6 warnings)
from detectron2.utils.logger import setup_logger

from odedet.config_check import config_file_arg, load_config
from odedet.data.datasets import add_dataset_arguments, register_from_args
from odedet.engine.demo import Predictor, image_paths, run_on_images, run_on_video
from odedet.modeling.depth import demo as _depth_demo  # noqa: F401  (depth renderer)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", type=config_file_arg,
                        help="a path, or a name under configs/ (e.g. odenet_faster_rcnn.yaml)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", help="image files, folders or glob patterns")
    src.add_argument("--video-input", help="a video file")
    parser.add_argument("--output", required=True,
                        help="output folder, or a file name for one image / the video")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="draw only detections scoring at least this")
    add_dataset_arguments(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, KEY VALUE pairs (e.g. MODEL.WEIGHTS model.pth)")
    return parser


def setup_cfg(args):
    cfg = load_config(args.config_file, args.opts)  # key/value errors name the key
    cfg.freeze()
    return cfg


def main(argv=None):
    args = build_parser().parse_args(argv)
    logger = setup_logger(name="odedet")
    setup_logger(name="detectron2")
    register_from_args(args)
    predictor = Predictor(setup_cfg(args))
    if args.video_input:
        path, frames = run_on_video(predictor, args.video_input, args.output,
                                    args.confidence_threshold)
        logger.info(f"wrote {frames} annotated frame(s) to {path}")
        return [path]
    written = run_on_images(predictor, image_paths(args.input), args.output,
                            args.confidence_threshold)
    logger.info(f"wrote {len(written)} annotated image(s) to {args.output}")
    return written


if __name__ == "__main__":
    main()
    sys.exit(0)

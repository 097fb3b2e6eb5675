#!/usr/bin/env python
"""Draw the ground truth of a registered dataset, as annotated or as the training loader sees it.

  python tools/visualize_data.py --dataset odedet_shapes_val --output-dir vis/gt
  python tools/visualize_data.py --dataset mine --register-coco mine ann.json images/ \\
      --output-dir vis
  python tools/visualize_data.py --source dataloader --config-file CFG --output-dir vis/train

``--source annotation`` (default) draws each image of ``--dataset`` (default: the config's
DATASETS.TRAIN) with its boxes and class names; ``--source dataloader`` draws training batches
after the config's augmentation, through the same mapper training uses. The dataset is checked
on disk first, so a broken file is named instead of crashing mid-way.
"""
import argparse
import itertools
import os
import sys

import cv2
import numpy as np
import odedet  # noqa: F401,I001  (first: registers odedet, quiets detectron2 v0.6 warnings)
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer

from odedet.config_check import config_file_arg
from odedet.data.datasets import add_dataset_arguments, register_from_args, validate_datasets
from odedet.data.image_io import read_image

logger = setup_logger(name="odedet")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=["annotation", "dataloader"], default="annotation")
    parser.add_argument("--dataset", help="dataset name (default: the config's DATASETS.TRAIN)")
    parser.add_argument("--config-file", metavar="FILE", default="", type=config_file_arg,
                        help="a path, or a name under configs/")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--max-images", type=int, default=0, help="stop after N images (0: all)")
    add_dataset_arguments(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides")
    return parser


def setup_cfg(args):
    cfg = odedet.get_odedet_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if args.dataset:
        cfg.DATASETS.TRAIN = (args.dataset,)
    if not cfg.DATASETS.TRAIN:
        raise SystemExit("give --dataset NAME or a config with DATASETS.TRAIN")
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.freeze()
    return cfg


def _save(image_rgb, path):
    if not cv2.imwrite(path, np.ascontiguousarray(image_rgb[:, :, ::-1])):
        raise OSError(f"could not write {path}")
    return path


def from_annotations(cfg, out_dir):
    for name in cfg.DATASETS.TRAIN:
        meta = MetadataCatalog.get(name)
        for dic in DatasetCatalog.get(name):
            img = read_image(dic["file_name"], "RGB", dataset_name=name)
            vis = Visualizer(img, metadata=meta).draw_dataset_dict(dic).get_image()
            yield _save(vis, os.path.join(out_dir, os.path.basename(dic["file_name"])))


def from_dataloader(cfg, out_dir):
    from odedet.engine import Trainer

    meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
    for batch in Trainer.build_train_loader(cfg):  # infinite: the caller stops it
        for per_image in batch:
            img = utils.convert_image_to_rgb(per_image["image"].permute(1, 2, 0).numpy(),
                                             cfg.INPUT.FORMAT)
            fields = per_image["instances"].get_fields()
            labels = [meta.thing_classes[i] for i in fields["gt_classes"]]
            vis = Visualizer(img, metadata=meta).overlay_instances(
                labels=labels, boxes=fields.get("gt_boxes"), masks=fields.get("gt_masks"),
                keypoints=fields.get("gt_keypoints")).get_image()
            yield _save(vis, os.path.join(out_dir, f"{per_image['image_id']}.jpg"))


def main(argv=None):
    args = build_parser().parse_args(argv)
    register_from_args(args)
    cfg = setup_cfg(args)
    validate_datasets(cfg.DATASETS.TRAIN)
    os.makedirs(args.output_dir, exist_ok=True)
    draw = from_annotations if args.source == "annotation" else from_dataloader
    limit = args.max_images or (None if args.source == "annotation" else 16)
    written = list(itertools.islice(draw(cfg, args.output_dir), limit))
    logger.info(f"wrote {len(written)} image(s) to {args.output_dir}")
    return written


if __name__ == "__main__":
    main()
    sys.exit(0)

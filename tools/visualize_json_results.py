#!/usr/bin/env python
"""Draw saved COCO-format predictions next to the ground truth, one image per dataset image.

  python tools/visualize_json_results.py \\
      --input output/inference/odedet_shapes_val/coco_instances_results.json \\
      --dataset odedet_shapes_val --output vis/val

Each output image is the predictions (score >= --conf-threshold) on the left and the ground
truth on the right, each under its title. The json is what COCOEvaluator writes during evaluation
(``coco_instances_results.json``: image_id, category_id in the dataset's ids, bbox XYWH, score).
"""
import argparse
import json
import os
import sys
from collections import defaultdict

import cv2
import numpy as np
import odedet  # noqa: F401,I001  (first: registers odedet, quiets detectron2 v0.6 warnings)
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer

from odedet.data.datasets import add_dataset_arguments, register_from_args, validate_datasets
from odedet.data.image_io import read_image
from odedet.engine.demo import titled_panels

logger = setup_logger(name="odedet")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="coco_instances_results.json")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--dataset", required=True, help="registered dataset the json is about")
    parser.add_argument("--conf-threshold", default=0.5, type=float)
    add_dataset_arguments(parser)
    return parser


def load_predictions(path):
    """{image_id: [prediction dict]} from a COCO results json, with errors naming the file."""
    try:
        with open(path) as f:
            preds = json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"{path} not found; COCOEvaluator writes it under "
                         "OUTPUT_DIR/inference/<dataset>/coco_instances_results.json") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"{path} is not valid JSON ({e})") from None
    if not isinstance(preds, list) or any(
            not {"image_id", "category_id", "bbox", "score"} <= set(p) for p in preds):
        raise SystemExit(f"{path}: expected a list of {{image_id, category_id, bbox, score}}")
    by_image = defaultdict(list)
    for p in preds:
        by_image[p["image_id"]].append(p)
    return by_image


def to_instances(preds, image_size, id_map, threshold):
    """Instances (XYXY boxes, contiguous classes) of the predictions scoring >= threshold."""
    preds = [p for p in preds if p["score"] >= threshold]
    inst = Instances(image_size)
    inst.scores = np.asarray([p["score"] for p in preds], dtype=np.float32)
    boxes = np.asarray([p["bbox"] for p in preds], dtype=np.float32).reshape(-1, 4)
    inst.pred_boxes = Boxes(BoxMode.convert(boxes, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS))
    inst.pred_classes = np.asarray([id_map(p["category_id"]) for p in preds], dtype=np.int64)
    return inst


def main(argv=None):
    args = build_parser().parse_args(argv)
    register_from_args(args)
    validate_datasets([args.dataset])
    by_image = load_predictions(args.input)
    dicts = DatasetCatalog.get(args.dataset)  # also sets a COCO-json dataset's id mapping
    meta = MetadataCatalog.get(args.dataset)
    mapping = getattr(meta, "thing_dataset_id_to_contiguous_id", None)
    if mapping is None:
        raise SystemExit(f"dataset {args.dataset!r} has no COCO category id mapping "
                         "(thing_dataset_id_to_contiguous_id); it is not a COCO-json dataset")
    os.makedirs(args.output, exist_ok=True)
    for dic in dicts:
        img = read_image(dic["file_name"], "RGB", dataset_name=args.dataset)
        inst = to_instances(by_image.get(dic["image_id"], []), img.shape[:2], mapping.__getitem__,
                            args.conf_threshold)
        pred = Visualizer(img, meta).draw_instance_predictions(inst).get_image()
        gt = Visualizer(img, meta).draw_dataset_dict(dic).get_image()
        path = os.path.join(args.output, os.path.basename(dic["file_name"]))
        both = titled_panels([pred, gt], [f"prediction (score >= {args.conf_threshold:g})",
                                          "ground truth"])
        cv2.imwrite(path, np.ascontiguousarray(both[:, :, ::-1]))
    logger.info(f"wrote {len(dicts)} image(s) to {args.output}")
    return len(dicts)


if __name__ == "__main__":
    main()
    sys.exit(0)

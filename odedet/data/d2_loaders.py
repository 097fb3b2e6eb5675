"""odedet's versions of two detectron2 v0.6 dataset loaders, installed in detectron2's modules on
``import odedet`` so every caller (builtin names, ``register_pascal_voc``, the train loader) uses
them:

* ``load_proposals_into_dataset`` (``DATASETS.PROPOSAL_FILES_*`` with ``MODEL.LOAD_PROPOSALS``):
  detectron2 reads the ``.pkl`` with ``pickle.load``, so a hostile proposal file runs code. Here
  it goes through :func:`odedet.data.safe_pickle.load_data_pickle` (allow-list: containers,
  numpy arrays, BoxMode), and missing keys / images name the file.
* ``load_voc_instances``: detectron2 reads ``ImageSets/Main/<split>.txt`` with ``np.loadtxt``,
  which returns a 0-d array for a one-image split (``iteration over a 0-d array``) and warns on
  an empty one, so a tiny custom VOC-layout dataset cannot load. Here the split file is read
  line by line (any size), and each object keeps its ``difficult`` flag (0/1) so that P/R/F1 can
  treat difficult objects as VOC AP does. Everything else is detectron2's code.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import numpy as np
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager

from .safe_pickle import load_data_pickle
from .validation import DatasetError


def load_proposals_into_dataset(dataset_dicts, proposal_file):
    """detectron2's ``load_proposals_into_dataset`` (v0.6), reading the file without running code."""
    import logging

    logging.getLogger("detectron2.data.build").info(f"Loading proposals from: {proposal_file}")
    proposals = load_data_pickle(proposal_file)
    if not isinstance(proposals, dict):
        raise DatasetError(f"proposal file {proposal_file} holds a {type(proposals).__name__}, "
                           f"not a dict with 'ids', 'boxes', 'objectness_logits'")
    rename_keys = {"indexes": "ids", "scores": "objectness_logits"}  # D1 proposal files
    for key in rename_keys:
        if key in proposals:
            proposals[rename_keys[key]] = proposals.pop(key)
    missing = [k for k in ("ids", "boxes", "objectness_logits") if k not in proposals]
    if missing:
        raise DatasetError(f"proposal file {proposal_file} lacks the key(s) {missing}")
    img_ids = {str(record["image_id"]) for record in dataset_dicts}
    id_to_index = {str(i): k for k, i in enumerate(proposals["ids"]) if str(i) in img_ids}
    absent = sorted(img_ids - set(id_to_index))
    if absent:
        raise DatasetError(f"proposal file {proposal_file} has no proposals for image id(s) "
                           f"{absent[:5]}")
    bbox_mode = BoxMode(proposals["bbox_mode"]) if "bbox_mode" in proposals else BoxMode.XYXY_ABS
    for record in dataset_dicts:
        i = id_to_index[str(record["image_id"])]
        boxes = np.asarray(proposals["boxes"][i])
        logits = np.asarray(proposals["objectness_logits"][i])
        inds = logits.argsort()[::-1]
        record["proposal_boxes"] = boxes[inds]
        record["proposal_objectness_logits"] = logits[inds]
        record["proposal_bbox_mode"] = bbox_mode
    return dataset_dicts


def read_voc_split(split_file: str) -> list[str]:
    """Image ids of a VOC ``ImageSets/Main/<split>.txt``, one per line (any number, even 1)."""
    with PathManager.open(split_file) as f:
        return [line.split()[0] for line in f if line.strip()]


def load_voc_instances(dirname: str, split: str, class_names):
    """detectron2's ``load_voc_instances`` (v0.6) for splits of any size, keeping ``difficult``."""
    fileids = read_voc_split(os.path.join(dirname, "ImageSets", "Main", split + ".txt"))
    annotation_dirname = PathManager.get_local_path(os.path.join(dirname, "Annotations/"))
    dicts = []
    for fileid in fileids:
        anno_file = os.path.join(annotation_dirname, fileid + ".xml")
        jpeg_file = os.path.join(dirname, "JPEGImages", fileid + ".jpg")
        with PathManager.open(anno_file) as f:
            tree = ET.parse(f)
        r = {
            "file_name": jpeg_file,
            "image_id": fileid,
            "height": int(tree.findall("./size/height")[0].text),
            "width": int(tree.findall("./size/width")[0].text),
        }
        instances = []
        for obj in tree.findall("object"):
            cls = obj.find("name").text
            # detectron2 trains on "difficult" objects too; the flag is kept for evaluation.
            difficult = obj.findtext("difficult")
            bbox = obj.find("bndbox")
            bbox = [float(bbox.find(x).text) for x in ["xmin", "ymin", "xmax", "ymax"]]
            bbox[0] -= 1.0  # 1-based inclusive pixel indices -> coordinates, as detectron2
            bbox[1] -= 1.0
            instances.append({
                "category_id": list(class_names).index(cls), "bbox": bbox,
                "bbox_mode": BoxMode.XYXY_ABS,
                "difficult": int(difficult) if difficult and difficult.strip().isdigit() else 0,
            })
        r["annotations"] = instances
        dicts.append(r)
    return dicts


def install() -> None:
    """Put the two loaders into detectron2's modules (idempotent)."""
    import detectron2.data.build as d2_build
    import detectron2.data.datasets as d2_datasets
    import detectron2.data.datasets.pascal_voc as d2_voc

    d2_build.load_proposals_into_dataset = load_proposals_into_dataset
    d2_voc.load_voc_instances = load_voc_instances  # what register_pascal_voc's loaders call
    d2_datasets.load_voc_instances = load_voc_instances


install()

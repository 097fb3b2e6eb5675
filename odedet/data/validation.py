"""Check datasets on disk before training, with errors that name the file and what was expected.

detectron2's loaders fail late and vaguely on a bad dataset (a KeyError deep in a data-loader
worker, or an assertion minutes into training). These checks run first and say which file to
fix. They read the same files the loaders read; nothing is cached or rewritten.
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
import xml.etree.ElementTree as ET

LAYOUT_HINT = "see datasets/README.md for the expected layout"
_COCO_KEYS = ("images", "annotations", "categories")
_EXAMPLES = 3  # how many offending entries an error message quotes


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the path and the fix."""


def _examples(items) -> str:
    shown = ", ".join(str(x) for x in items[:_EXAMPLES])
    return shown + (", ..." if len(items) > _EXAMPLES else "")


def _require_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise DatasetError(f"{path} not found; expected {what} ({LAYOUT_HINT})")


def _require_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise DatasetError(f"{path} not found or not a directory; expected {what} ({LAYOUT_HINT})")


def load_coco_dict(json_file: str) -> dict:
    """The parsed COCO json, after checking it exists, is JSON and has the three top-level lists."""
    _require_file(json_file, "a COCO-format instances json")
    try:
        with open(json_file, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{json_file} is not valid JSON ({e}); expected a COCO instances json")
    if not isinstance(data, dict):
        raise DatasetError(f"{json_file}: top level is a {type(data).__name__}, expected an "
                           f"object with keys {list(_COCO_KEYS)}")
    missing = [k for k in _COCO_KEYS if not isinstance(data.get(k), list)]
    if missing:
        raise DatasetError(f"{json_file}: missing or non-list key(s) {missing}; a COCO instances "
                           f"json has lists {list(_COCO_KEYS)}")
    return data


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_coco_images(json_file: str, images: list) -> set:
    bad = [i for i, im in enumerate(images)
           if not isinstance(im, dict) or not {"id", "file_name", "height", "width"} <= set(im)]
    if bad:
        raise DatasetError(f"{json_file}: images at positions {_examples(bad)} lack one of "
                           "'id', 'file_name', 'height', 'width'")
    bad = [i for i, im in enumerate(images)
           if not (_is_int(im["id"]) and isinstance(im["file_name"], str) and im["file_name"]
                   and _is_int(im["height"]) and _is_int(im["width"])
                   and im["height"] > 0 and im["width"] > 0)]
    if bad:
        raise DatasetError(f"{json_file}: images at positions {_examples(bad)} need an integer "
                           "'id', a non-empty string 'file_name' and integer 'height', 'width' > 0")
    ids = [im["id"] for im in images]
    if len(set(ids)) != len(ids):
        dup = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise DatasetError(f"{json_file}: duplicate image ids {_examples(dup)}")
    return set(ids)


def _bad_box(bbox) -> bool:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return True
    if not all(_is_number(v) for v in bbox):
        return True
    return not (bbox[2] > 0 and bbox[3] > 0)


def _check_coco_annotations(json_file: str, anns: list, image_ids: set, cat_ids: set) -> None:
    problems = {"no integer 'id'/'image_id'/'category_id' or no 'bbox'": [],
                "unknown image_id": [], "unknown category_id": [],
                "zero/negative-size or malformed bbox": [],
                "malformed 'iscrowd' (0 or 1), 'area' (a number) or 'segmentation'": []}
    for k, a in enumerate(anns):
        ref = a.get("id", f"#{k}") if isinstance(a, dict) else f"#{k}"
        ref = ref if _is_int(ref) else f"#{k}"
        if not isinstance(a, dict) or not {"id", "image_id", "category_id", "bbox"} <= set(a) \
                or not all(_is_int(a[key]) for key in ("id", "image_id", "category_id")):
            problems["no integer 'id'/'image_id'/'category_id' or no 'bbox'"].append(ref)
        elif a["image_id"] not in image_ids:
            problems["unknown image_id"].append(f"{ref} (image_id {a['image_id']})")
        elif a["category_id"] not in cat_ids:
            problems["unknown category_id"].append(f"{ref} (category_id {a['category_id']})")
        elif _bad_box(a["bbox"]):
            problems["zero/negative-size or malformed bbox"].append(f"{ref} (bbox {a['bbox']})")
        elif (a.get("iscrowd", 0) not in (0, 1) or isinstance(a.get("iscrowd", 0), bool)
              or ("area" in a and not _is_number(a["area"]))
              or not isinstance(a.get("segmentation", []), (list, dict))
              or a.get("ignore", 0) != 0):
            problems["malformed 'iscrowd' (0 or 1), 'area' (a number) or 'segmentation'"].append(
                ref)
    for what, refs in problems.items():
        if refs:
            raise DatasetError(
                f"{json_file}: {len(refs)} annotation(s) with {what}, e.g. ids {_examples(refs)}. "
                f"Expected integer ids, image ids from 'images', category ids from 'categories' "
                f"({sorted(cat_ids)[:10]}...), bbox [x, y, width, height] with width, height > 0"
            )
    ids = [a["id"] for a in anns]
    if len(set(ids)) != len(ids):
        dup = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise DatasetError(f"{json_file}: duplicate annotation ids {_examples(dup)}")


def validate_coco_json(json_file: str, image_root: str | None = None,
                       check_image_files: bool = True) -> dict:
    """Check a COCO instances json (and its images under ``image_root``); returns the parsed
    dict. Raises :class:`DatasetError` naming the file and what was expected."""
    data = load_coco_dict(json_file)
    bad_cats = [c for c in data["categories"] if not isinstance(c, dict)
                or not _is_int(c.get("id")) or not isinstance(c.get("name"), str)]
    if bad_cats or not data["categories"]:
        raise DatasetError(f"{json_file}: 'categories' must be a non-empty list of "
                           f"{{'id': integer, 'name': string}} objects, got e.g. "
                           f"{_examples(bad_cats)}")
    cat_ids = {c["id"] for c in data["categories"]}
    if len(cat_ids) != len(data["categories"]):
        raise DatasetError(f"{json_file}: duplicate category ids in 'categories'")
    image_ids = _check_coco_images(json_file, data["images"])
    _check_coco_annotations(json_file, data["annotations"], image_ids, cat_ids)
    if image_root is not None:
        _require_dir(image_root, f"the image folder of {json_file}")
        if check_image_files:
            missing = [im["file_name"] for im in data["images"]
                       if not os.path.isfile(os.path.join(image_root, im["file_name"]))]
            if missing:
                raise DatasetError(f"{len(missing)} image(s) listed in {json_file} are missing "
                                   f"under {image_root}, e.g. {_examples(missing)}")
    return data


def _voc_box(xml_path: str, obj, class_names) -> None:
    name = obj.findtext("name")
    if name not in class_names:
        raise DatasetError(f"{xml_path}: object class {name!r} is not one of the dataset's "
                           f"classes {list(class_names)}")
    # detectron2's VOC evaluator reads all of these, as integers, for every object.
    box = obj.find("bndbox")
    try:
        x0, y0, x1, y1 = (int(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        int(obj.findtext("truncated")), int(obj.findtext("difficult"))
        if obj.find("pose") is None:
            raise ValueError
    except (AttributeError, TypeError, ValueError):
        raise DatasetError(f"{xml_path}: object {name!r} needs <pose>, integer <truncated> and "
                           "<difficult>, and <bndbox> with integer <xmin>, <ymin>, <xmax>, "
                           "<ymax> (1-based pixel indices)") from None
    # VOC boxes are 1-based inclusive pixel indices: xmin == xmax is a one-pixel-wide box.
    if x1 < x0 or y1 < y0:
        raise DatasetError(f"{xml_path}: object {name!r} has a negative-size box "
                           f"(xmin={x0:g}, ymin={y0:g}, xmax={x1:g}, ymax={y1:g})")


def _voc_annotation(xml_path: str, class_names) -> None:
    _require_file(xml_path, "a Pascal VOC annotation XML")
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as e:
        raise DatasetError(f"{xml_path} is not valid XML ({e}); expected a VOC annotation")
    try:
        w, h = int(tree.findtext("./size/width")), int(tree.findtext("./size/height"))
    except (TypeError, ValueError):
        raise DatasetError(f"{xml_path}: needs <size><width>/<height> integers") from None
    if w <= 0 or h <= 0:
        raise DatasetError(f"{xml_path}: image size {w}x{h} must be positive")
    for obj in tree.findall("object"):
        _voc_box(xml_path, obj, class_names)


def validate_voc(dirname: str, split: str, class_names, check_image_files: bool = True) -> int:
    """Check a Pascal VOC folder (Annotations/, ImageSets/Main/<split>.txt, JPEGImages/) as
    detectron2's ``load_voc_instances`` reads it; returns the number of images."""
    _require_dir(dirname, "a Pascal VOC folder with Annotations/, ImageSets/Main/, JPEGImages/")
    split_file = os.path.join(dirname, "ImageSets", "Main", split + ".txt")
    _require_file(split_file, f"the list of image ids of split {split!r}, one per line")
    try:
        with open(split_file, encoding="utf-8") as f:
            ids = [line.split()[0] for line in f if line.strip()]
    except UnicodeDecodeError as e:
        raise DatasetError(f"{split_file} is not a UTF-8 text file of image ids ({e})") from e
    if not ids:
        raise DatasetError(f"{split_file} lists no image ids")
    for fileid in ids:
        _voc_annotation(os.path.join(dirname, "Annotations", fileid + ".xml"), class_names)
    if check_image_files:
        missing = [i for i in ids
                   if not os.path.isfile(os.path.join(dirname, "JPEGImages", i + ".jpg"))]
        if missing:
            raise DatasetError(f"{len(missing)} image(s) of {split_file} are missing from "
                               f"{os.path.join(dirname, 'JPEGImages')}, e.g. "
                               f"{_examples([m + '.jpg' for m in missing])}")
    return len(ids)

"""Tiny on-disk datasets (COCO json, Pascal VOC XML) and a tiny Faster R-CNN config for the
engine tests. Everything is written in the real formats the loaders read."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable
CLASSES = ("cat", "dog")  # both are Pascal VOC class names, so the VOC fixture is valid VOC
COLORS = ((40, 40, 230), (230, 120, 30))  # BGR per class


def _draw(rng, size, n_objects):
    """A noisy image with ``n_objects`` filled rectangles; returns (image, [(xyxy, class)])."""
    img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    objs = []
    for _ in range(n_objects):
        cls = int(rng.integers(0, len(CLASSES)))
        w, h = (int(v) for v in rng.integers(size // 4, size // 2, 2))
        x0, y0 = (int(v) for v in rng.integers(0, size - max(w, h), 2))
        img[y0:y0 + h, x0:x0 + w] = COLORS[cls]
        objs.append(((x0, y0, x0 + w, y0 + h), cls))
    return img, objs


def write_coco(root, n_images=6, size=64, seed=0, empty_last=True):
    """COCO instances json + JPEG folder under ``root``; returns (json_file, image_root).
    The last image has no objects (an image without instances)."""
    rng = np.random.default_rng(seed)
    image_root = os.path.join(root, "images")
    os.makedirs(image_root, exist_ok=True)
    images, anns = [], []
    for i in range(n_images):
        n_obj = 0 if (empty_last and i == n_images - 1) else 1 + i % 2
        img, objs = _draw(rng, size, n_obj)
        name = f"{i:04d}.jpg"
        cv2.imwrite(os.path.join(image_root, name), img)
        images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
        for (x0, y0, x1, y1), cls in objs:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cls + 1,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "iscrowd": 0})
    cats = [{"id": c + 1, "name": n} for c, n in enumerate(CLASSES)]
    json_file = os.path.join(root, "instances.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    return json_file, image_root


def write_voc(root, year=2007, split="test", n_images=4, size=64, seed=1):
    """``root/VOC<year>/{Annotations,ImageSets/Main,JPEGImages}``; returns the VOC folder."""
    rng = np.random.default_rng(seed)
    voc = os.path.join(root, f"VOC{year}")
    for sub in ("Annotations", os.path.join("ImageSets", "Main"), "JPEGImages"):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    ids = [f"{i:06d}" for i in range(n_images)]
    for i, fileid in enumerate(ids):
        img, objs = _draw(rng, size, 1 + i % 2)
        cv2.imwrite(os.path.join(voc, "JPEGImages", fileid + ".jpg"), img)
        xml_objs = "".join(
            f"<object><name>{CLASSES[c]}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>0</difficult><bndbox>"
            f"<xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
            "</bndbox></object>"
            for (x0, y0, x1, y1), c in objs
        )
        with open(os.path.join(voc, "Annotations", fileid + ".xml"), "w") as f:
            f.write(f"<annotation><filename>{fileid}.jpg</filename><size><width>{size}</width>"
                    f"<height>{size}</height><depth>3</depth></size>{xml_objs}</annotation>")
    with open(os.path.join(voc, "ImageSets", "Main", split + ".txt"), "w") as f:
        f.write("\n".join(ids) + "\n")
    return voc


def tiny_cfg(output_dir, ode=True, num_classes=len(CLASSES)):
    """A Faster R-CNN FPN small enough to train a few iterations at 64 px in seconds: the ODE
    ResNet-18-style backbone (one ODE block per stage) or detectron2's ResNet-18, GN."""
    import odedet

    cfg = odedet.get_odedet_cfg()
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
        "MODEL.BACKBONE.NAME",
        "build_ode_resnet_fpn_backbone" if ode else "build_resnet_fpn_backbone",
        "MODEL.BACKBONE.FREEZE_AT", 0,
        "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 32,
        "MODEL.RESNETS.NORM", "GN", "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
        "MODEL.ODE.METHOD_TRAIN", "euler", "MODEL.ODE.STEP_SIZE_TRAIN", 0.5,
        "MODEL.ODE.METHOD_TEST", "euler", "MODEL.ODE.STEP_SIZE_TEST", 0.5,
        "MODEL.FPN.IN_FEATURES", ["res2", "res3", "res4", "res5"], "MODEL.FPN.OUT_CHANNELS", 32,
        "MODEL.FPN.NORM", "GN",
        "MODEL.ANCHOR_GENERATOR.SIZES", [[8], [16], [32], [64], [128]],
        "MODEL.RPN.IN_FEATURES", ["p2", "p3", "p4", "p5", "p6"],
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 200, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 50,
        "MODEL.RPN.PRE_NMS_TOPK_TEST", 100, "MODEL.RPN.POST_NMS_TOPK_TEST", 20,
        "MODEL.ROI_HEADS.NAME", "StandardROIHeads",
        "MODEL.ROI_HEADS.IN_FEATURES", ["p2", "p3", "p4", "p5"],
        "MODEL.ROI_HEADS.NUM_CLASSES", num_classes, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
        "MODEL.ROI_BOX_HEAD.NAME", "FastRCNNConvFCHead", "MODEL.ROI_BOX_HEAD.NUM_FC", 1,
        "MODEL.ROI_BOX_HEAD.FC_DIM", 32, "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 4,
        "INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.MAX_SIZE_TRAIN", 64,
        "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 64,
        "DATALOADER.NUM_WORKERS", 0, "DATALOADER.ASPECT_RATIO_GROUPING", False,
        "SOLVER.IMS_PER_BATCH", 2, "SOLVER.BASE_LR", 0.005, "SOLVER.STEPS", [],
        "SOLVER.WARMUP_ITERS", 0, "SOLVER.MAX_ITER", 4, "SOLVER.CHECKPOINT_PERIOD", 2,
        "TEST.EVAL_PERIOD", 0, "VIS_PERIOD", 0, "SEED", 0,
        "OUTPUT_DIR", str(output_dir),
    ])
    return cfg


def write_cfg(path, cfg):
    with open(path, "w") as f:
        f.write(cfg.dump())
    return str(path)


def load_tool(name):
    """Import tools/<name>.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"odedet_tool_{name}",
                                                  os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(script, *args, env=None, timeout=300):
    """Run ``tools/<script>`` in a fresh interpreter; returns the CompletedProcess (check=False)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([PYTHON, os.path.join(REPO, "tools", script), *map(str, args)],
                          cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)

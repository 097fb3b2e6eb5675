"""Named detectors of the benchmarks: detectron2's ResNet baselines and odedet's ODE-Nets.

``ODE-FPN``/``ODE-C4`` (ODE-ResNet-50) and ``R-50``/``R-101`` ``-FPN``/``-C4`` (detectron2's
ResNets) are this repository's from-scratch COCO configs. Any name can be pointed at another
config file (``--model-config NAME=path.yaml``). Weights are never downloaded: MODEL.WEIGHTS is
cleared, the figures are about cost, not accuracy.
"""
from __future__ import annotations

import os

import torch

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Repository configs (same from-scratch GroupNorm recipe for every model, so costs compare like
# for like); the first existing file wins, detectron2's model-zoo config ("zoo:") is the fallback.
DETECTOR_CONFIGS = {
    "ODE-FPN": ["configs/odenet_faster_rcnn.yaml"],
    "ODE-C4": ["configs/COCO-Detection/ode_faster_rcnn_R_50_C4_scratch.yaml"],
    "R-50-FPN": ["configs/COCO-Detection/faster_rcnn_R_50_FPN_scratch.yaml",
                 "zoo:COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"],
    "R-101-FPN": ["configs/COCO-Detection/faster_rcnn_R_101_FPN_scratch.yaml",
                  "zoo:COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml"],
    "R-50-C4": ["configs/COCO-Detection/faster_rcnn_R_50_C4_scratch.yaml",
                "zoo:COCO-Detection/faster_rcnn_R_50_C4_1x.yaml"],
    "R-101-C4": ["configs/COCO-Detection/faster_rcnn_R_101_C4_scratch.yaml",
                 "zoo:COCO-Detection/faster_rcnn_R_101_C4_3x.yaml"],
}
KNOWN_DETECTORS = tuple(DETECTOR_CONFIGS)


def _resolve(rel: str) -> str:
    if rel.startswith("zoo:"):
        import importlib.util

        # find_spec, not import: detectron2 main's model_zoo imports pkg_resources (gone from
        # setuptools >= 81); only the folder of its configs is needed here.
        zoo = importlib.util.find_spec("detectron2.model_zoo").submodule_search_locations[0]
        return os.path.join(zoo, "configs", rel[4:])
    return os.path.join(_REPO, rel)


def detector_config_path(name: str, config: str = "") -> str:
    """The config file of detector ``name`` (``config`` overrides); errors list the choices."""
    if config:
        if not os.path.isfile(config):
            raise FileNotFoundError(f"config file for {name!r} not found: {config}")
        return config
    if name in DETECTOR_CONFIGS:
        for rel in DETECTOR_CONFIGS[name]:
            if os.path.isfile(_resolve(rel)):
                return _resolve(rel)
        raise FileNotFoundError(
            f"no config for {name!r}: looked for {DETECTOR_CONFIGS[name]} under {_REPO}; pass "
            f"--model-config {name}=path/to/config.yaml"
        )
    raise KeyError(f"unknown detector {name!r}: use one of {KNOWN_DETECTORS} or --model-config")


def detector_cfg(name: str, *, device: str = "cpu", config: str = "", opts=()):
    """A frozen odedet config for ``name`` with weights cleared and ``device`` set."""
    from odedet import get_odedet_cfg

    cfg = get_odedet_cfg()
    cfg.merge_from_file(detector_config_path(name, config))
    cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, *opts])
    cfg.freeze()
    return cfg


def build_detector(name: str, *, device: str = "cpu", config: str = "", opts=()):
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    return build_model(detector_cfg(name, device=device, config=config, opts=opts))


def synthetic_detection_batch(size, *, batch: int = 1, device: str = "cpu") -> list[dict]:
    """detectron2 model inputs: ``batch`` random images with 3 boxes each; ``size`` is the side
    of a square image or an (height, width) pair (e.g. (800, 1333), detectron2's training size)."""
    from detectron2.structures import Boxes, Instances

    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(batch):
        image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8).float()
        inst = Instances((h, w))
        xy = torch.rand(3, 2, generator=g) * 0.5
        wh = torch.rand(3, 2, generator=g) * 0.4 + 0.05
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1) * scale)
        inst.gt_classes = torch.randint(0, 3, (3,), generator=g)
        out.append({"image": image.to(device), "instances": inst.to(device),
                    "height": h, "width": w})
    return out

"""Print which detectron2 build is active (compiled or pure-PyTorch ops) and the stack's versions.

Run as ``python -m odedet.env`` (or ``bash tools/run.sh env``).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import sys


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def detectron2_build() -> str:
    """"compiled" (detectron2._C importable), "pure-pytorch" (odedet's build), or a reason."""
    if importlib.util.find_spec("detectron2") is None:
        return "not installed"
    try:
        import detectron2._C  # noqa: F401
    except ImportError:
        if importlib.util.find_spec("detectron2._pure_ops") is not None:
            return "pure-pytorch"
        return "no compiled ops and not odedet's build (reinstall with tools/setup_env.sh)"
    return "compiled"


def collect() -> list[tuple[str, str]]:
    import torch

    import odedet

    rows = [
        ("python", sys.version.split()[0]),
        ("platform", platform.platform()),
        ("odedet", odedet.__version__),
        ("detectron2", _version("detectron2")),
        ("detectron2 ops", detectron2_build()),
        ("torch", torch.__version__),
        ("torch threads", str(torch.get_num_threads())),
        ("CUDA available", str(torch.cuda.is_available())),
    ]
    if torch.cuda.is_available():
        rows.append(("GPU", torch.cuda.get_device_name(0)))
    for dist in (
        "torchvision", "torchdiffeq", "fvcore", "iopath", "pycocotools", "numpy", "Pillow",
        "opencv-python-headless", "tensorboard",
    ):
        rows.append((dist, _version(dist)))
    return rows


def main() -> None:
    rows = collect()
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()

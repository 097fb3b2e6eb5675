"""odedet: Neural-ODE backbones for Detectron2 (detection, depth, classification).

Install through ``bash tools/setup_env.sh`` (see README.md): it builds the pinned environment,
including detectron2, which is not on PyPI under its own name.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "odedet" / "__init__.py").read_text(), re.M
).group(1)

setup(
    name="odedet",
    version=VERSION,
    description="ODE-ResNet backbones for Detectron2: detection, depth and classification",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["odedet", "odedet.*"]),
    # `odedet` lists the tools (tools/*.py, one line each) and runs one: `odedet train_net ...`
    entry_points={"console_scripts": ["odedet = odedet.__main__:main"]},
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "detectron2",
        "torchdiffeq>=0.2.3",
        "fvcore",
        "pycocotools",
        "numpy>=2",
        "Pillow>=10",
        "matplotlib",
        "tqdm",
        "h5py",
    ],
)

#!/usr/bin/env python
"""Build and install detectron2 v0.6 as a pure-PyTorch distribution named ``detectron2``.

detectron2 is not on PyPI under its own name and its official install needs GitHub. PyPI's
``pb1-detectron2==0.6`` sdist carries detectron2 v0.6's Python sources (byte-identical to the
official tag, minus the C++/CUDA sources). This script:

1. leaves the environment alone if a detectron2 with its compiled ``_C`` is already importable
   (a user's own source build), or if this build at this version is already installed;
2. downloads the sdist with pip (PyPI only) and checks its sha256 against the pinned value;
3. copies the ``detectron2/`` tree, applies the patches below (each must match exactly once,
   so a changed sdist fails loudly instead of half-patching), and adds ``_pure_ops.py``;
4. builds a wheel named ``detectron2`` (cached under ``--cache``) and pip-installs it.

Run it with the interpreter of the environment to install into:
``.venv/bin/python tools/detectron2_pure/build.py``. See ``../shared/DETECTRON2.md`` for the
checked facts behind each patch.
"""
import argparse
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from pathlib import Path

SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_FILE = f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
# PEP 440 local version: v0.6 sources, odedet's pure-PyTorch patch set number 1. Bump it when
# PATCHES or _pure_ops.py change: an environment holding this version is otherwise left as is.
BUILD_VERSION = "0.6+purepytorch.2"

HERE = Path(__file__).resolve().parent

# detectron2 v0.6 install_requires, minus black (a formatter pinned to a 2021 beta), future and
# pydot (caffe2 export only) and dataclasses (py<3.7); iopath's upper bound is lifted to 0.1.10,
# the version fvcore 0.1.5.post20221221 resolves to (checked: works).
INSTALL_REQUIRES = [
    "Pillow>=10",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.11",
    "omegaconf>=2.1",
    "hydra-core>=1.1",
]

# detectron2.projects.<name> -> its folder under projects/ (the official setup.py's package_dir).
PROJECTS = {
    "point_rend": "PointRend/point_rend",
    "deeplab": "DeepLab/deeplab",
    "panoptic_deeplab": "Panoptic-DeepLab/panoptic_deeplab",
}


def _block(indent: int, text: str) -> str:
    """Dedent a replacement block, then indent it to the patched site's level."""
    return textwrap.indent(textwrap.dedent(text), " " * indent)


_LOAD_C = "from detectron2._pure_ops import load_compiled_ops\n\n_C = load_compiled_ops()"

# (file under detectron2/, exact old text, new text). Each old text must occur exactly once.
PATCHES = [
    # 1. the missing compiled extension: module-level imports go through load_compiled_ops().
    ("layers/deform_conv.py", "from detectron2 import _C\n", _LOAD_C + "\n"),
    ("layers/roi_align_rotated.py", "from detectron2 import _C\n", _LOAD_C + "\n"),
    ("layers/rotated_boxes.py", "from detectron2 import _C\n", _LOAD_C + "\n"),
    ("evaluation/fast_eval_api.py", "from detectron2 import _C\n", _LOAD_C + "\n"),
    # nms_rotated calls torch.ops.detectron2.nms_rotated, which importing _C registers; without
    # _C, load_compiled_ops() registers the pure-PyTorch op under the same name.
    (
        "layers/nms.py",
        "from torchvision.ops import nms  # BC-compat\n",
        "from torchvision.ops import nms  # BC-compat\n\n" + _LOAD_C + "\n",
    ),
    # deformable convolution: torchvision's op (autograd on CPU and CUDA) when _C is missing or
    # the input is on the CPU (v0.6's own CPU path had a forward but no backward).
    (
        "layers/deform_conv.py",
        "deform_conv = _DeformConv.apply\nmodulated_deform_conv = _ModulatedDeformConv.apply\n",
        textwrap.dedent(
            """\
            def deform_conv(input, offset, weight, *args):
                if not _C or not input.is_cuda:
                    from detectron2 import _pure_ops

                    return _pure_ops.deform_conv(input, offset, weight, *args)
                return _DeformConv.apply(input, offset, weight, *args)


            def modulated_deform_conv(input, offset, mask, weight, *args):
                if not _C or not input.is_cuda:
                    from detectron2 import _pure_ops

                    return _pure_ops.modulated_deform_conv(input, offset, mask, weight, *args)
                return _ModulatedDeformConv.apply(input, offset, mask, weight, *args)
            """
        ),
    ),
    # COCOeval_opt used directly without _C: pycocotools' own evaluate()/accumulate() (same
    # results, Python speed) instead of an error on the first call.
    (
        "evaluation/fast_eval_api.py",
        "        :return: None\n        \"\"\"\n",
        "        :return: None\n        \"\"\"\n        if not _C:\n            return super().evaluate()\n",
    ),
    (
        "evaluation/fast_eval_api.py",
        "        support changing parameter settings from those used by self.evaluate()\n        \"\"\"\n",
        "        support changing parameter settings from those used by self.evaluate()\n        \"\"\"\n"
        "        if not _C:\n            return super().accumulate()\n",
    ),
    # fast COCO evaluation falls back to pycocotools' COCOeval by itself.
    (
        "evaluation/coco_evaluation.py",
        "        self._use_fast_impl = use_fast_impl\n",
        _block(
            8,
            """\
                    from detectron2._pure_ops import compiled_ops_available

                    if use_fast_impl and not compiled_ops_available():
                        self._logger.info(
                            "detectron2._C is not built: using pycocotools' COCOeval instead of "
                            "the fast COCOeval_opt."
                        )
                        use_fast_impl = False
                    self._use_fast_impl = use_fast_impl
            """
        ),
    ),
    (
        "evaluation/coco_evaluation.py",
        "    coco_eval = (COCOeval_opt if use_fast_impl else COCOeval)(coco_gt, coco_dt, iou_type)\n",
        _block(
            4,
            """\
                from detectron2._pure_ops import compiled_ops_available

                use_fast_impl = use_fast_impl and compiled_ops_available()
                coco_eval = (COCOeval_opt if use_fast_impl else COCOeval)(coco_gt, coco_dt, iou_type)
            """
        ),
    ),
    # caffe2 is gone from torch: detectron2.export imports its caffe2 API only when caffe2 is
    # importable (as detectron2 main does), so TracingAdapter / scripting_with_instances work.
    (
        "export/__init__.py",
        "from .api import *\n",
        "try:\n    from caffe2.proto import caffe2_pb2 as _tmp  # noqa: F401\nexcept ImportError:\n"
        "    pass  # caffe2 (removed from torch) is optional\nelse:\n    from .api import *\n",
    ),
    # Python >= 3.11: random.sample() no longer takes a set (MapDataset's retry after a failed
    # mapper call); detectron2 main's fix.
    (
        "data/common.py",
        "cur_idx = self._rng.sample(self._fallback_candidates, k=1)[0]",
        "cur_idx = self._rng.sample(list(self._fallback_candidates), k=1)[0]",
    ),
    # torch >= 2.0: built-in schedulers (StepLR, ...) derive from LRScheduler, no longer from
    # _LRScheduler, so the LRScheduler hook saved and resumed no scheduler state for them.
    (
        "engine/hooks.py",
        "    def state_dict(self):\n"
        "        if isinstance(self.scheduler, torch.optim.lr_scheduler._LRScheduler):\n",
        "    def state_dict(self):\n"
        "        if isinstance(self.scheduler, torch.optim.lr_scheduler.LRScheduler):\n",
    ),
    (
        "engine/hooks.py",
        "    def load_state_dict(self, state_dict):\n"
        "        if isinstance(self.scheduler, torch.optim.lr_scheduler._LRScheduler):\n",
        "    def load_state_dict(self, state_dict):\n"
        "        if isinstance(self.scheduler, torch.optim.lr_scheduler.LRScheduler):\n",
    ),
    # 2. Pillow >= 10 removed Image.LINEAR (it was an alias of BILINEAR).
    (
        "data/transforms/transform.py",
        "interp=Image.LINEAR, fill=0):",
        "interp=Image.BILINEAR, fill=0):",
    ),
    # 3. numpy >= 1.24 removed np.int / np.float / np.str.
    ("data/build.py", "dtype=np.int)", "dtype=int)"),
    ("data/datasets/pascal_voc.py", "dtype=np.str)", "dtype=str)"),
    ("evaluation/sem_seg_evaluation.py", "pred = np.array(output, dtype=np.int)", "pred = np.array(output, dtype=int)"),
    ("evaluation/sem_seg_evaluation.py", "gt = np.array(Image.open(f), dtype=np.int)", "gt = np.array(Image.open(f), dtype=int)"),
    (
        "evaluation/sem_seg_evaluation.py",
        "        acc = np.full(self._num_classes, np.nan, dtype=np.float)\n"
        "        iou = np.full(self._num_classes, np.nan, dtype=np.float)\n"
        "        tp = self._conf_matrix.diagonal()[:-1].astype(np.float)\n"
        "        pos_gt = np.sum(self._conf_matrix[:-1, :-1], axis=0).astype(np.float)\n",
        "        acc = np.full(self._num_classes, np.nan, dtype=float)\n"
        "        iou = np.full(self._num_classes, np.nan, dtype=float)\n"
        "        tp = self._conf_matrix.diagonal()[:-1].astype(float)\n"
        "        pos_gt = np.sum(self._conf_matrix[:-1, :-1], axis=0).astype(float)\n",
    ),
    (
        "evaluation/sem_seg_evaluation.py",
        "pos_pred = np.sum(self._conf_matrix[:-1, :-1], axis=1).astype(np.float)",
        "pos_pred = np.sum(self._conf_matrix[:-1, :-1], axis=1).astype(float)",
    ),
    # pkg_resources is deprecated and gone from current setuptools; importlib.resources is stdlib.
    ("model_zoo/model_zoo.py", "import pkg_resources\n", "import importlib.resources\n"),
    (
        "model_zoo/model_zoo.py",
        'cfg_file = pkg_resources.resource_filename(\n        "detectron2.model_zoo", '
        "os.path.join(\"configs\", config_path)\n    )",
        'cfg_file = str(\n        importlib.resources.files("detectron2.model_zoo").joinpath('
        '"configs", config_path)\n    )',
    ),
]

SETUP_PY = f'''\
from setuptools import find_packages, setup

setup(
    name="detectron2",
    version="{BUILD_VERSION}",
    description="detectron2 v0.6 Python sources with pure-PyTorch ops (built by odedet)",
    license="Apache-2.0",
    packages=find_packages(include=["detectron2", "detectron2.*"]),
    package_data={{"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]}},
    python_requires=">=3.8",
    install_requires={INSTALL_REQUIRES!r},
)
'''


class BuildError(SystemExit):
    def __init__(self, msg):
        super().__init__(f"[detectron2 build] ERROR: {msg}")


def log(msg):
    print(f"[detectron2 build] {msg}", flush=True)


def installed_state():
    """('compiled'|'pure'|'other'|None, version) of the detectron2 in this interpreter."""
    try:
        version = importlib.metadata.version("detectron2")
    except importlib.metadata.PackageNotFoundError:
        version = None
    probe = (
        "import importlib.util, sys\n"
        "spec = importlib.util.find_spec('detectron2')\n"
        "if spec is None: sys.exit(3)\n"
        "c = importlib.util.find_spec('detectron2._C')\n"
        "sys.exit(0 if c is not None else 4)\n"
    )
    rc = subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode
    if rc == 3:
        return None, version
    if rc == 0:
        return "compiled", version
    if version == BUILD_VERSION:
        return "pure", version
    return "other", version


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sdist(cache: Path) -> Path:
    sdist = cache / SDIST_FILE
    if not sdist.exists():
        log(f"downloading {SDIST_NAME}=={SDIST_VERSION} from PyPI")
        # Metadata preparation imports torch (already in this environment), hence no isolation.
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
            "--no-build-isolation", f"{SDIST_NAME}=={SDIST_VERSION}", "-d", str(cache),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not sdist.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise BuildError(
                f"could not download {SDIST_NAME}=={SDIST_VERSION} from PyPI (pip exit "
                f"{proc.returncode}). Check that PyPI is reachable, or place {SDIST_FILE} in "
                f"{cache} by hand.\n{tail}"
            )
    digest = sha256(sdist)
    if digest != SDIST_SHA256:
        bad = sdist.with_suffix(".rejected")
        sdist.replace(bad)
        raise BuildError(
            f"sha256 mismatch for {SDIST_FILE}: expected {SDIST_SHA256}, got {digest}. The file "
            f"was moved to {bad} and will not be used. Delete it and run the set-up again to "
            "re-download; if the mismatch persists the file on PyPI has changed and the pinned "
            "hash in tools/detectron2_pure/build.py must be reviewed by hand."
        )
    log(f"{SDIST_FILE}: sha256 verified")
    return sdist


def apply_patches(root: Path):
    for rel, old, new in PATCHES:
        path = root / "detectron2" / rel
        text = path.read_text()
        n = text.count(old)
        if n != 1:
            raise BuildError(
                f"patch for detectron2/{rel} expected its target text exactly once, found {n}: "
                f"{old[:80]!r}"
            )
        path.write_text(text.replace(old, new))
    shutil.copy(HERE / "_pure_ops.py", root / "detectron2" / "_pure_ops.py")
    log(f"applied {len(PATCHES)} patches")


def build_wheel(sdist: Path, cache: Path) -> Path:
    wheel_dir = cache / "wheels"
    wheels = sorted(wheel_dir.glob(f"detectron2-{BUILD_VERSION}-*.whl"))
    stamp = wheel_dir / "build-inputs.sha256"
    inputs = hashlib.sha256(
        (Path(__file__).read_bytes() + (HERE / "_pure_ops.py").read_bytes())
    ).hexdigest()
    if wheels and stamp.exists() and stamp.read_text().strip() == inputs:
        return wheels[-1]
    shutil.rmtree(wheel_dir, ignore_errors=True)
    wheel_dir.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with tarfile.open(sdist) as tar:
            prefixes = tuple(f"{SDIST_NAME}-{SDIST_VERSION}/{d}/" for d in ("detectron2", "projects"))
            members = [m for m in tar.getmembers() if m.name.startswith(prefixes)]
            tar.extractall(tmp, members=members, filter="data")
        root = tmp / f"{SDIST_NAME}-{SDIST_VERSION}"
        apply_patches(root)
        # detectron2.projects.{point_rend,deeplab,panoptic_deeplab} are packaged, as the official
        # setup.py does with package_dir (detectron2's own tests import point_rend).
        for pkg, src in PROJECTS.items():
            shutil.copytree(root / "projects" / src, root / "detectron2" / "projects" / pkg)
        (root / "setup.py").write_text(SETUP_PY)
        cmd = [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
            str(root), "-w", str(wheel_dir),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"building the wheel failed:\n{proc.stdout}\n{proc.stderr}")
    wheels = sorted(wheel_dir.glob(f"detectron2-{BUILD_VERSION}-*.whl"))
    if not wheels:
        raise BuildError(f"pip wheel succeeded but no wheel is in {wheel_dir}")
    stamp.write_text(inputs)
    log(f"built {wheels[-1].name}")
    return wheels[-1]


def pip(args, what):
    """Run pip quietly; on failure show the tail of its output in the error."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--quiet", *args], capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise BuildError(f"{what} failed (pip exit {proc.returncode}):\n{tail}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default=str(Path.cwd() / ".cache" / "detectron2"),
                   help="where the sdist and the built wheel are kept (default: ./.cache/detectron2)")
    p.add_argument("--force", action="store_true", help="rebuild and reinstall the pure build")
    args = p.parse_args(argv)

    state, version = installed_state()
    if state == "compiled":
        log(f"a compiled detectron2 ({version}) is installed: leaving it untouched")
        return 0
    if state == "pure" and not args.force:
        log(f"detectron2 {version} (pure-PyTorch ops) already installed")
        return 0
    if state == "other":
        log(f"replacing detectron2 {version} (no compiled _C) with {BUILD_VERSION}")

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    sdist = fetch_sdist(cache)
    wheel = build_wheel(sdist, cache)
    pip(["install", "--force-reinstall", "--no-deps", str(wheel)], f"pip install {wheel}")
    # Dependencies resolve against the environment's existing pins without touching them.
    pip(["install", *INSTALL_REQUIRES], "installing detectron2's dependencies")
    log(f"installed detectron2 {BUILD_VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

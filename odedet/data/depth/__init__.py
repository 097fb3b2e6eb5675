"""Depth datasets: synthetic scenes (embedded default), NYU Depth v2, KITTI, list files; the
depth mapper. Importing this package registers them (see builtin.py for names and layout)."""
from . import builtin  # noqa: F401  (registers the datasets)
from .builtin import register_depth_dataset, register_depth_list
from .formats import DepthDataError, read_depth_png, read_depth_sample, write_depth_png
from .loaders import load_depth_list, load_kitti_eigen, load_nyu_labeled
from .mapper import DepthDatasetMapper
from .scenes import Camera, render_scene, sample_scene
from .synthetic import ensure_scenes, generate_scenes

__all__ = [
    "register_depth_dataset", "register_depth_list", "DepthDataError", "read_depth_png",
    "read_depth_sample", "write_depth_png", "load_depth_list", "load_kitti_eigen",
    "load_nyu_labeled", "DepthDatasetMapper", "Camera", "render_scene", "sample_scene",
    "ensure_scenes", "generate_scenes",
]

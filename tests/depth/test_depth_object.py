"""Per-object depth on a constructed case with a known answer, and its drawing."""
import math

import numpy as np
import torch
from detectron2.structures import Boxes, Instances

from odedet.modeling.depth.object_depth import object_depths
from odedet.modeling.depth.visualize import draw_object_depths, save_depth_figure


def _scene():
    depth = torch.full((40, 60), 8.0)  # background wall at 8 m
    depth[10:30, 10:30] = 3.0  # object A (a square) at 3 m
    depth[12:14, 12:14] = 0.0  # holes (unknown depth) inside A
    yy, xx = torch.meshgrid(torch.arange(40), torch.arange(60), indexing="ij")
    disc = (yy - 20) ** 2 + (xx - 45) ** 2 <= 8**2
    depth[disc] = 5.0  # object B (a disc) at 5 m
    inst = Instances((40, 60))
    inst.pred_boxes = Boxes(torch.tensor([[10.0, 10, 30, 30], [37, 12, 53, 28], [0, 0, 4, 2]]))
    inst.scores = torch.tensor([0.93, 0.8, 0.5])
    inst.pred_classes = torch.tensor([0, 1, 0])
    return depth, inst, disc


def test_box_centre_median_ignores_background_and_holes():
    depth, inst, _ = _scene()
    depth[0:2, 0:4] = 0  # the third box covers only unknown depth
    d = object_depths(inst, depth)
    assert d[0].item() == 3.0
    # the disc's bounding box corners are wall (8 m), its central half is all disc
    assert d[1].item() == 5.0
    assert math.isnan(d[2].item())
    # the whole box (fraction 1) of the disc: more disc than wall, median still the disc
    assert object_depths(inst[1:2], depth, box_fraction=1.0)[0].item() == 5.0


def test_masks_take_precedence_over_boxes():
    depth, inst, disc = _scene()
    masks = torch.zeros(3, 40, 60, dtype=torch.bool)
    masks[1] = disc
    masks[0, 30:40, 0:10] = True  # mask of object 0 lies on the wall
    inst.pred_masks = masks
    d = object_depths(inst, depth)
    assert d[0].item() == 8.0 and d[1].item() == 5.0 and math.isnan(d[2].item())


def test_drawing_labels_class_score_and_depth(tmp_path):
    depth, inst, _ = _scene()
    rgb = np.zeros((40, 60, 3), np.uint8)
    image, d = draw_object_depths(rgb, inst[:2], depth)
    assert image.shape == (40, 60, 3) and image.any()  # boxes and labels drawn
    from odedet.modeling.depth.visualize import object_depth_labels

    assert object_depth_labels(inst[:2], d, ["chair", "ball"]) == [
        "chair 0.93 | 3.0 m", "ball 0.80 | 5.0 m"]
    path = save_depth_figure(str(tmp_path / "f.png"), rgb, depth.numpy(), depth.numpy())
    assert (tmp_path / "f.png").stat().st_size > 1000 and path.endswith("f.png")

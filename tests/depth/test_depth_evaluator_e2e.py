"""The depth evaluator end to end: a list-file dataset on disk, registered with its metadata,
evaluated through the Trainer's test path (mapper and evaluator chosen by the registries)."""
import numpy as np
import pytest
import torch
from torch import nn

from odedet import get_odedet_cfg
from odedet.data.depth import register_depth_list, write_depth_png
from odedet.engine import Trainer
from odedet.evaluation.build import build_evaluators
from odedet.evaluation.depth import DepthEvaluator


class _Constant(nn.Module):
    def forward(self, inputs):
        return [{"depth": torch.full((x["height"], x["width"]), 2.0)} for x in inputs]


@pytest.fixture()
def dataset(tmp_path, request):
    import cv2

    depths = [np.ones((6, 8), np.float32), np.ones((6, 8), np.float32)]
    depths[1][:, 4:] = 4.0
    depths[1][0, :] = 0.0  # unknown: ignored (one row of each half, counts stay equal)
    lines = []
    for i, d in enumerate(depths):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((6, 8, 3), np.uint8))
        write_depth_png(str(tmp_path / f"{i}_d.png"), d, 1000.0)
        lines.append(f"{i}.png {i}_d.png 1000\n")
    (tmp_path / "list.txt").write_text("".join(lines))
    name = f"depth_e2e_{request.node.name}"
    register_depth_list(name, str(tmp_path / "list.txt"), max_depth=10.0)
    cfg = get_odedet_cfg()
    cfg.MODEL.META_ARCHITECTURE = "DepthEstimator"
    cfg.DATASETS.TEST = (name,)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 3, 4  # model sees 3x4; GT stays 6x8
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    return cfg, name


def test_trainer_test_path_gives_hand_computed_metrics(dataset):
    cfg, name = dataset
    evaluators = build_evaluators(cfg, name)
    assert isinstance(evaluators._evaluators[0], DepthEvaluator)
    res = Trainer.test(cfg, _Constant())["depth"]
    # image 0: |2-1|/1 = 1; image 1: (1 + |2-4|/4) / 2 = 0.75; averaged per image
    assert res["AbsRel"] == pytest.approx((1.0 + 0.75) / 2)
    assert res["RMSE"] == pytest.approx((1.0 + np.sqrt((1 + 4) / 2)) / 2)
    assert res["delta1"] == 0 and res["delta3"] == 0 and res["num_images"] == 2


def test_median_scaling_from_config(dataset):
    cfg, name = dataset
    cfg.TEST.DEPTH.MEDIAN_SCALING = True
    res = Trainer.test(cfg, _Constant())["depth"]
    # image 0 scales to exact; image 1: median 2.5 -> (1.5 / 1 + 1.5 / 4) / 2
    assert res["AbsRel"] == pytest.approx((0.0 + 0.9375) / 2)

"""MODEL.ODE training options in a detectron2 Faster R-CNN: regulariser losses in the loss dict and
metrics.json, solver/end-time draws logged, and the defaults bit-identical to a plain build."""
import json
import os

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from odedet.data.datasets import register_coco
from odedet.engine import Trainer
from odedet.ode import iter_ode_blocks

from _engine_fixtures import tiny_cfg, write_coco

OPTIONS = [
    "MODEL.ODE.ADJOINT", False, "MODEL.ODE.TRAIN_SOLVERS", ["euler:1", "midpoint:1", "rk4:1"],
    "MODEL.ODE.T_END_SPREAD", 0.25, "MODEL.ODE.KINETIC_WEIGHT", 0.01,
    "MODEL.ODE.JACOBIAN_WEIGHT", 0.01,
]
STAGES = {0: 1, 1: 2, 2: 4}  # f-evaluations per step of euler / midpoint / rk4


def _batch(size=64):
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(0)
    inst = Instances((size, size))
    inst.gt_boxes = Boxes(torch.tensor([[8.0, 8.0, 40.0, 40.0]]))
    inst.gt_classes = torch.tensor([1])
    image = torch.randint(0, 256, (3, size, size), generator=g).float()
    return [{"image": image, "instances": inst, "height": size, "width": size}]


def test_defaults_train_exactly_as_a_plain_detectron2_build(tmp_path, one_torch_thread):
    """Default keys: Trainer.build_model adds no hook, and losses and gradients are the same
    floats as detectron2's build_model of the same config."""
    cfg = tiny_cfg(tmp_path)
    results = []
    for build in (build_model, Trainer.build_model):
        torch.manual_seed(0)
        model = build(cfg)
        model.train()
        with EventStorage():
            losses = model(_batch())
        sum(losses.values()).backward()
        results.append((losses, [p.grad.clone() for p in model.parameters()], model))
    (plain, g_plain, _), (ours, g_ours, model) = results
    assert not model._forward_hooks
    assert set(ours) == set(plain) and all(torch.equal(ours[k], plain[k]) for k in plain)
    assert all(torch.equal(a, b) for a, b in zip(g_plain, g_ours))
    assert all(b.regulariser_names == () for _, b in iter_ode_blocks(model))


def test_regularised_training_step_has_the_losses_and_gradients(tmp_path, one_torch_thread):
    cfg = tiny_cfg(tmp_path)
    cfg.merge_from_list(OPTIONS)
    model = Trainer.build_model(cfg)
    model.train()
    with EventStorage():
        losses = model(_batch())
    assert {"loss_ode_kinetic", "loss_ode_jacobian", "loss_cls", "loss_rpn_cls"} <= set(losses)
    assert all(torch.isfinite(v) and v > 0 for k, v in losses.items() if k.startswith("loss_ode"))
    losses["loss_ode_kinetic"].backward()
    # the kinetic term reaches every ODE block's dynamics
    for name, block in iter_ode_blocks(model):
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in block.dynamics.parameters()), name


@pytest.mark.parametrize("adjoint", [False, True])
def test_trainer_logs_regulariser_losses_and_draws(tmp_path, adjoint, one_torch_thread):
    json_file, image_root = write_coco(str(tmp_path / "data"), n_images=2)
    name = f"ode_training_tiny_{adjoint}"
    register_coco(name, json_file, image_root)
    cfg = tiny_cfg(tmp_path / "out")
    cfg.merge_from_list(OPTIONS + ["MODEL.ODE.ADJOINT", adjoint, "SOLVER.MAX_ITER", 3,
                                   "SOLVER.CHECKPOINT_PERIOD", 100, "DATASETS.TRAIN", (name,),
                                   "DATASETS.TEST", ()])
    trainer = Trainer(cfg)
    trainer.train()
    with open(os.path.join(cfg.OUTPUT_DIR, "metrics.json")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    # metrics.json holds the last iteration's values (writer period 20), like every loss
    last = max((r for r in rows if "total_loss" in r), key=lambda r: r["iteration"])
    assert last["iteration"] == 2 and np.isfinite(last["total_loss"])
    assert last["loss_ode_kinetic"] > 0 and last["loss_ode_jacobian"] > 0
    assert {"ode/train_solver", "ode/train_t_end", "nfe_forward"} <= set(last)
    # every iteration's values are in the trainer's EventStorage
    hist = {k: [v for v, _ in trainer.storage.history(k).values()] for k in (
        "loss_ode_kinetic", "loss_ode_jacobian", "ode/train_solver", "ode/train_t_end",
        "nfe_forward", "nfe_backward")}
    assert all(len(v) == 3 for v in hist.values())
    assert all(v > 0 for v in hist["loss_ode_kinetic"] + hist["loss_ode_jacobian"])
    # 4 ODE blocks, one step of the drawn solver each: the NFE tell which one was used
    assert hist["nfe_forward"] == [4 * STAGES[int(i)] for i in hist["ode/train_solver"]]
    assert all(0.75 <= t <= 1.25 for t in hist["ode/train_t_end"])
    assert all((b > 0) == adjoint for b in hist["nfe_backward"])
    # the draws are those of (SEED, iteration), whatever the run
    from odedet.ode.training import ODETrainingOptions

    opts = ODETrainingOptions.from_cfg(cfg)
    assert hist["ode/train_solver"] == [opts.draw(i, 4)[0][0] for i in range(3)]
    assert all(b.train_draw is None for _, b in iter_ode_blocks(trainer.model))


def test_hook_logs_per_block_draws_and_is_idle_by_default():
    """ODETrainingHook on a bare model: per-block solver indices under TRAIN_SAMPLE_PER block,
    nothing at all (no scalars, no draws) with the default keys."""
    import types

    from torch import nn

    from odedet import get_odedet_cfg
    from odedet.engine.hooks import ODETrainingHook
    from odedet.ode import ODEBlock, SolverOptions
    from odedet.ode.training import ODETrainingOptions

    class Zero(nn.Module):
        def forward(self, t, h):
            return 0 * h

    opts = SolverOptions("euler", step_size=1.0, adjoint=False)
    model = nn.Sequential(ODEBlock(Zero(), train_solver=opts), ODEBlock(Zero(), train_solver=opts))
    for keys, expect in (
        ({}, set()),
        ({"TRAIN_SOLVERS": ["euler:1", "rk4:2"], "TRAIN_SAMPLE_PER": "block"},
         {"ode/train_solver/0", "ode/train_solver/1", "ode/train_t_end"}),
    ):
        cfg = get_odedet_cfg()
        for k, v in keys.items():
            cfg.MODEL.ODE[k] = v
        hook = ODETrainingHook(ODETrainingOptions.from_cfg(cfg))
        with EventStorage() as storage:
            hook.trainer = types.SimpleNamespace(model=model, iter=4, storage=storage)
            hook.before_train()
            hook.before_step()
            assert set(storage.latest()) == expect
            if expect:
                draws = hook.options.draw(4, 2)
                assert [storage.latest()[f"ode/train_solver/{i}"][0] for i in "01"] == [
                    d[0] for d in draws]
                assert all(b.train_draw is not None for b in model)
            hook.after_train()
        assert all(b.train_draw is None for b in model)

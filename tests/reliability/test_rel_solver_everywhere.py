"""Solver errors wherever the solve runs (the adjoint's backward solve, evaluation inside and
outside training) name the iteration, the block and the setting; training NFE exclude
evaluation; BatchNorm running statistics ignore the adjoint's re-evaluations; the fixed-grid
adjoint runs under bfloat16 autocast; STEP_SIZE_* no longer sets an adaptive first step."""
import json
import os
import sys
import uuid

import pytest
import torch
from detectron2.engine import SimpleTrainer
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "detection"))
from _engine_fixtures import load_tool, tiny_cfg, write_cfg, write_coco  # noqa: E402

import odedet  # noqa: E402
from odedet.engine.guards import IterationContext  # noqa: E402
from odedet.ode import (  # noqa: E402
    ConvODEFunc, ODEBlock, ODESolverError, SolverOptions, solver_options_from_cfg,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _GradScale(torch.autograd.Function):
    """Identity forward; backward multiplies by ``k``: dynamics whose forward solve is easy and
    whose adjoint (backward) solve is stiff (k large), NaN (k nan) or underflows (k huge)."""

    @staticmethod
    def forward(ctx, x, k):
        ctx.k = k
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.k, None


class _BackwardTrouble(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(-0.1))
        self.k = k

    def forward(self, t, h):
        return self.w * _GradScale.apply(h, self.k)


class _Model(nn.Module):
    def __init__(self, k, solver):
        super().__init__()
        self.block = ODEBlock(_BackwardTrouble(k), train_solver=solver, name="backbone.res4.ode")

    def forward(self, batch):
        return {"loss": self.block(batch).sum()}


class _Trainer(IterationContext, SimpleTrainer):
    pass


def _train(model, iters=2):
    x = torch.ones(1, 2, 3, 3, requires_grad=True)

    def loader():
        while True:
            yield x

    _Trainer(model, loader(), torch.optim.SGD(model.parameters(), lr=0.0)).train(0, iters)


CASES = {
    "step_guard": (1e4, dict(max_num_steps=30),
                   r"step guard of 30 steps.*MODEL.ODE.RTOL_TRAIN.*MODEL.ODE.MAX_NUM_STEPS"),
    "nan": (float("nan"), {}, r"adjoint state \(gradients\) became NaN/inf.*SOLVER.BASE_LR"),
    "underflow": (1e30, dict(rtol=1e-12, atol=1e-300, max_num_steps=10**6),
                  r"step size underflow.*MODEL.ODE.RTOL_TRAIN/ATOL_TRAIN"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("method", ["dopri5", "bosh3", "adaptive_heun"])
def test_adjoint_backward_solve_errors_name_iteration_block_and_setting(method, case):
    if case == "underflow" and method == "adaptive_heun":
        pytest.skip("its forward solve at rtol 1e-12 takes ~70k evaluations; dopri5/bosh3 cover it")
    k, opts, setting = CASES[case]
    model = _Model(k, SolverOptions(method=method, adjoint=True, **opts))
    with pytest.raises(ODESolverError) as e:
        _train(model)
    msg = str(e.value)
    assert msg.startswith("at training iteration 0: ODE block 'backbone.res4.ode'"), msg
    assert "the adjoint's backward solve" in msg and method in msg, msg
    assert __import__("re").search(setting, msg), msg
    assert model.block.nfe_forward > 0  # the forward solve itself was fine


def test_fixed_grid_adjoint_nan_in_backward_names_the_block():
    model = _Model(float("nan"), SolverOptions(method="rk4", step_size=0.5, adjoint=True))
    with pytest.raises(ODESolverError, match=r"iteration 0:.*backbone.res4.ode.*rk4.*adjoint's "
                       r"backward solve.*MODEL.ODE.STEP_SIZE_TRAIN"):
        _train(model)


def test_nan_loss_is_not_blamed_on_the_adjoint():
    """A NaN arriving from the loss is detectron2's NaN-loss error, not an ODE one."""
    from odedet.engine.guards import TrainingDivergedError

    class NanLoss(_Model):
        def forward(self, batch):
            return {"loss": self.block(batch).sum() * float("nan")}

    with pytest.raises(TrainingDivergedError, match="at training iteration 0"):
        _train(NanLoss(1.0, SolverOptions(method="dopri5", adjoint=True)))


def _coco_setup(tmp_path, **opts):
    name = f"rel_solve_{uuid.uuid4().hex[:8]}"
    json_file, image_root = write_coco(str(tmp_path / "data"), n_images=3)
    cfg = tiny_cfg(str(tmp_path / "out"))
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (name,), (name,)
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.CHECKPOINT_PERIOD = 2, 1000
    for k, v in opts.items():
        cfg.merge_from_list([k, v])
    path = write_cfg(str(tmp_path / "cfg.yaml"), cfg)
    return ["--config-file", path, "--register-coco", name, json_file, image_root], name


def _run(tool, argv):
    return tool.main(tool.build_parser().parse_args(argv))


GUARD_TEST = ["MODEL.ODE.METHOD_TEST", "dopri5", "MODEL.ODE.RTOL_TEST", "1e-9",
              "MODEL.ODE.ATOL_TEST", "1e-9", "MODEL.ODE.MAX_NUM_STEPS", "1"]


def test_evaluation_solver_error_names_dataset_image_and_setting(tmp_path):
    from odedet.engine import Trainer

    args, name = _coco_setup(tmp_path)
    weights = tmp_path / "w.pth"
    torch.save({"model": Trainer.build_model(tiny_cfg("x")).state_dict()}, weights)
    tool = load_tool("train_net")
    with pytest.raises(ODESolverError) as e:
        _run(tool, args + ["--eval-only", "MODEL.WEIGHTS", str(weights), *GUARD_TEST])
    msg = str(e.value)
    assert f"during evaluation on '{name}', batch of image(s)" in msg and "0000.jpg" in msg, msg
    assert "test solver" in msg and "MODEL.ODE.RTOL_TEST/ATOL_TEST" in msg, msg
    assert "MODEL.ODE.MAX_NUM_STEPS" in msg


def test_periodic_evaluation_solver_error_names_the_training_iteration(tmp_path):
    args, name = _coco_setup(tmp_path, **{"TEST.EVAL_PERIOD": 1})
    tool = load_tool("train_net")
    with pytest.raises(ODESolverError, match=rf"at training iteration 0 \(in a hook.*during "
                       rf"evaluation on '{name}'.*MODEL.ODE.MAX_NUM_STEPS"):
        _run(tool, args + GUARD_TEST)


def test_training_nfe_exclude_evaluation(tmp_path):
    """tiny_cfg: 4 ODE blocks x euler step 0.5 = 8 training f-evals per iteration, whether or
    not the EvalHook evaluated (24 f-evals on 3 images) after that iteration; evaluation's own
    NFE are logged apart, per image."""
    from detectron2.data import DatasetCatalog

    from odedet.data.datasets import register_coco
    from odedet.engine import Trainer

    name = f"rel_nfe_{uuid.uuid4().hex[:8]}"
    register_coco(name, *write_coco(str(tmp_path / "data"), n_images=3))
    cfg = tiny_cfg(str(tmp_path / "out"))
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (name,), (name,)
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.CHECKPOINT_PERIOD, cfg.TEST.EVAL_PERIOD = 3, 1000, 1
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    history = trainer.storage.histories()
    assert [v for v, _ in history["nfe_forward"].values()] == [8, 8, 8]
    evals = history[f"eval_nfe_per_image/{name}"].values()
    assert len(evals) == 3 and {v for v, _ in evals} == {8.0}  # after iterations 0, 1 + final
    with open(tmp_path / "out" / "metrics.json") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    assert [r["nfe_forward"] for r in rows if "nfe_forward" in r] == [8]
    DatasetCatalog.remove(name)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_batchnorm_running_stats_come_from_the_forward_solve_only(method):
    def block():
        torch.manual_seed(0)
        return ODEBlock(ConvODEFunc(4, norm="BN"),
                        train_solver=SolverOptions(method=method, adjoint=True))

    x = torch.randn(2, 4, 5, 5)
    forward_only = block()
    forward_only(x)
    trained = block()
    trained(x).square().sum().backward()
    assert trained.nfe_backward > 0
    for name in ("norm1", "norm2", "norm3"):
        a, b = getattr(forward_only.dynamics, name), getattr(trained.dynamics, name)
        assert torch.equal(a.running_mean, b.running_mean)
        assert torch.equal(a.running_var, b.running_var)
        assert a.num_batches_tracked == b.num_batches_tracked == forward_only.nfe_forward
        assert b.track_running_stats  # restored after the backward re-evaluations


@pytest.mark.parametrize("norm", ["GN", "BN", ""])
@pytest.mark.parametrize("method", ["rk4", "euler", "midpoint", "dopri5"])
def test_adjoint_under_bfloat16_autocast_matches_float32(method, norm):
    """The state entering an ODE block under autocast is bfloat16 (a conv's output): the
    fixed-grid adjoint used to re-evaluate f outside autocast (bf16 state, fp32 weights: a
    RuntimeError). Now the backward solve runs in the forward's precision and the gradients
    equal the float32 adjoint's up to bfloat16 rounding."""
    grads = {}
    for amp in (True, False):
        torch.manual_seed(0)
        stem = nn.Conv2d(3, 8, 1)
        block = ODEBlock(ConvODEFunc(8, norm=norm, gn_groups=4),
                         train_solver=SolverOptions(method=method, step_size=0.25,
                                                    adjoint=True, rtol=1e-2, atol=1e-2))
        x = torch.randn(2, 3, 6, 6)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            h = stem(x)
            assert h.dtype == (torch.bfloat16 if amp else torch.float32)
            loss = block(h).float().square().mean()
        loss.backward()
        assert block.nfe_backward > 0
        grads[amp] = torch.cat([p.grad.flatten() for p in (*stem.parameters(),
                                                            *block.parameters())])
        assert torch.isfinite(grads[amp]).all()
    if method == "dopri5":  # torchdiffeq's adaptive adjoint: runs, but its step control in
        return  # bf16 picks other steps, so gradients are not comparable to float32's
    rel = (grads[True] - grads[False]).norm() / grads[False].norm()
    assert rel < 0.1, rel  # bf16 keeps ~3 significant digits


def test_step_size_no_longer_sets_an_adaptive_first_step():
    cfg = odedet.get_odedet_cfg()
    cfg.MODEL.ODE.METHOD_TEST, cfg.MODEL.ODE.STEP_SIZE_TEST = "dopri5", 0.25
    assert "first_step" not in solver_options_from_cfg(cfg, "TEST").torchdiffeq_kwargs()["options"]
    cfg.MODEL.ODE.FIRST_STEP_TEST = 0.125
    kwargs = solver_options_from_cfg(cfg, "TEST").torchdiffeq_kwargs()
    assert kwargs["options"]["first_step"] == 0.125
    assert kwargs["adjoint_options"]["first_step"] == 0.125
    cfg.MODEL.ODE.METHOD_TEST = "rk4"  # fixed grid: step_size, first step ignored
    assert solver_options_from_cfg(cfg, "TEST").torchdiffeq_kwargs()["options"] == {
        "step_size": 0.25}
    from odedet.config_check import ConfigError, check_config

    cfg.MODEL.ODE.FIRST_STEP_TRAIN = -1.0
    with pytest.raises(ConfigError, match="MODEL.ODE.FIRST_STEP_TRAIN must be a finite number >= 0"):
        check_config(cfg)

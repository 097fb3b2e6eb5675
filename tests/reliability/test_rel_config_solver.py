"""Config errors name the key (with close valid keys / valid methods); solver failures and NaN
losses stop training with the iteration and the setting to change."""
import pytest
import torch
from detectron2.engine import SimpleTrainer
from torch import nn

import odedet
from odedet.config_check import ConfigError, check_config, load_config, merge_from_list
from odedet.engine.guards import IterationContext, TrainingDivergedError
from odedet.ode import ConvODEFunc, ODEBlock, ODESolverError, SolverOptions


def test_unknown_key_in_yaml_lists_close_keys(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text("MODEL:\n  ODE:\n    RTOL_TRAN: 0.01\n")
    with pytest.raises(ConfigError, match=r"MODEL.ODE.RTOL_TRAIN") as e:
        load_config(str(f))
    assert "cfg.yaml" in str(e.value) and "MODEL.ODE.RTOL_TRAN" in str(e.value)


def test_unknown_key_in_opts_lists_close_keys():
    with pytest.raises(ConfigError, match=r"'MODEL.ODE.STEPS'.*MODEL.ODE.STAGES"):
        merge_from_list(odedet.get_odedet_cfg(), ["MODEL.ODE.STEPS", "4"])
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        merge_from_list(odedet.get_odedet_cfg(), ["SOLVER.BASE_LR"])


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml.* not found"):  # names the file
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(str(bad))


@pytest.mark.parametrize(
    "opts, match",
    [
        (["MODEL.ODE.METHOD_TRAIN", "dopri"], r"Unknown ODE solver method 'dopri'.*dopri5.*rk4"),
        (["MODEL.ODE.RTOL_TEST", "-1e-3"], r"MODEL.ODE.RTOL_TEST must be a positive"),
        (["MODEL.ODE.ATOL_TRAIN", "0.0"], r"MODEL.ODE.ATOL_TRAIN must be a positive"),
        (["MODEL.ODE.STEP_SIZE_TRAIN", "0.0"], r"MODEL.ODE.STEP_SIZE_TRAIN must be > 0"),
        (["MODEL.ODE.STAGES", "['res4', 'res6']"], r"MODEL.ODE.STAGES.*unknown stage.*res6"),
        (["MODEL.ODE.STAGES", "['res4', 'res4']"], r"MODEL.ODE.STAGES.*repeated"),
        (["MODEL.ODE.T_END", "0.0"], r"MODEL.ODE.T_END must be a finite number > 0"),
        (["SOLVER.MAX_ITER", "0"], r"SOLVER.MAX_ITER must be"),
        (["DATALOADER.BAD_SAMPLES", "ignore"], r"DATALOADER.BAD_SAMPLES must be 'skip' or"),
    ],
)
def test_impossible_values_name_the_key(opts, match):
    with pytest.raises(ConfigError, match=match):
        load_config("", opts)


def test_checked_at_model_build():
    from odedet.engine import Trainer

    cfg = odedet.get_odedet_cfg()
    cfg.MODEL.ODE.STEP_SIZE_TEST = 0.0
    with pytest.raises(ConfigError, match="MODEL.ODE.STEP_SIZE_TEST"):
        Trainer.build_model(cfg)
    check_config(odedet.get_odedet_cfg())  # the defaults are valid


class _ODEModel(nn.Module):
    """A one-block ODE model returning a loss dict, as detectron2 models do in training."""

    def __init__(self, solver: SolverOptions, scale: float = 1.0):
        super().__init__()
        self.block = ODEBlock(ConvODEFunc(4, norm=""), train_solver=solver, name="res4.ode")
        self.scale = scale

    def forward(self, batch):
        x = batch * self.scale
        return {"loss": self.block(x).square().mean()}


class _Trainer(IterationContext, SimpleTrainer):
    pass


def _loader(x):
    while True:
        yield x


def _train(model, x, iters=3):
    trainer = _Trainer(model, _loader(x), torch.optim.SGD(model.parameters(), lr=0.0))
    trainer.train(0, iters)


def test_step_guard_names_iteration_and_setting():
    model = _ODEModel(SolverOptions(method="dopri5", rtol=1e-9, atol=1e-9, max_num_steps=2))
    with pytest.raises(ODESolverError, match=r"at training iteration 0:.*step guard of 2 steps"
                       r".*MODEL.ODE.RTOL_TRAIN.*MODEL.ODE.MAX_NUM_STEPS"):
        _train(model, torch.randn(1, 4, 6, 6))


def test_nan_state_names_iteration_and_setting():
    model = _ODEModel(SolverOptions(method="rk4", step_size=0.5))
    x = torch.randn(1, 4, 6, 6)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ODESolverError, match=r"at training iteration 0:.*NaN/inf.*SOLVER.BASE_LR"):
        _train(model, x)


def test_step_size_underflow_names_iteration_and_setting():
    # f(t, h) = huge: the adaptive solver's step shrinks until it underflows.
    model = _ODEModel(SolverOptions(method="dopri5", rtol=1e-12, atol=1e-300, max_num_steps=10**6))
    nn.init.constant_(model.block.dynamics.conv1.conv.weight, 1e30)
    with pytest.raises(ODESolverError, match=r"at training iteration 0:.*step size underflow"
                       r".*MODEL.ODE"):
        _train(model, torch.ones(1, 4, 6, 6))


def test_nan_loss_names_iteration_and_settings():
    model = _ODEModel(SolverOptions(method="euler", step_size=1.0), scale=1.0)

    class Diverging(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.calls = model, 0

        def forward(self, batch):
            self.calls += 1
            loss = self.inner(batch)["loss"]
            return {"loss": loss * (float("inf") if self.calls == 3 else 1.0)}

    expected = r"(?s)at training iteration 2:.*SOLVER.BASE_LR"
    with pytest.raises(TrainingDivergedError, match=expected):
        _train(Diverging(), torch.randn(1, 4, 6, 6), iters=5)


def test_optimizer_key_builds_sgd_or_adamw_with_detectron2_groups_and_clipping():
    from odedet.engine.optim import build_optimizer

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4))
    cfg = odedet.get_odedet_cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    assert type(build_optimizer(cfg, model)).__mro__[1] is torch.optim.SGD  # detectron2's default
    cfg.SOLVER.OPTIMIZER, cfg.SOLVER.BETAS, cfg.SOLVER.BASE_LR = "adamw", (0.8, 0.9), 0.003
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.AdamW) and type(opt) is not torch.optim.AdamW  # clipped
    assert all(g["betas"] == (0.8, 0.9) and g["lr"] == 0.003 for g in opt.param_groups)
    norm_decay = {g["weight_decay"] for g in opt.param_groups
                  if any(p is model[1].weight for p in g["params"])}
    assert norm_decay == {0.0}  # detectron2's WEIGHT_DECAY_NORM group is kept
    loss = model(torch.randn(2, 3, 8, 8)).pow(2).sum()
    loss.backward()
    before = model[0].weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model[0].weight)

    cfg.SOLVER.OPTIMIZER = "Adagrad"
    with pytest.raises(ConfigError, match="SOLVER.OPTIMIZER must be one of"):
        check_config(cfg)
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER must be one of"):
        build_optimizer(cfg, model)
    cfg.SOLVER.OPTIMIZER, cfg.SOLVER.BETAS = "AdamW", (0.9, 1.5)
    with pytest.raises(ValueError, match=r"SOLVER.BETAS must be two numbers in \[0, 1\)"):
        build_optimizer(cfg, model)
    with pytest.raises(ConfigError, match=r"SOLVER.BETAS must be two numbers in \[0, 1\)"):
        check_config(cfg)  # caught before any training, too

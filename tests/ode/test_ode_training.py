"""Solver sampling, random end time (STEER) and the training options' config keys."""
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from odedet.config import get_odedet_cfg
from odedet.config_check import ConfigError, check_config
from odedet.ode import ConvODEFunc, ODEBlock, SolverOptions, nfe_counts, reset_nfe
from odedet.ode.fixed_grid import fixed_grid
from odedet.ode.training import (
    ODETrainingOptions,
    SolverChoice,
    apply_draw,
    attach_ode_training,
    clear_draw,
    step_size_for,
)


class Scale(nn.Module):
    def __init__(self, a=-0.5):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, t, h):
        return self.a * h


def _model(n_blocks=3, method="rk4", step=0.25, t_end=1.0):
    opts = SolverOptions(method, step_size=step, adjoint=False)
    blocks = [ODEBlock(Scale(), t_end=t_end, train_solver=opts) for _ in range(n_blocks)]
    return nn.Sequential(*blocks)


def _options(**kw):
    cfg = get_odedet_cfg()
    cfg.SEED = kw.pop("SEED", 5)
    for k, v in kw.items():
        cfg.MODEL.ODE[k] = v
    return ODETrainingOptions.from_cfg(cfg)


def test_defaults_are_off():
    opts = _options()
    assert opts.solvers == () and opts.t_end_spread == 0 and opts.regulariser_weights == {}
    assert not opts.samples
    model = _model()
    assert apply_draw(model, opts, 3) == []
    assert attach_ode_training(model, opts) is model
    assert not model._forward_hooks
    assert all(b.train_draw is None and b.regulariser_names == () for b in model)


def test_draw_frequencies_under_a_seed_and_determinism():
    opts = _options(TRAIN_SOLVERS=["euler:1", "midpoint:1", "rk4:1", "rk4:1"])
    draws = [opts.draw(i, 1)[0][0] for i in range(4000)]
    freq = Counter(draws)
    # rk4:1 is listed twice, so indices 2 and 3 (both rk4:1) together get half of the draws.
    for idx in range(4):
        assert freq[idx] / 4000 == pytest.approx(0.25, abs=0.03)
    assert draws == [opts.draw(i, 1)[0][0] for i in range(4000)]  # same seed -> same draws
    other = _options(TRAIN_SOLVERS=list(map(str, opts.solvers)), SEED=6)
    assert draws != [other.draw(i, 1)[0][0] for i in range(4000)]
    assert opts.draw(17, 5) == opts.draw(17, 5)  # a pure function of (seed, iteration)


def test_per_iteration_shares_one_draw_per_block_draws_each():
    solvers = ["euler:1", "midpoint:1", "rk4:1"]
    per_it = _options(TRAIN_SOLVERS=solvers, T_END_SPREAD=0.5)
    per_block = _options(TRAIN_SOLVERS=solvers, T_END_SPREAD=0.5, TRAIN_SAMPLE_PER="block")
    for i in range(50):
        assert len(set(per_it.draw(i, 4))) == 1
    distinct = [len(set(per_block.draw(i, 4))) for i in range(50)]
    assert max(distinct) == 4
    counts = Counter(idx for i in range(1000) for idx, _ in per_block.draw(i, 4))
    assert all(c / 4000 == pytest.approx(1 / 3, abs=0.03) for c in counts.values())


def test_sampled_solver_is_used_and_counted():
    """Each block integrates with its draw: NFE per block = stages * steps of the drawn setting."""
    stages = {"euler": 1, "midpoint": 2, "rk4": 4}
    opts = _options(TRAIN_SOLVERS=["euler:1", "midpoint:2", "rk4:1", "rk4:3"],
                    TRAIN_SAMPLE_PER="block")
    model = _model()
    x = torch.ones(1, 1, 1, 1)
    seen = set()
    for it in range(12):
        draws = apply_draw(model, opts, it)
        reset_nfe(model)
        model(x).sum().backward()
        counts = nfe_counts(model, per_block=True)["blocks"]
        for (name, block), (idx, t) in zip(model.named_children(), draws):
            choice = opts.solvers[idx]
            used, t_used = block.last_setting
            assert (used.method, t_used) == (choice.method, 1.0)
            assert counts[name]["forward"] == stages[choice.method] * choice.steps
            seen.add(str(choice))
    assert len(seen) == 4
    model.eval()  # evaluation ignores the draws
    reset_nfe(model)
    model(x)
    assert nfe_counts(model)["forward"] == 3 * 16
    assert all(b.last_setting == (b.test_solver, 1.0) for b in model)
    clear_draw(model)
    assert all(b.train_draw is None for b in model)


def test_random_end_time_is_uniform_and_evaluation_uses_t_end():
    opts = _options(T_END=2.0, T_END_SPREAD=0.5)
    model = _model(1, t_end=2.0)
    ts = np.array([2.0 + opts.draw(i, 1)[0][1] for i in range(3000)])
    assert ts.min() >= 1.5 and ts.max() <= 2.5
    assert ts.mean() == pytest.approx(2.0, abs=0.02)
    # Uniform: the empirical CDF is within the Kolmogorov-Smirnov 1% band of the uniform CDF.
    grid = np.linspace(1.5, 2.5, 21)
    ecdf = np.searchsorted(np.sort(ts), grid) / len(ts)
    assert np.abs(ecdf - (grid - 1.5)).max() < 1.63 / np.sqrt(len(ts))

    block = model[0]
    x = torch.ones(1, 1, 1, 1)
    apply_draw(model, opts, 0)
    drawn_t = block.train_draw[1]
    assert drawn_t != 2.0
    # The configured rk4 grid (step 0.25 over [0, 2]: 8 steps) keeps its 8 steps at the drawn T.
    reset_nfe(model)
    out = block(x)
    assert nfe_counts(model)["forward"] == 8 * 4
    assert out.item() == pytest.approx(np.exp(-0.5 * drawn_t), rel=2e-5)
    block.eval()
    with torch.no_grad():
        assert block(x).item() == pytest.approx(np.exp(-0.5 * 2.0), rel=2e-5)
    assert block.last_setting[1] == 2.0


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 7])
def test_step_size_gives_exactly_the_number_of_steps(steps):
    for t_end in np.linspace(0.3, 1.7, 57):
        size = step_size_for(float(t_end), steps)
        for dtype in (torch.float32, torch.float64):
            t = torch.tensor([0.0, float(t_end)], dtype=dtype)
            assert len(fixed_grid(t[0], t[1], size)) == steps + 1
        assert size == pytest.approx(t_end / steps, rel=1e-5)


def test_attach_adds_weighted_regulariser_losses_to_the_loss_dict():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            opts = SolverOptions("midpoint", step_size=1.0, adjoint=False)
            self.body = ODEBlock(ConvODEFunc(2, norm="GN", gn_groups=1), train_solver=opts)

        def forward(self, x):
            return {"loss_main": self.body(x).mean()} if self.training else self.body(x)

    model = Model()
    attach_ode_training(model, _options(KINETIC_WEIGHT=0.1, JACOBIAN_WEIGHT=0.01))
    x = torch.randn(2, 2, 4, 4)
    losses = model(x)
    assert set(losses) == {"loss_main", "loss_ode_kinetic", "loss_ode_jacobian"}
    block = model.body
    assert block.regularisers == {}  # consumed by the loss dict
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    # Weighted: the loss is weight * the block's integral (recomputed here with the same probe).
    model2 = attach_ode_training(Model(), _options(KINETIC_WEIGHT=1.0, JACOBIAN_WEIGHT=1.0))
    model2.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    losses = model(x)
    torch.manual_seed(0)  # the same Hutchinson probe
    unit = model2(x)
    for key, weight in (("loss_ode_kinetic", 0.1), ("loss_ode_jacobian", 0.01)):
        assert losses[key].item() == pytest.approx(weight * unit[key].item())
    model.eval()
    assert isinstance(model(x), torch.Tensor)  # evaluation output untouched


@pytest.mark.parametrize("key,value,match", [
    ("TRAIN_SOLVERS", ["dopri5:1"], "'dopri5:1'.*not a fixed-grid"),
    ("TRAIN_SOLVERS", ["rk4"], "'rk4' must be 'method:steps'"),
    ("TRAIN_SOLVERS", ["rk4:0"], "'rk4:0'.*>= 1"),
    ("TRAIN_SOLVERS", ["rk4:two"], "'rk4:two' must be"),
    ("TRAIN_SOLVERS", "rk4:1", "must be a list"),
    ("TRAIN_SAMPLE_PER", "epoch", "'epoch'"),
    ("T_END_SPREAD", 1.0, "< MODEL.ODE.T_END"),
    ("T_END_SPREAD", -0.1, "-0.1"),
    ("KINETIC_WEIGHT", -1.0, "-1.0"),
    ("JACOBIAN_WEIGHT", float("nan"), "nan"),
    ("JACOBIAN_NOISE", "uniform", "'uniform'"),
])
def test_config_errors_name_the_key_and_value(key, value, match):
    cfg = get_odedet_cfg()
    cfg.MODEL.ODE[key] = value
    with pytest.raises(ConfigError, match=f"MODEL.ODE.{key}") as err:
        check_config(cfg)
    assert err.match(match)


def test_solver_choice_round_trip():
    assert SolverChoice.parse(" heun2:3 ") == SolverChoice("heun2", 3)
    assert str(SolverChoice("rk4", 2)) == "rk4:2"

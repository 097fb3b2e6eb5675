"""The ODE core against problems with known answers (torchdiffeq's test style)."""
import math
import time

import pytest
import torch
from torch import nn

from odedet.config import get_odedet_cfg
from odedet.ode import (
    ConvODEFunc,
    BottleneckODEFunc,
    ODEBlock,
    ODESolverError,
    SolverOptions,
    nfe_counts,
    reset_nfe,
    set_solver,
    solver_options_from_cfg,
)


class LinearDynamics(nn.Module):
    """dh/dt = a * h, solution h(t) = h0 * exp(a t): the closed form the solvers are checked on."""

    def __init__(self, a=-1.5):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a)))

    def forward(self, t, h):
        return self.a * h


class ZeroDynamics(nn.Module):
    def forward(self, t, h):
        return torch.zeros_like(h)


class StiffDynamics(nn.Module):
    """dh/dt = -k (h - cos t): stiff for large k, an explicit adaptive solver needs ~k steps."""

    def __init__(self, k=1e6):
        super().__init__()
        self.k = k

    def forward(self, t, h):
        return -self.k * (h - torch.cos(t))


def test_linear_ode_matches_closed_form_fixed_and_adaptive():
    h0 = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    exact = h0 * math.exp(-1.5 * 2.0)
    for opts in (
        SolverOptions("rk4", step_size=0.05, adjoint=False),
        SolverOptions("dopri5", rtol=1e-8, atol=1e-10, step_size=0, adjoint=True),
    ):
        block = ODEBlock(LinearDynamics().double(), t_end=2.0, train_solver=opts).eval()
        with torch.no_grad():
            out = block(h0)
        assert torch.allclose(out, exact, rtol=1e-6, atol=1e-8), opts


def test_zero_dynamics_is_identity():
    x = torch.randn(2, 4, 6, 6)
    for method in ("euler", "rk4", "dopri5"):
        block = ODEBlock(ZeroDynamics(), train_solver=SolverOptions(method, step_size=0.25, first_step=0.25))
        assert torch.allclose(block(x), x, rtol=0, atol=1e-6), method


def test_rk4_nfe_is_exact_and_forward_backward_are_separate():
    block = ODEBlock(LinearDynamics(), train_solver=SolverOptions("rk4", step_size=0.25))
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    out = block(x)
    assert nfe_counts(block) == {"forward": 16, "backward": 0}
    out.sum().backward()
    # The adjoint solves backwards on the same grid: one f-evaluation per stage again.
    assert nfe_counts(block) == {"forward": 16, "backward": 16}
    reset_nfe(block)
    assert nfe_counts(block) == {"forward": 0, "backward": 0}
    # Direct backprop (RK-Net) evaluates no f in the backward pass.
    block.set_solver("train", adjoint=False)
    block(x).sum().backward()
    assert nfe_counts(block) == {"forward": 16, "backward": 0}


def test_nfe_summed_over_model_and_per_block():
    model = nn.Sequential(
        ODEBlock(ZeroDynamics(), train_solver=SolverOptions("euler", step_size=0.5)),
        ODEBlock(ZeroDynamics(), train_solver=SolverOptions("rk4", step_size=0.5)),
    )
    model(torch.zeros(1, 1, 2, 2))
    counts = nfe_counts(model, per_block=True)
    assert counts["forward"] == 2 + 8
    assert counts["blocks"] == {"0": {"forward": 2, "backward": 0}, "1": {"forward": 8, "backward": 0}}


def _mild(func, scale=0.3):
    """Scale the dynamics' output norm down: a moderate Lipschitz constant keeps the adjoint's
    backward reconstruction of h(t) accurate, so its gradients can be compared tightly."""
    last = [m for m in func.modules() if isinstance(m, nn.GroupNorm)][-1]
    with torch.no_grad():
        last.weight.mul_(scale)
    return func


def test_gradcheck_tiny_block_float64():
    torch.manual_seed(0)
    func = _mild(ConvODEFunc(2, norm="GN", gn_groups=1, zero_init=False).double())
    block = ODEBlock(func, train_solver=SolverOptions("rk4", step_size=0.5, adjoint=False))
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_gradients_match_closed_form(method, adjoint):
    """h' = a h: h(T) = h0 exp(aT), so d sum h(T) / da = T sum(h0) exp(aT), d/dh0 = exp(aT)."""
    func = LinearDynamics(-0.8).double()
    opts = SolverOptions(method, rtol=1e-10, atol=1e-10, step_size=0.01 if method == "rk4" else 0,
                         max_num_steps=10000, adjoint=adjoint)
    block = ODEBlock(func, t_end=1.5, train_solver=opts)
    h0 = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    block(h0).sum().backward()
    expected_da = 1.5 * h0.detach().sum() * math.exp(-0.8 * 1.5)
    assert torch.allclose(func.a.grad, expected_da, rtol=1e-6)
    assert torch.allclose(h0.grad, torch.full_like(h0, math.exp(-0.8 * 1.5)), rtol=1e-6)


@pytest.mark.parametrize("dynamics", ["basic", "bottleneck"])
def test_adjoint_gradients_equal_direct_backprop(dynamics):
    torch.manual_seed(0)
    if dynamics == "basic":
        func = ConvODEFunc(4, norm="GN", gn_groups=2, zero_init=False)
    else:
        func = BottleneckODEFunc(8, 4, norm="GN", gn_groups=2, zero_init=False)
    func = _mild(func.double())
    x = torch.randn(2, func.norm1.num_channels, 5, 6, dtype=torch.float64)
    grads = {}
    for adjoint in (False, True):
        # On a fine fixed grid the adjoint's continuous backward solve and backprop through the
        # discrete forward differ only by discretisation error (measured: 1.5% of the largest
        # gradient at step 0.1, 0.35% at 0.05; ReLU kinks keep it from shrinking like h^4).
        # A wrong or missing adjoint term is off by O(1).
        block = ODEBlock(func, train_solver=SolverOptions("rk4", step_size=0.05, adjoint=adjoint))
        xi = x.clone().requires_grad_(True)
        func.zero_grad()
        (block(xi) ** 2).sum().backward()
        grads[adjoint] = [xi.grad] + [p.grad.clone() for p in func.parameters()]
    for g_direct, g_adj in zip(grads[False], grads[True]):
        scale = g_direct.abs().max()
        assert (g_direct - g_adj).abs().max() <= 1e-2 * scale


def test_tighter_tolerance_more_nfe_smaller_error():
    h0 = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    exact = h0 * math.exp(-1.5)
    results = []
    for tol in (1e-2, 1e-5, 1e-8):
        block = ODEBlock(
            LinearDynamics().double(),
            train_solver=SolverOptions("dopri5", rtol=tol, atol=tol, step_size=0),
        ).eval()
        with torch.no_grad():
            err = (block(h0) - exact).abs().max().item()
        results.append((nfe_counts(block)["forward"], err))
    nfes, errs = zip(*results)
    assert nfes[0] < nfes[1] < nfes[2]
    assert errs[0] > errs[1] > errs[2]


def test_step_guard_fires_quickly_with_clear_error():
    block = ODEBlock(
        StiffDynamics(),
        train_solver=SolverOptions("dopri5", rtol=1e-6, atol=1e-6, step_size=0, max_num_steps=50),
    ).eval()
    start = time.perf_counter()
    with pytest.raises(ODESolverError) as info:
        with torch.no_grad():
            block(torch.zeros(1, 1, 2, 2, dtype=torch.float64))
    assert time.perf_counter() - start < 5
    msg = str(info.value)
    assert "step guard of 50 steps" in msg
    assert "MODEL.ODE.RTOL_TEST" in msg and "MODEL.ODE.MAX_NUM_STEPS" in msg and "rk4" in msg


def test_non_finite_state_raises():
    block = ODEBlock(LinearDynamics(), train_solver=SolverOptions("euler", step_size=0.5))
    x = torch.full((1, 1, 2, 2), float("nan"))
    with pytest.raises(ODESolverError, match="NaN/inf"):
        block(x)


def test_train_and_test_solvers_switch_without_retraining():
    block = ODEBlock(
        LinearDynamics(),
        train_solver=SolverOptions("rk4", step_size=0.25),
        test_solver=SolverOptions("euler", step_size=0.5),
    )
    x = torch.randn(1, 1, 2, 2)
    block.train()(x)
    assert nfe_counts(block)["forward"] == 16
    reset_nfe(block)
    with torch.no_grad():
        block.eval()(x)
    assert nfe_counts(block)["forward"] == 2
    assert set_solver(block, "test", method="dopri5", rtol=1e-2, atol=1e-2, step_size=0) == 1
    reset_nfe(block)
    with torch.no_grad():
        block(x)
    assert block.test_solver.method == "dopri5" and block.train_solver.method == "rk4"
    assert nfe_counts(block)["forward"] > 0


def test_augmented_channels_are_dropped_and_state_dict_is_plain():
    func = ConvODEFunc(6, norm="GN", gn_groups=2, zero_init=False)
    block = ODEBlock(func, augment_channels=2, train_solver=SolverOptions("euler", step_size=0.5))
    x = torch.randn(2, 4, 5, 5)
    assert block(x).shape == x.shape
    assert all(k.startswith("dynamics.") for k in block.state_dict())
    with pytest.raises(ValueError, match="augment_channels"):
        ODEBlock(func, augment_channels=-1)


def test_zero_init_dynamics_start_as_identity():
    block = ODEBlock(ConvODEFunc(8, zero_init=True), train_solver=SolverOptions("rk4", step_size=0.5))
    x = torch.randn(1, 8, 4, 4)
    assert torch.allclose(block(x), x)
    # The default (reference ODE-Net) initialisation integrates non-trivial dynamics.
    block = ODEBlock(ConvODEFunc(8), train_solver=SolverOptions("rk4", step_size=0.5))
    assert (block(x) - x).abs().mean() > 0.1


@pytest.mark.parametrize("norm", ["GN", "BN", ""])
def test_norm_choices(norm):
    func = ConvODEFunc(4, norm=norm, gn_groups=2, zero_init=False)
    out = ODEBlock(func, train_solver=SolverOptions("euler", step_size=0.5))(torch.randn(2, 4, 3, 3))
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="MODEL.ODE.NORM"):
        ConvODEFunc(4, norm="LN")


def test_concat_conv_equals_explicit_time_channel():
    from odedet.ode import ConcatConv2d

    conv = ConcatConv2d(3, 5, 3)
    x, t = torch.randn(2, 3, 7, 6), torch.tensor(0.7)
    explicit = conv.conv(torch.cat([torch.full_like(x[:, :1], 0.7), x], 1))
    assert torch.allclose(conv(t, x), explicit, atol=1e-6)


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("METHOD_TEST", "dopri", "MODEL.ODE.METHOD_TEST"),
        ("RTOL_TEST", -1e-3, "MODEL.ODE.RTOL_TEST"),
        ("STEP_SIZE_TEST", 0.0, "MODEL.ODE.STEP_SIZE_TEST"),
        ("MAX_NUM_STEPS", 0, "MODEL.ODE.MAX_NUM_STEPS"),
    ],
)
def test_config_validation_names_the_key(key, value, needle):
    cfg = get_odedet_cfg()
    assert solver_options_from_cfg(cfg, "TEST").method == "rk4"
    cfg.MODEL.ODE[key] = value
    with pytest.raises(ValueError, match=needle):
        solver_options_from_cfg(cfg, "TEST")


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        SolverOptions("rk5")
    assert "dopri5" in str(info.value) and "euler" in str(info.value)

"""RNODE regularisers (kinetic energy, Jacobian Frobenius) on linear ODEs with known answers."""
import math

import pytest
import torch
from torch import nn

from odedet.ode import ConvODEFunc, ODEBlock, SolverOptions, nfe_counts
from odedet.ode.fixed_grid import odeint_fixed
from odedet.ode.regularisers import hutchinson_noise, odeint_regularised


class ChannelLinear(nn.Module):
    """dh/dt = A h, A (C x C) acting on the channels of every pixel: per pixel the Jacobian is A."""

    def __init__(self, A):
        super().__init__()
        self.A = nn.Parameter(A.clone())

    def forward(self, t, h):
        return torch.einsum("ij,njhw->nihw", self.A, h)


class Constant(nn.Module):
    def __init__(self, b):
        super().__init__()
        self.b = nn.Parameter(torch.tensor(b))

    def forward(self, t, h):
        return self.b * torch.ones_like(h)


def _solve(func, x, t_end, opts, names, eps=None):
    return odeint_regularised(func, x, t_end, opts, names, eps, tuple(func.parameters()))


@pytest.mark.parametrize("opts", [
    SolverOptions("rk4", step_size=0.02, adjoint=False),
    SolverOptions("rk4", step_size=0.02, adjoint=True),
    SolverOptions("dopri5", rtol=1e-10, atol=1e-10, step_size=0, adjoint=False),
], ids=["rk4-direct", "rk4-adjoint", "dopri5"])
def test_kinetic_energy_of_diagonal_linear_ode_matches_closed_form(opts):
    """A = diag(a): h_i(t) = h0_i e^{a_i t}, so
    integral_0^T f_i^2 dt = a_i h0_i^2 (e^{2 a_i T} - 1) / 2."""
    a = torch.tensor([-1.0, 0.5, 0.3], dtype=torch.float64)
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    T = 1.5
    h, regs = _solve(ChannelLinear(torch.diag(a)), x, T, opts, ("kinetic",))
    per_channel = a * (torch.exp(2 * a * T) - 1) / 2
    exact = (x.pow(2) * per_channel.view(1, 3, 1, 1)).sum() / x.numel()
    assert set(regs) == {"kinetic"}
    assert torch.allclose(regs["kinetic"], exact, rtol=1e-7, atol=0)
    assert torch.allclose(h, x * torch.exp(a * T).view(1, 3, 1, 1), rtol=1e-7)


@pytest.mark.parametrize("method,step", [("euler", 1.0), ("midpoint", 0.5), ("rk4", 0.25)])
def test_jacobian_with_a_fixed_probe_is_exact_for_a_linear_ode(method, step):
    """df/dh = A everywhere, so the integrand is constant and every method integrates it exactly:
    JF = T * sum_pixels ||A^T eps||^2 / numel."""
    torch.manual_seed(1)
    A = torch.randn(4, 4, dtype=torch.float64)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    eps = torch.randn_like(x)
    T = 2.0
    _, regs = _solve(ChannelLinear(A), x, T, SolverOptions(method, step_size=step, adjoint=False),
                     ("jacobian",), eps)
    exact = T * torch.einsum("ji,njhw->nihw", A, eps).pow(2).sum() / x.numel()
    assert torch.allclose(regs["jacobian"], exact, rtol=1e-12)


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_hutchinson_expectation_is_the_frobenius_norm(noise):
    """E JF = T ||A||_F^2 / C (per-element normalisation); 20000 pixels give 20000 independent
    probes in one solve, and averaging over 5 solves brings the error well under 3%."""
    torch.manual_seed(2)
    A = torch.randn(3, 3)
    x = torch.zeros(5, 3, 40, 100)
    T = 0.7
    block = ODEBlock(ChannelLinear(A), t_end=T, train_solver=SolverOptions("euler", step_size=T,
                                                                            adjoint=False))
    block.set_regularisers(("jacobian",), noise)
    est = []
    for _ in range(5):
        block(x)
        est.append(block.regularisers["jacobian"].item())
    expected = T * A.pow(2).sum().item() / 3
    assert sum(est) / len(est) == pytest.approx(expected, rel=0.03)
    probe = hutchinson_noise(x, noise)
    if noise == "rademacher":
        assert set(probe.unique().tolist()) == {-1.0, 1.0}


def test_regulariser_gradients_reach_the_dynamics_and_match_closed_form():
    """d JF / dA = 2 T / numel * sum_pixels eps eps^T A for the linear ODE (fixed probe)."""
    A = torch.randn(3, 3, dtype=torch.float64)
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    eps = torch.randn_like(x)
    func = ChannelLinear(A)
    _, regs = _solve(func, x, 1.5, SolverOptions("midpoint", step_size=0.5, adjoint=False),
                     ("jacobian",), eps)
    regs["jacobian"].backward()
    e = eps.permute(1, 0, 2, 3).reshape(3, -1)
    expected = 2 * 1.5 / x.numel() * (e @ e.T) @ A
    assert torch.allclose(func.A.grad, expected, rtol=1e-10)

    # Conv dynamics: every parameter gets a gradient from each regulariser alone.
    for name in ("kinetic", "jacobian"):
        torch.manual_seed(0)
        conv = ConvODEFunc(4, norm="GN", gn_groups=2)
        y = torch.randn(1, 4, 5, 5)
        _, regs = _solve(conv, y, 1.0, SolverOptions("rk4", step_size=0.5, adjoint=False),
                         (name,), torch.randn_like(y))
        regs[name].backward()
        for pname, p in conv.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (name, pname)


def test_adjoint_gradients_equal_direct_backprop_with_regularisers():
    """The adjoint carries the integrals as augmented state: same gradients as backprop through
    the solver (float64, fine rk4 grid) for h(T), KE and JF together."""
    torch.manual_seed(3)
    A = 0.5 * torch.randn(3, 3, dtype=torch.float64)
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    eps = torch.randn_like(x)
    grads = []
    for adjoint in (False, True):
        func = ChannelLinear(A)
        x_ = x.clone().requires_grad_(True)
        h, regs = _solve(func, x_, 1.0, SolverOptions("rk4", step_size=0.02, adjoint=adjoint),
                         ("kinetic", "jacobian"), eps)
        (h.pow(2).sum() + 3 * regs["kinetic"] + 2 * regs["jacobian"]).backward()
        grads.append((func.A.grad, x_.grad))
    assert torch.allclose(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-8)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-8)


def test_regularised_state_is_bit_identical_and_nfe_unchanged():
    """The integrals ride along: h(T) is the same floats as the plain solve, and the Jacobian's
    vector-Jacobian products are not counted as f-evaluations (rk4, 4 steps: 16)."""
    torch.manual_seed(0)
    func = ConvODEFunc(4, norm="GN", gn_groups=2)
    x = torch.randn(2, 4, 6, 6)
    plain = odeint_fixed(func, x, 1.0, 0.25, "rk4")
    block = ODEBlock(func, train_solver=SolverOptions("rk4", step_size=0.25, adjoint=False))
    block.set_regularisers(("kinetic", "jacobian"))
    out = block(x)
    assert torch.equal(out, plain)
    assert nfe_counts(block) == {"forward": 16, "backward": 0}
    assert set(block.regularisers) == {"kinetic", "jacobian"}
    assert all(torch.isfinite(v) and v > 0 for v in block.regularisers.values())


def test_regularisers_only_in_training_and_off_by_default():
    func = ChannelLinear(torch.eye(2))
    block = ODEBlock(func, train_solver=SolverOptions("euler", step_size=1.0, adjoint=False))
    x = torch.ones(1, 2, 1, 1)
    block(x)
    assert block.regulariser_names == () and block.regularisers == {}
    block.set_regularisers(("kinetic",))
    block.eval()
    block(x)
    assert block.regularisers == {}
    block.train()
    block(x)
    # Euler, one step of 1 from h = 1 with A = I: f = h = 1 at t = 0, so KE = 1 * 1.
    assert block.regularisers["kinetic"].item() == pytest.approx(1.0)
    # f independent of h (f = b, constant): zero Jacobian, KE = b^2 T
    const = ODEBlock(Constant(0.5), t_end=2.0,
                     train_solver=SolverOptions("rk4", step_size=0.5, adjoint=False))
    const.set_regularisers(("kinetic", "jacobian"))
    const(x)
    assert {k: v.item() for k, v in const.regularisers.items()} == {"kinetic": 0.5, "jacobian": 0}
    with pytest.raises(ValueError, match="unknown ODE regulariser"):
        block.set_regularisers(("speed",))
    with pytest.raises(ValueError, match="rademacher"):
        block.set_regularisers(("jacobian",), noise="uniform")
    assert math.isfinite(block.regularisers["kinetic"].item())


@pytest.mark.parametrize("regularised", [False, True])
def test_adjoint_guard_passes_nan_upstream_gradients_through(regularised):
    """A NaN loss backpropagated into an adjoint block gives NaN gradients (for detectron2's
    NaN-loss check to report), with and without the regularisers' extra outputs; the guard
    used to return one gradient too few there (RuntimeError)."""
    block = ODEBlock(ConvODEFunc(2, norm="GN", gn_groups=1),
                     train_solver=SolverOptions("rk4", step_size=0.5, adjoint=True))
    if regularised:
        block.set_regularisers(("kinetic", "jacobian"))
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    out = block(x)
    loss = out.sum() + sum(block.regularisers.values(), torch.zeros(()))
    (loss * float("nan")).backward()
    assert x.grad.isnan().all()
    assert all(p.grad.isnan().all() for p in block.dynamics.parameters())

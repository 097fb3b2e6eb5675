"""The lean fixed-grid path of ODEBlock gives torchdiffeq's numbers exactly (outputs, input and
parameter gradients, NFE), direct and adjoint, on conv dynamics and odd grids."""
import pytest
import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from odedet.ode import ConvODEFunc, ODEBlock, SolverOptions
from odedet.ode.fixed_grid import FAST_METHODS


class Counting(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f, self.n = f, 0

    def forward(self, t, h):
        self.n += 1
        return self.f(t, h)


def _reference(dyn, x, method, step, t_end, adjoint):
    """Plain torchdiffeq: y(T), dL/dx, dL/dparams and NFE for L = sum(y(T) * w)."""
    func = Counting(dyn)
    t = torch.tensor([0.0, t_end])
    opts = dict(method=method, options=dict(step_size=step))
    if adjoint:
        y = odeint_adjoint(func, x, t, adjoint_params=tuple(dyn.parameters()),
                           adjoint_options=dict(step_size=step), **opts)[-1]
    else:
        y = odeint(func, x, t, **opts)[-1]
    nfe_fwd = func.n
    return y, _grads(dyn, x, y), (nfe_fwd, func.n - nfe_fwd)


def _grads(dyn, x, y):
    w = torch.linspace(-1, 1, y.numel()).view_as(y)
    return torch.autograd.grad((y * w).sum(), (x, *dyn.parameters()))


@pytest.mark.parametrize("method", FAST_METHODS)
@pytest.mark.parametrize("adjoint", [False, True])
# (1.0, 1.0) and (1.0, 2.0): steps of exactly 1, where the products by dt are skipped
@pytest.mark.parametrize("step,t_end", [(0.3, 1.0), (0.4, 1.7), (1.0, 1.0), (1.0, 2.0)])
def test_fast_path_equals_torchdiffeq_exactly(method, adjoint, step, t_end):
    torch.manual_seed(0)
    dyn = ConvODEFunc(8, norm="GN", gn_groups=4, zero_init=False)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    ref_y, ref_g, ref_nfe = _reference(dyn, x, method, step, t_end, adjoint)

    opts = SolverOptions(method, step_size=step, adjoint=adjoint)
    block = ODEBlock(dyn, t_end=t_end, train_solver=opts).train()
    y = block(x)
    g = _grads(dyn, x, y)
    assert torch.equal(y, ref_y)
    for a, b in zip(g, ref_g):
        assert torch.equal(a, b), (a - b).abs().max()
    assert (block.nfe_forward, block.nfe_backward) == ref_nfe
    if adjoint:  # the adjoint really ran: f re-evaluated backwards
        assert block.nfe_backward == block.nfe_forward


def test_fast_adjoint_with_frozen_parameter_equals_torchdiffeq():
    torch.manual_seed(0)
    dyn = ConvODEFunc(8, norm="GN", gn_groups=4, zero_init=False)
    dyn.norm1.weight.requires_grad_(False)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    trainable = [p for p in dyn.parameters() if p.requires_grad]
    block = ODEBlock(dyn, train_solver=SolverOptions("rk4", step_size=0.5, adjoint=True))
    ga = torch.autograd.grad(block(x).square().sum(), (x, *trainable))
    ref = odeint_adjoint(dyn, x, torch.tensor([0.0, 1.0]), method="rk4",
                         options=dict(step_size=0.5), adjoint_options=dict(step_size=0.5),
                         adjoint_params=tuple(dyn.parameters()))[-1]
    gr = torch.autograd.grad(ref.square().sum(), (x, *trainable))
    for a, b in zip(ga, gr):
        assert torch.equal(a, b)
    assert dyn.norm1.weight.grad is None


def test_eval_mode_fast_path_counts_and_matches():
    torch.manual_seed(0)
    dyn = ConvODEFunc(8, norm="GN", gn_groups=4, zero_init=False)
    x = torch.randn(1, 8, 5, 5)
    block = ODEBlock(dyn, train_solver=SolverOptions("rk4", step_size=0.25)).eval()
    with torch.no_grad():
        y = block(x)
        ref = odeint(dyn, x, torch.tensor([0.0, 1.0]), method="rk4",
                     options=dict(step_size=0.25))[-1]
    assert torch.equal(y, ref)
    assert (block.nfe_forward, block.nfe_backward) == (16, 0)


@pytest.mark.parametrize("method", FAST_METHODS)
def test_eval_one_step_solvers_equal_torchdiffeq_exactly(method):
    """The quickstart's test-time settings (one step over [0, 1]) outside autograd: cached grid,
    skipped dt products, cached contiguous weights; the numbers are torchdiffeq's."""
    torch.manual_seed(0)
    dyn = ConvODEFunc(8, norm="GN", gn_groups=4, zero_init=False)
    x = torch.randn(2, 8, 6, 6)
    block = ODEBlock(dyn, test_solver=SolverOptions(method, step_size=1.0)).eval()
    with torch.no_grad():
        ref = odeint(dyn, x, torch.tensor([0.0, 1.0]), method=method,
                     options=dict(step_size=1.0))[-1]
        for _ in range(2):  # the second call runs on the caches
            assert torch.equal(block(x), ref)


def test_grid_steps_cache_flags_unit_steps_and_is_bounded():
    from odedet.ode import fixed_grid as fg

    steps = fg.cached_grid_steps(1.0, 1.0, torch.float32, "cpu")
    assert [(float(a), float(d), float(b), u) for a, d, b, u in steps] == [(0.0, 1.0, 1.0, True)]
    assert fg.cached_grid_steps(1.0, 1.0, torch.float32, torch.device("cpu")) is steps
    half = fg.cached_grid_steps(1.0, 0.5, torch.float32, "cpu")
    assert [u for *_, u in half] == [False, False]
    # a last step shortened to reach T is not a unit step: [0, 1, 1.5]
    assert [u for *_, u in fg.cached_grid_steps(1.5, 1.0, torch.float32, "cpu")] == [True, False]
    for i in range(3 * fg._STEPS_CACHE_SIZE):  # random end times (STEER) do not grow it
        fg.cached_grid_steps(1.0 + i * 1e-3, 0.25, torch.float32, "cpu")
    assert len(fg._STEPS_CACHE) <= fg._STEPS_CACHE_SIZE


def test_finite_check_catches_nan_inf_and_accepts_overflowing_sums():
    from odedet.ode.block import _all_finite

    big = torch.full((4,), 3e38)  # finite elements whose sum overflows to inf
    assert _all_finite(big) and _all_finite(torch.zeros(3))
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.zeros(5)
        x[2] = bad
        assert not _all_finite(x)
    x = torch.tensor([float("inf"), -float("inf")])  # inf - inf: the sum is NaN
    assert not _all_finite(x)


def test_no_grad_steps_update_one_state_in_place_with_the_same_numbers():
    """Outside autograd (eval, the adjoint's backward solve) steps 2..K add into the state the
    first step made, so K steps hold no more states than one; y0 is never written."""
    from odedet.ode.fixed_grid import integrate

    torch.manual_seed(0)
    dyn = ConvODEFunc(8, norm="GN", gn_groups=4, zero_init=False).eval()
    x = torch.randn(1, 8, 5, 5)
    x_copy = x.clone()
    seen = []

    def func(t, ys):
        seen.append(ys[0].data_ptr())
        return [dyn(t, ys[0])]

    grid = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    with torch.no_grad():
        y = integrate("euler", func, [x], grid, 1)[0]
        ref = odeint(dyn, x, torch.tensor([0.0, 1.0]), method="euler",
                     options=dict(step_size=0.25))[-1]
    assert torch.equal(y, ref) and torch.equal(x, x_copy)
    assert seen[0] == x.data_ptr() and len(set(seen[1:])) == 1 and seen[1] != seen[0]
    seen.clear()
    xg = x.clone().requires_grad_(True)
    integrate("euler", func, [xg], grid, 1)  # with autograd: a new state per step
    assert len(set(seen)) == 4


def test_rk4_forms_its_partial_sum_before_the_fourth_evaluation_with_the_same_numbers():
    """Outside autograd the 3/8-rule step frees k1..k3 before evaluating k4 (it forms
    k1 + 3 (k2 + k3) first, as torchdiffeq's left-to-right sum does), so the 4th evaluation
    holds no earlier stage derivative; the result is torchdiffeq's to the bit."""
    import weakref

    from odedet.ode.fixed_grid import integrate

    torch.manual_seed(0)
    dyn = ConvODEFunc(8, norm="GN", gn_groups=4, zero_init=False).eval()
    x = torch.randn(1, 8, 5, 5)
    made, alive_at_call = [], []

    def func(t, ys):
        alive_at_call.append(sum(r() is not None for r in made))
        out = dyn(t, ys[0])
        made.append(weakref.ref(out))
        return [out]

    grid = torch.tensor([0.0, 0.5, 1.0])
    with torch.no_grad():
        y = integrate("rk4", func, [x], grid, 1)[0]
        ref = odeint(dyn, x, torch.tensor([0.0, 1.0]), method="rk4",
                     options=dict(step_size=0.5))[-1]
    assert torch.equal(y, ref)
    # calls 2 and 3 need k1 (and k2); call 4 of each step finds none alive
    assert alive_at_call == [0, 1, 2, 0, 0, 1, 2, 0]


def test_a_step_increment_is_released_before_the_next_step_evaluates():
    """With unit Euler steps the increment is f's output itself: none of the earlier steps'
    outputs may still be alive when f is evaluated again (each would be a full state map)."""
    import weakref

    from odedet.ode.fixed_grid import grid_steps, integrate

    torch.manual_seed(0)
    dyn = ConvODEFunc(8, norm="GN", gn_groups=4, zero_init=False).eval()
    x = torch.randn(1, 8, 5, 5)
    made, alive_at_call = [], []

    def func(t, ys):
        alive_at_call.append(sum(r() is not None for r in made))
        out = dyn(t, ys[0])
        made.append(weakref.ref(out))
        return [out]

    steps = grid_steps(torch.tensor([0.0, 1.0, 2.0, 3.0]), find_unit=True)
    assert all(unit for *_, unit in steps)  # so the increment is f's output, not dt * f
    with torch.no_grad():
        y = integrate("euler", func, [x], steps, 1)[0]
        ref = odeint(dyn, x, torch.tensor([0.0, 3.0]), method="euler",
                     options=dict(step_size=1.0))[-1]
    assert torch.equal(y, ref)
    assert alive_at_call == [0, 0, 0]


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_adjoint_block_keeps_no_reference_to_its_input_until_backward(method):
    """With the adjoint, nothing between the forward and backward pass holds the block input's
    storage (a full feature map per block): the nested graph is entered by a gradient edge, not
    by a leaf holding the input. Gradients still reach the input (and equal
    torchdiffeq's adjoint ones)."""
    torch.manual_seed(0)
    dyn = ConvODEFunc(8, norm="GN", gn_groups=4, zero_init=False)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    img = torch.randn(2, 3, 6, 6, requires_grad=True)
    opts = SolverOptions(method, step_size=0.5, rtol=1e-6, atol=1e-6, adjoint=True)
    block = ODEBlock(dyn, t_end=1.0, train_solver=opts).train()

    x = conv(img)
    storage = x.untyped_storage()
    y = block(x)
    del x
    if method == "rk4":  # torchdiffeq's own adjoint saves its solution, y(0) included
        assert torch._C._storage_Use_Count(storage._cdata) == 1  # only `storage` here
    g_img, g_w = torch.autograd.grad(y.square().sum(), (img, conv.weight))
    kw = opts.torchdiffeq_kwargs()  # what the block passes torchdiffeq (dopri5: seminorm, guard)
    if method == "rk4":
        kw = dict(method=method, options=dict(step_size=0.5), adjoint_options=dict(step_size=0.5))
    ref = odeint_adjoint(dyn, conv(img), torch.tensor([0.0, 1.0]),
                         adjoint_params=tuple(dyn.parameters()), **kw)[-1]
    r_img, r_w = torch.autograd.grad(ref.square().sum(), (img, conv.weight))
    if method == "rk4":  # the lean fixed-grid adjoint: torchdiffeq's numbers exactly
        assert torch.equal(g_img, r_img) and torch.equal(g_w, r_w)
    else:
        torch.testing.assert_close(g_img, r_img, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g_w, r_w, rtol=1e-5, atol=1e-6)


class _Watching(nn.Module):
    """Dynamics that record, at each evaluation under autograd (the adjoint's backward solve),
    how many references the watched storage has (1 = only the test's own)."""

    def __init__(self, f):
        super().__init__()
        self.f, self.watch, self.counts = f, None, []

    def forward(self, t, h):
        if self.watch is not None and torch.is_grad_enabled():
            self.counts.append(torch._C._storage_Use_Count(self.watch._cdata))
        return self.f(t, h)


def _release_block(method, step, t_end, release):
    torch.manual_seed(0)
    dyn = _Watching(ConvODEFunc(8, norm="GN", gn_groups=4, zero_init=False))
    opts = SolverOptions(method, step_size=step, adjoint=True, release_end_state=release)
    return dyn, ODEBlock(dyn, t_end=t_end, train_solver=opts).train()


@pytest.mark.parametrize("method", FAST_METHODS)
@pytest.mark.parametrize("step,t_end", [(0.3, 1.0), (1.0, 2.0)])
def test_release_end_state_same_numbers_and_frees_h_T_after_the_first_backward_step(
        method, step, t_end):
    """MODEL.ODE.RELEASE_END_STATE: torchdiffeq's adjoint numbers to the bit, and h(T) (a full
    feature map per block) is no longer referenced from the second backward step on; without
    the option the node keeps it to the end of its backward pass."""
    torch.manual_seed(1)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    stages = {"euler": 1, "midpoint": 2, "rk4": 4}[method]
    for release in (False, True):
        dyn, block = _release_block(method, step, t_end, release)
        ref_y, ref_g, _ = _reference(dyn.f, x, method, step, t_end, adjoint=True)
        y = block(x)
        assert torch.equal(y, ref_y)
        w = torch.linspace(-1, 1, y.numel()).view_as(y)
        loss = (y * w).sum()  # saves w only: after `del y` the adjoint node alone holds h(T)
        dyn.watch = y.untyped_storage()
        del y
        g = torch.autograd.grad(loss, (x, *dyn.f.parameters()))
        for a, b in zip(g, ref_g):
            assert torch.equal(a, b), (a - b).abs().max()
        first, later = dyn.counts[:stages], dyn.counts[stages:]
        assert later, "the grid must have at least two steps"
        assert all(c > 1 for c in first)  # step 1 reads h(T)
        if release:
            assert all(c == 1 for c in later), dyn.counts
        else:
            assert all(c > 1 for c in later), dyn.counts


def test_release_end_state_refuses_a_second_backward_and_an_in_place_change():
    from odedet.ode.fixed_grid import odeint_fixed_adjoint

    torch.manual_seed(0)
    dyn = ConvODEFunc(8, norm="GN", gn_groups=4, zero_init=False)
    x = torch.randn(1, 8, 5, 5, requires_grad=True)
    params = tuple(dyn.parameters())
    for release in (False, True):
        y = odeint_fixed_adjoint(dyn, x, 1.0, 0.5, "rk4", params, release_end_state=release)
        first = torch.autograd.grad(y.sum(), x, retain_graph=True)[0]
        if release:
            with pytest.raises(RuntimeError, match="RELEASE_END_STATE"):
                torch.autograd.grad(y.sum(), x)
        else:  # off: a retained graph backpropagates again, as autograd's own
            assert torch.equal(torch.autograd.grad(y.sum(), x)[0], first)
    y = odeint_fixed_adjoint(dyn, x, 1.0, 0.5, "rk4", params, release_end_state=True)
    y.mul_(2)  # h(T) itself changed: its adjoint would start from the wrong state
    with pytest.raises(RuntimeError, match="in-place"):
        y.sum().backward()
    with pytest.raises(ValueError, match="release_end_state"):
        SolverOptions("rk4", step_size=0.5, release_end_state="yes")


@pytest.mark.parametrize("release", [False, True])
def test_adjoint_block_says_why_a_second_backward_fails(release):
    """The block's guard frees its nested graph after the backward pass: a second one
    (retain_graph) names the block and the key to change, not a bare TypeError."""
    _, block = _release_block("rk4", 0.5, 1.0, release)
    block.name = "res3"
    x = torch.randn(1, 8, 5, 5, requires_grad=True)
    y = block(x)
    y.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="'res3' a second time.*MODEL.ODE.ADJOINT"):
        y.sum().backward()


@pytest.mark.parametrize("method", FAST_METHODS)
@pytest.mark.parametrize("chunk", [1, 2])
def test_chunked_adjoint_backward_same_gradients_and_counts(method, chunk):
    """MODEL.ODE.ADJOINT_CHUNK: the backward solve a few images at a time gives the whole-batch
    gradients (float tolerance: parameter gradients are summed per chunk), the same forward
    output to the bit, one backward f-evaluation per whole-batch evaluation, and works with
    RELEASE_END_STATE and a batch that is not a multiple of the chunk."""
    torch.manual_seed(0)
    # float64, so that the summation order of the parameter gradients (per chunk, then over
    # chunks) is the only difference, far below the tolerance
    x = torch.randn(3, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    results = []
    for c in (0, chunk):
        torch.manual_seed(0)
        dyn = _Watching(ConvODEFunc(8, norm="GN", gn_groups=4, zero_init=False).double())
        opts = SolverOptions(method, step_size=0.3, adjoint=True, release_end_state=bool(c),
                             adjoint_chunk=c)
        block = ODEBlock(dyn, t_end=1.0, train_solver=opts).train()
        y = block(x)
        g = _grads(dyn.f, x, y)
        results.append((y.detach(), g, (block.nfe_forward, block.nfe_backward)))
    (y0, g0, n0), (y1, g1, n1) = results
    assert torch.equal(y0, y1) and n0 == n1 and n1[1] == n1[0]
    for a, b in zip(g0, g1):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    # (chunk 0 = torchdiffeq's adjoint to the bit: test_fast_path_equals_torchdiffeq_exactly)


def test_chunked_adjoint_refuses_batchnorm_dynamics_and_adaptive_methods():
    dyn = ConvODEFunc(8, norm="BN", zero_init=False)
    block = ODEBlock(dyn, name="res2", train_solver=SolverOptions(
        "rk4", step_size=0.5, adjoint=True, adjoint_chunk=1)).train()
    with pytest.raises(ValueError, match="ADJOINT_CHUNK = 1.*'res2'.*BatchNorm2d"):
        block(torch.randn(2, 8, 5, 5, requires_grad=True))
    block.eval()  # eval: no adjoint, nothing to refuse
    block(torch.randn(2, 8, 5, 5))
    with pytest.raises(ValueError, match="adjoint_chunk = 1 needs one of"):
        SolverOptions("dopri5", adjoint=True, adjoint_chunk=1)
    with pytest.raises(ValueError, match="adjoint_chunk must be an integer >= 0"):
        SolverOptions("rk4", step_size=0.5, adjoint_chunk=-1)

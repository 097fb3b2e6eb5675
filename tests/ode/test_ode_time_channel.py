"""ConcatConv2d's savings (time term skipped at t = 0, time map cached outside autograd) keep
the function, its gradients and the state-dict keys of the explicit time-channel convolution."""
import pytest
import torch

from odedet.ode import ConcatConv2d, ConvODEFunc


def _explicit(conv, t, x):
    """The reference ODE-Net's concat: a constant channel t in front of x, one wide conv."""
    return conv.conv(torch.cat([torch.full_like(x[:, :1], float(t)), x], 1))


@pytest.mark.parametrize("t", [0, 0.0, torch.tensor(0.0), torch.tensor(0.5), 1.0])
def test_matches_explicit_concat_in_eval_and_training(t):
    torch.manual_seed(0)
    conv = ConcatConv2d(4, 6, 3)
    x = torch.randn(2, 4, 9, 7)
    with torch.no_grad():
        assert torch.allclose(conv(t, x), _explicit(conv, t, x), atol=1e-6)
        assert torch.allclose(conv(t, x), _explicit(conv, t, x), atol=1e-6)  # from the cache
    xg = x.clone().requires_grad_(True)
    conv(t, xg).square().sum().backward()
    grads = [p.grad.clone() for p in conv.parameters()] + [xg.grad.clone()]
    conv.zero_grad()
    xr = x.clone().requires_grad_(True)
    _explicit(conv, t, xr).square().sum().backward()
    for a, b in zip(grads, [p.grad for p in conv.parameters()] + [xr.grad]):
        assert torch.allclose(a, b, atol=1e-5)


def test_cache_follows_weight_updates_size_and_state_dict_loads():
    torch.manual_seed(0)
    conv = ConcatConv2d(3, 5, 3)
    x, t = torch.randn(1, 3, 8, 8), torch.tensor(0.7)
    with torch.no_grad():
        conv(t, x)
        conv.conv.weight.add_(0.5)  # an optimizer step changes the weights in place
        assert torch.allclose(conv(t, x), _explicit(conv, t, x), atol=1e-5)
        other = ConcatConv2d(3, 5, 3)
        conv.load_state_dict(other.state_dict())
        assert torch.allclose(conv(t, x), _explicit(other, t, x), atol=1e-5)
        y = torch.randn(1, 3, 5, 6)  # another spatial size
        assert torch.allclose(conv(t, y), _explicit(conv, t, y), atol=1e-5)
    assert set(conv.state_dict()) == {"conv.weight", "conv.bias"}  # old checkpoints load


def test_state_weight_cache_is_contiguous_and_never_stale():
    torch.manual_seed(0)
    conv = ConcatConv2d(3, 5, 3)
    x, t = torch.randn(1, 3, 8, 8), torch.tensor(0.7)
    with torch.no_grad():
        w = conv.state_weight()
        assert w.is_contiguous() and torch.equal(w, conv.conv.weight[:, 1:])
        assert conv.state_weight() is w  # cached
        conv.conv.weight.mul_(2.0)  # in-place update
        assert torch.equal(conv.state_weight(), conv.conv.weight[:, 1:])
        # a new parameter object (load_state_dict(assign=True), user code) is never mistaken
        # for the old one, even at a reused address
        conv.conv.weight = torch.nn.Parameter(torch.randn_like(conv.conv.weight))
        assert torch.equal(conv.state_weight(), conv.conv.weight[:, 1:])
        assert torch.allclose(conv(t, x), _explicit(conv, t, x), atol=1e-5)
    # under autograd the slice is part of the graph: gradients reach the weight
    conv(t, x).sum().backward()
    assert conv.conv.weight.grad is not None and conv.conv.weight.grad[:, 1:].abs().sum() > 0


def test_inference_mode_cache_does_not_leak_into_a_later_graph():
    """Frozen weights (requires_grad False) evaluated under inference_mode, then trained with
    grad enabled: the input's backward needs the weight, which must not be an inference tensor."""
    torch.manual_seed(0)
    conv = ConcatConv2d(3, 5, 3)
    conv.requires_grad_(False)
    x, t = torch.randn(1, 3, 8, 8), torch.tensor(0.5)
    with torch.inference_mode():
        conv(t, x)
    xg = x.clone().requires_grad_(True)
    conv(t, xg).square().sum().backward()
    assert xg.grad is not None
    with torch.no_grad():  # and a no_grad call after inference_mode gets a normal tensor
        conv(t, x)
        assert not conv.state_weight().is_inference()


def test_dynamics_equal_explicit_reference_at_solver_times():
    torch.manual_seed(0)
    f = ConvODEFunc(8, norm="GN", gn_groups=4).eval()
    h = torch.randn(2, 8, 6, 6)

    def reference(t, h):
        out = _explicit(f.conv1, t, torch.relu(f.norm1(h)))
        out = _explicit(f.conv2, t, torch.relu(f.norm2(out)))
        return f.norm3(out)

    with torch.no_grad():
        for t in (torch.tensor(0.0), torch.tensor(1 / 3), torch.tensor(0.5), torch.tensor(1.0)):
            assert torch.allclose(f(t, h), reference(t, h), atol=1e-5)


def test_training_mode_keeps_no_time_map_and_gives_the_same_numbers():
    """In training the weights change every iteration: a kept (1, C, H, W) map per layer would
    only stay alive through the backward pass (184 MB at 2 x 800x1333 for ODE-ResNet-50).
    Training-mode no_grad calls (the adjoint's forward solve) compute it per call instead; eval
    keeps it; switching back to training frees it. The numbers are the same either way."""
    torch.manual_seed(0)
    conv = ConcatConv2d(3, 5, 3)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor(0.5)
    with torch.no_grad():
        conv.train()
        trained = conv(t, x)
        assert conv._time_map_cache is None
        conv.eval()
        evaluated = conv(t, x)
        assert conv._time_map_cache is not None  # eval: kept per spatial size
        assert torch.equal(conv(t, x), evaluated)
    assert torch.equal(trained, evaluated)
    conv.train()
    assert conv._time_map_cache is None

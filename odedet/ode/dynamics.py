"""Dynamics f(t, h) for feature maps: the right-hand sides that ODE blocks integrate.

All dynamics take ``(t, h)`` with ``t`` a scalar tensor and ``h`` of shape (N, C, H, W), and
return a tensor shaped like ``h``. Time enters as an extra constant input channel of every
convolution, as in the reference ODE-Net (torchdiffeq's ``examples/odenet_mnist.py``).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _gn_groups(channels: int, groups: int) -> int:
    """The largest divisor of ``channels`` that is <= ``groups``."""
    g = max(1, min(groups, channels))
    while channels % g:
        g -= 1
    return g


def make_norm(norm: str, channels: int, gn_groups: int = 32) -> nn.Module:
    """Normalisation inside dynamics: "GN", "BN" or "" (identity)."""
    if norm == "GN":
        return nn.GroupNorm(_gn_groups(channels, gn_groups), channels)
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm in ("", "none", None):
        return nn.Identity()
    raise ValueError(f"Unknown ODE dynamics norm {norm!r} (MODEL.ODE.NORM): use 'GN', 'BN' or ''")


class ConcatConv2d(nn.Module):
    """A convolution whose input gets one extra channel filled with the time ``t``.

    Implemented as ``conv(h) + t * conv_t(1)``: convolving a constant channel with zero padding
    gives a fixed map (``time_map``), so the time channel costs a scaled add instead of a
    concatenation and a wider convolution. Same function and parameters as concatenating.

    Two more savings, both exact: at ``t == 0`` (every solver's first evaluation, the only one
    of a 1-step Euler solve) the time term is zero and is skipped; and outside autograd
    (``torch.no_grad``) the state channels' weight is kept as a contiguous copy, and in eval
    mode also ``time_map`` per spatial size, both keyed on the weight's version so an optimizer
    step or ``load_state_dict`` invalidates them. The state dict is unchanged
    (``conv.weight`` holds the time channel as input channel 0).

    In training mode ``time_map`` is never kept: the weights change every iteration, so a kept
    map would serve one forward solve and then stay alive, a (1, C_out, H, W) map per layer,
    through that iteration's whole backward pass (at 2 x 800x1333 the ODE-ResNet-50's layers
    held 184 MB this way: the peak's difference between a 1-step solve, which never forms a
    time map, and a multi-step one). Recomputing it costs one 1-channel convolution per call,
    1/C_in of the layer's own.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, bias=True):
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_channels + 1, out_channels, kernel_size, stride, padding, bias=bias)
        self._time_map_cache = None  # (weight, key, map): not a buffer, never saved
        self._state_weight_cache = None  # (weight, key, weight[:, 1:] contiguous): likewise

    def forward(self, t, x):
        out = F.conv2d(x, self.state_weight(), self.conv.bias, self.conv.stride, self.conv.padding)
        if _is_zero_time(t):
            return out
        # in place: the convolution's backward does not need its output, so the sum takes no
        # second full-size tensor (same numbers as out + t * time_map)
        return out.add_(t * self.time_map(x))

    def train(self, mode: bool = True):
        if mode:  # a map kept in eval is not used in training: free it
            self._time_map_cache = None
        return super().train(mode)

    def state_weight(self):
        """The weight's state channels ``weight[:, 1:]``. That slice is not contiguous, and the
        CPU convolutions copy it on every call (measured: 28% of a 256-channel 4x4 conv); outside
        autograd a contiguous copy is kept, keyed on the weight's storage and version like
        ``time_map``, so an optimizer step or ``load_state_dict`` refreshes it."""
        w = self.conv.weight
        if torch.is_grad_enabled():  # part of the graph (or saved for the input's backward)
            return w[:, 1:]
        key = _cache_key(w)
        cache = self._state_weight_cache
        if cache is None or cache[0] is not w or cache[1] != key:
            cache = self._state_weight_cache = (w, key, w.detach()[:, 1:].contiguous())
        return cache[2]

    def time_map(self, x):
        """conv_t applied to a ones channel of x's spatial size (boundary effects included)."""
        w = self.conv.weight
        # under autograd part of the graph (or saved for the input's backward); in training
        # never kept (see the class doc)
        if torch.is_grad_enabled() or self.training:
            return self._compute_time_map(x)
        key = (x.shape[-2], x.shape[-1], x.dtype, x.device, *_cache_key(w))
        cache = self._time_map_cache
        if cache is None or cache[0] is not w or cache[1] != key:
            cache = self._time_map_cache = (w, key, self._compute_time_map(x))
        return cache[2]

    def _compute_time_map(self, x):
        ones = x.new_ones(1, 1, x.shape[-2], x.shape[-1])
        return F.conv2d(ones, self.conv.weight[:, :1], None, self.conv.stride, self.conv.padding)


def _cache_key(w: torch.Tensor) -> tuple:
    """What a tensor derived from ``w`` outside autograd depends on, besides ``w`` itself (the
    caches also hold ``w`` and compare it by identity, so a new parameter at a reused address
    never matches): its storage and in-place version (optimizer steps, ``load_state_dict``,
    ``.to()``), and whether it was made under ``torch.inference_mode`` (an inference tensor must
    not reach a graph built later)."""
    return (w.data_ptr(), w._version, w.dtype, w.device, torch.is_inference_mode_enabled())


def _is_zero_time(t) -> bool:
    """True if ``t`` is exactly 0 and skipping ``t * time_map`` changes nothing: a Python
    number, or a CPU tensor that needs no gradient (reading a CUDA tensor would synchronise)."""
    if isinstance(t, (int, float)):
        return t == 0
    if isinstance(t, torch.Tensor) and t.device.type == "cpu" and not t.requires_grad:
        return t.numel() == 1 and t.item() == 0
    return False


class ConvODEFunc(nn.Module):
    """The paper's reference dynamics: norm-ReLU-conv3x3(t), norm-ReLU-conv3x3(t), norm.

    Args:
        channels: state channels C (input and output).
        norm: "GN", "BN" or "".
        gn_groups: GroupNorm groups.
        zero_init: start the last norm's scale at 0 so f = 0 and the block is the identity at
            initialisation (the ODE analogue of zero-init residuals). Off by default, as in the
            reference ODE-Net: measured here, zero-init dynamics stay near zero through short
            from-scratch schedules (last-norm scales 0.001-0.014 after 400 detection
            iterations), so the ODE blocks hardly contribute.
    """

    def __init__(self, channels: int, *, norm: str = "GN", gn_groups: int = 32, zero_init=False):
        super().__init__()
        self.norm1 = make_norm(norm, channels, gn_groups)
        self.conv1 = ConcatConv2d(channels, channels, 3)
        self.norm2 = make_norm(norm, channels, gn_groups)
        self.conv2 = ConcatConv2d(channels, channels, 3)
        self.norm3 = make_norm(norm, channels, gn_groups)
        _zero_last_norm(self.norm3, zero_init)

    def forward(self, t, h):
        out = self.conv1(t, F.relu(self.norm1(h)))
        out = self.conv2(t, F.relu(self.norm2(out)))
        return self.norm3(out)


class BottleneckODEFunc(nn.Module):
    """Bottleneck dynamics with ResNet-50 widths: 1x1 (C->B), 3x3 (B->B), 1x1 (B->C).

    Pre-activation order (norm, ReLU, conv with time channel) as in :class:`ConvODEFunc`, with
    a final norm. For res4 of ResNet-50, C = 1024 and B = 256.
    """

    def __init__(
        self, channels: int, bottleneck_channels: int, *, norm: str = "GN", gn_groups: int = 32,
        zero_init=False,
    ):
        super().__init__()
        b = bottleneck_channels
        self.norm1 = make_norm(norm, channels, gn_groups)
        self.conv1 = ConcatConv2d(channels, b, 1)
        self.norm2 = make_norm(norm, b, gn_groups)
        self.conv2 = ConcatConv2d(b, b, 3)
        self.norm3 = make_norm(norm, b, gn_groups)
        self.conv3 = ConcatConv2d(b, channels, 1)
        self.norm4 = make_norm(norm, channels, gn_groups)
        _zero_last_norm(self.norm4, zero_init)

    def forward(self, t, h):
        out = self.conv1(t, F.relu(self.norm1(h)))
        out = self.conv2(t, F.relu(self.norm2(out)))
        out = self.conv3(t, F.relu(self.norm3(out)))
        return self.norm4(out)


def _zero_last_norm(norm: nn.Module, zero_init: bool):
    if zero_init and getattr(norm, "weight", None) is not None:
        nn.init.zeros_(norm.weight)


def build_dynamics(
    kind: str, channels: int, *, bottleneck_channels: int | None = None, norm: str = "GN",
    gn_groups: int = 32, zero_init: bool = False,
) -> nn.Module:
    """Dynamics by name: "basic" (:class:`ConvODEFunc`) or "bottleneck"."""
    if kind == "basic":
        return ConvODEFunc(channels, norm=norm, gn_groups=gn_groups, zero_init=zero_init)
    if kind == "bottleneck":
        if not bottleneck_channels:
            raise ValueError("bottleneck dynamics need bottleneck_channels > 0")
        return BottleneckODEFunc(
            channels, bottleneck_channels, norm=norm, gn_groups=gn_groups, zero_init=zero_init
        )
    raise ValueError(f"Unknown ODE dynamics {kind!r} (MODEL.ODE.DYNAMICS): use 'basic' or 'bottleneck'")


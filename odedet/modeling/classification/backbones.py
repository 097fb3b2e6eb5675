"""Small classification backbones: the ODE-Net paper's MNIST family and CIFAR-scale ResNets.

Both are detectron2 ``Backbone`` s registered in ``BACKBONE_REGISTRY``, so a classifier is
always "``build_backbone(cfg)`` + pooled linear head" (:class:`ImageClassifier`), whichever
backbone it uses, and their state dicts use detectron2's naming (``stem.*``, ``res2.0.*``).
Every ODE block comes from :mod:`odedet.ode`.
"""
from __future__ import annotations

from detectron2.layers import CNNBlockBase, Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.resnet import BasicBlock, ResNet
from torch import nn
from torch.nn import functional as F

from odedet.ode import ODEBlock, build_dynamics, make_norm, solver_options_from_cfg


def build_ode_block_from_cfg(cfg, channels: int) -> ODEBlock:
    """One ODE block on ``channels`` state channels with the paper's "basic" dynamics, its
    norm, time interval, augmentation and train/test solvers from ``MODEL.ODE.*``."""
    ode = cfg.MODEL.ODE
    dynamics = build_dynamics(
        "basic", channels + ode.AUGMENT_CHANNELS, norm=ode.NORM, gn_groups=ode.GN_GROUPS,
        zero_init=ode.ZERO_INIT,
    )
    return ODEBlock(
        dynamics, t_end=ode.T_END, train_solver=solver_options_from_cfg(cfg, "TRAIN"),
        test_solver=solver_options_from_cfg(cfg, "TEST"), augment_channels=ode.AUGMENT_CHANNELS,
    )


class PreActBlock(nn.Module):
    """torchdiffeq's reference ``ResBlock``: x + conv(relu(norm(conv(relu(norm(x))))))."""

    def __init__(self, channels: int, *, norm: str = "GN", gn_groups: int = 32):
        super().__init__()
        self.norm1 = make_norm(norm, channels, gn_groups)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, channels, gn_groups)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(out)))


class MNISTPaperNet(Backbone):
    """Chen et al. (2018) Table 1 network minus its linear head (torchdiffeq's odenet_mnist.py).

    Stem: conv3x3 (no padding), norm-ReLU, conv4x4/2, norm-ReLU, conv4x4/2 (28x28 -> 6x6).
    Then ``blocks`` (6 :class:`PreActBlock` s for the ResNet, one ODEBlock for RK-Net/ODE-Net),
    then norm-ReLU. Output: {"res2": (N, width, H/4 - 1, W/4 - 1)} at stride 4.
    """

    def __init__(self, *, in_channels: int, width: int, blocks: nn.Module, norm="GN", gn_groups=32):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1), make_norm(norm, width, gn_groups), nn.ReLU(),
            nn.Conv2d(width, width, 4, 2, 1), make_norm(norm, width, gn_groups), nn.ReLU(),
            nn.Conv2d(width, width, 4, 2, 1),
        )
        self.res2 = blocks
        self.out_norm = make_norm(norm, width, gn_groups)
        self._out_features = ["res2"]
        self._out_feature_channels = {"res2": width}
        self._out_feature_strides = {"res2": 4}

    def forward(self, x):
        return {"res2": F.relu(self.out_norm(self.res2(self.stem(x))))}


@BACKBONE_REGISTRY.register()
def build_mnist_paper_backbone(cfg, input_shape: ShapeSpec):
    """The paper's MNIST backbone; ``MODEL.MNIST_NET.BLOCK`` "residual" (ResNet) or "ode"
    (RK-Net when ``MODEL.ODE.ADJOINT`` is False, ODE-Net when True)."""
    c = cfg.MODEL.MNIST_NET
    if c.BLOCK == "residual":
        blocks = nn.Sequential(
            *[PreActBlock(c.WIDTH, norm=c.NORM, gn_groups=c.GN_GROUPS) for _ in range(c.NUM_BLOCKS)]
        )
    elif c.BLOCK == "ode":
        blocks = build_ode_block_from_cfg(cfg, c.WIDTH)
    else:
        raise ValueError(f"MODEL.MNIST_NET.BLOCK must be 'residual' or 'ode', got {c.BLOCK!r}")
    return MNISTPaperNet(
        in_channels=input_shape.channels, width=c.WIDTH, blocks=blocks, norm=c.NORM,
        gn_groups=c.GN_GROUPS,
    )


class CIFARStem(CNNBlockBase):
    """conv3x3 (stride 1) + norm + ReLU: the CIFAR ResNet stem (no max-pool, 32x32 stays 32x32)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 16, norm: str = "BN"):
        super().__init__(in_channels, out_channels, 1)
        self.conv1 = Conv2d(
            in_channels, out_channels, 3, padding=1, bias=False, norm=get_norm(norm, out_channels)
        )

    def forward(self, x):
        return F.relu_(self.conv1(x))


class ODEStageBlock(CNNBlockBase):
    """A ResNet stage's residual blocks after the transition, replaced by one ODE block, then
    norm + ReLU so the next stage gets post-activated features like from a BasicBlock."""

    def __init__(self, channels: int, ode_block: ODEBlock, norm: str = "BN"):
        super().__init__(channels, channels, 1)
        self.ode = ode_block
        self.norm = get_norm(norm, channels)

    def forward(self, x):
        return F.relu(self.norm(self.ode(x)))


@BACKBONE_REGISTRY.register()
def build_cifar_resnet_backbone(cfg, input_shape: ShapeSpec):
    """He et al. (2016) CIFAR ResNet-(6n+2) on detectron2's ``ResNet``/``BasicBlock``: stem
    conv3x3, stages res2/res3/res4 of n basic blocks at widths W/2W/4W and strides 1/2/4.

    With ``MODEL.CIFAR_RESNET.ODE`` each stage is a transition BasicBlock + one ODE block, the
    same network for every depth (depth is continuous in an ODE-Net).
    """
    c = cfg.MODEL.CIFAR_RESNET
    if c.DEPTH < 8 or (c.DEPTH - 2) % 6:
        raise ValueError(f"MODEL.CIFAR_RESNET.DEPTH must be 6n+2 (20, 56, 110), got {c.DEPTH}")
    n = (c.DEPTH - 2) // 6
    stem = CIFARStem(input_shape.channels, c.WIDTH, c.NORM)
    stages, in_ch = [], c.WIDTH
    for i, width in enumerate((c.WIDTH, 2 * c.WIDTH, 4 * c.WIDTH)):
        stride = 1 if i == 0 else 2
        blocks = [BasicBlock(in_ch, width, stride=stride, norm=c.NORM)]
        if c.ODE:
            blocks.append(ODEStageBlock(width, build_ode_block_from_cfg(cfg, width), c.NORM))
        else:
            blocks += [BasicBlock(width, width, norm=c.NORM) for _ in range(n - 1)]
        stages.append(blocks)
        in_ch = width
    out_features = list(c.OUT_FEATURES) or ["res4"]
    return ResNet(stem, stages, out_features=out_features, freeze_at=c.FREEZE_AT)

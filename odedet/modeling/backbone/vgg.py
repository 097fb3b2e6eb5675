"""VGG-16 backbone (torchvision's layout), trained from scratch: the depth-estimation baseline
encoder of published work, with multi-scale outputs for a decoder's skip connections."""
from __future__ import annotations

from typing import Dict, List, Sequence

import fvcore.nn.weight_init as weight_init
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn
from torch.nn import functional as F

from odedet.ode import make_norm

VGG_FEATURE_NAMES = ("vgg1", "vgg2", "vgg3", "vgg4", "vgg5")


def _norm(norm: str, channels: int):
    """detectron2's norm by name, except "GN", whose 32 groups are clipped to a divisor of
    ``channels`` so that narrow layers (16, 48 channels) work."""
    if norm == "GN":
        return make_norm("GN", channels, 32)
    return get_norm(norm, channels)


class VGG(Backbone):
    """Five blocks of 3x3 conv(-norm)-ReLU layers, each ending in a 2x2 max-pool, as in
    torchvision's ``vgg16(_bn).features``. ``vggK`` is block K's pooled output: stride 2**K,
    ``channels[K-1]`` channels. The classifier (FC layers) is not part of a backbone.

    Args:
        channels: output channels of the five blocks (VGG-16: 64, 128, 256, 512, 512).
        convs_per_block: 3x3 convs in each block (VGG-16: 2, 2, 3, 3, 3).
        norm: detectron2 norm name after each conv ("" = original VGG, "BN" = vgg16_bn).
        in_channels: input channels.
        out_features: names among vgg1..vgg5 to return.
    """

    def __init__(
        self,
        *,
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        convs_per_block: Sequence[int] = (2, 2, 3, 3, 3),
        norm: str = "",
        in_channels: int = 3,
        out_features: Sequence[str] = VGG_FEATURE_NAMES,
    ):
        super().__init__()
        if len(channels) != 5 or len(convs_per_block) != 5:
            raise ValueError(
                f"VGG needs 5 blocks: MODEL.VGG.CHANNELS {list(channels)} and "
                f"MODEL.VGG.CONVS_PER_BLOCK {list(convs_per_block)} must have 5 entries each"
            )
        bad = [f for f in out_features if f not in VGG_FEATURE_NAMES]
        if bad or not out_features:
            raise ValueError(f"MODEL.VGG.OUT_FEATURES {list(out_features)} must name some of "
                             f"{VGG_FEATURE_NAMES}; unknown: {bad}")
        self._out_features = list(out_features)
        last = max(VGG_FEATURE_NAMES.index(f) for f in out_features) + 1
        self.blocks = nn.ModuleList()
        self._out_feature_channels, self._out_feature_strides = {}, {}
        prev = in_channels
        for k in range(last):  # blocks past the last requested output are not built
            layers = []
            for _ in range(convs_per_block[k]):
                conv = Conv2d(prev, channels[k], kernel_size=3, padding=1, bias=not norm,
                              norm=_norm(norm, channels[k]), activation=F.relu)
                weight_init.c2_msra_fill(conv)
                layers.append(conv)
                prev = channels[k]
            self.blocks.append(nn.Sequential(*layers))
            name = VGG_FEATURE_NAMES[k]
            self._out_feature_channels[name] = channels[k]
            self._out_feature_strides[name] = 2 ** (k + 1)

    def forward(self, x) -> Dict[str, "torch.Tensor"]:  # noqa: F821
        if x.dim() != 4:
            raise ValueError(f"VGG takes (N, C, H, W) inputs, got shape {tuple(x.shape)}")
        outputs = {}
        for k, block in enumerate(self.blocks):
            # ceil_mode keeps odd sizes' last row/column, so vggK is ceil(H / 2**K) high.
            x = F.max_pool2d(block(x), kernel_size=2, stride=2, ceil_mode=True)
            name = VGG_FEATURE_NAMES[k]
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name],
                            stride=self._out_feature_strides[name])
            for name in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_vgg_backbone(cfg, input_shape: ShapeSpec) -> VGG:
    """VGG from MODEL.VGG.* (CHANNELS, CONVS_PER_BLOCK, NORM, OUT_FEATURES)."""
    v = cfg.MODEL.VGG
    return VGG(
        channels=list(v.CHANNELS), convs_per_block=list(v.CONVS_PER_BLOCK), norm=v.NORM,
        in_channels=input_shape.channels, out_features=list(v.OUT_FEATURES),
    )


__all__: List[str] = ["VGG", "build_vgg_backbone", "VGG_FEATURE_NAMES"]

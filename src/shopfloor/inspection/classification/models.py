"""Image classifiers: input float32 NCHW RGB pixels in 0..255, output logits. Normalisation is inside."""

from __future__ import annotations

import torch
from torch import nn

from shopfloor.core.custom import ModelContract, build_user_model, is_user_model
from shopfloor.core.errors import ConfigError

from ..backbones import PixelNormalize, efficientnet_lite

CLASSIFIER_MODELS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "simple-cnn")


class EfficientNetClassifier(nn.Module):
    """ImageNet-pretrained EfficientNet-Lite features, average+max pooled, then a dropout + linear head.

    Max pooling next to the usual average keeps small, local defects visible in the pooled feature.
    """

    feature_dim = 2 * 1280

    def __init__(self, num_classes: int, backbone: str = "efficientnet-lite0", image_size: int = 224,
                 pretrained: bool = True, dropout: float = 0.2):
        super().__init__()
        self.normalize = PixelNormalize()
        self.backbone = efficientnet_lite(backbone, image_size, pretrained=pretrained)
        self.backbone._fc = nn.Identity()
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, num_classes))

    @property
    def cam_layer(self) -> nn.Module:
        """Layer whose activations Grad-CAM explains (the last conv block's BatchNorm)."""
        return self.backbone._bn1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N x feature_dim) of 0..255 images."""
        fmap = self.backbone.extract_features(self.normalize(x))
        return torch.cat([fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FeatureOutput(nn.Module):
    """Exports the frozen feature part of a classifier (used to train the head on cached features)."""

    def __init__(self, model: EfficientNetClassifier):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


class SimpleCNN(nn.Module):
    """The classic small CNN: Conv32-Pool-Conv64-Pool-Conv64-Dense64 (adaptive 4x4 pooling before Dense)."""

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.normalize = PixelNormalize()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(),
        )
        self.dense = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 16, 64), nn.ReLU(),
                                   nn.Linear(64, num_classes))

    @property
    def cam_layer(self) -> nn.Module:
        return self.conv[-2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.conv(self.normalize(x)))


class UserClassifier(nn.Module):
    """A user's network (``--model package.module:Class`` or a .yaml layer list) behind the same pixel
    normalisation as the built-ins: it gets (N, 3, H, W) RGB scaled to about -1..1 and returns (N, classes) logits."""

    def __init__(self, name: str, options: dict, num_classes: int, image_size: int):
        super().__init__()
        self.normalize = PixelNormalize()
        contract = ModelContract((3, image_size, image_size), num_classes, "RGB, (pixel - 127) / 128; gray images "
                                 "as three equal channels", "class logits")
        self.net = build_user_model(name, options, contract)

    @property
    def cam_layer(self) -> nn.Module:
        """The last 2D convolution of the user's network (what Grad-CAM explains)."""
        convs = [m for m in self.net.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ConfigError("this model has no 2D convolution for Grad-CAM to explain; predict without --explain")
        return convs[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def build_classifier(name: str, num_classes: int, image_size: int, pretrained: bool = True,
                     options: dict | None = None) -> nn.Module:
    """Classifier by CLI name (see ``CLASSIFIER_MODELS``), or a user model (class path / ``layers``)."""
    if is_user_model(name):
        return UserClassifier(name, options or {}, num_classes, image_size)
    if name == "simple-cnn":
        return SimpleCNN(num_classes)
    return EfficientNetClassifier(num_classes, backbone=name, image_size=image_size, pretrained=pretrained)

"""Image augmentation with the familiar Keras ImageDataGenerator knobs, built on kornia.

Applied to training batches only (float32 NCHW in 0..255), never at evaluation or inference.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from shopfloor.core.config import StrictModel

_PADDING = {"nearest": "border", "reflect": "reflection", "constant": "fill"}


class AugmentConfig(StrictModel):
    """Keras-style augmentation settings; ranges are symmetric (e.g. rotation_range=10 -> +/-10 degrees)."""

    enabled: bool = True
    rotation_range: float = Field(10.0, ge=0, le=180, description="degrees")
    width_shift_range: float = Field(0.05, ge=0, lt=1, description="fraction of the width")
    height_shift_range: float = Field(0.05, ge=0, lt=1, description="fraction of the height")
    shear_range: float = Field(0.0, ge=0, lt=90, description="degrees")
    zoom_range: float = Field(0.1, ge=0, lt=1, description="zoom factor in [1 - z, 1 + z]")
    horizontal_flip: bool = True
    vertical_flip: bool = True
    fill_mode: Literal["nearest", "constant", "reflect"] = "reflect"
    cval: float = Field(0.0, ge=0, le=255, description="fill value for fill_mode=constant, 0..255")
    brightness_range: float = Field(0.1, ge=0, lt=1, description="brightness factor in [1 - b, 1 + b]")


class ImageAugmenter(nn.Module):
    """kornia pipeline for a batch of 0..255 float images."""

    def __init__(self, config: AugmentConfig):
        super().__init__()
        import kornia.augmentation as K

        steps: list[nn.Module] = []
        if config.horizontal_flip:
            steps.append(K.RandomHorizontalFlip(p=0.5))
        if config.vertical_flip:
            steps.append(K.RandomVerticalFlip(p=0.5))
        geometric = any((config.rotation_range, config.width_shift_range, config.height_shift_range,
                         config.shear_range, config.zoom_range))
        if geometric:
            steps.append(K.RandomAffine(
                degrees=config.rotation_range,
                translate=(config.width_shift_range, config.height_shift_range),
                scale=(1 - config.zoom_range, 1 + config.zoom_range) if config.zoom_range else None,
                shear=config.shear_range or None,
                padding_mode=_PADDING[config.fill_mode],
                fill_value=torch.full((3,), config.cval / 255.0) if config.fill_mode == "constant" else None,
                p=0.8,
            ))
        if config.brightness_range:
            steps.append(K.RandomBrightness(brightness=(1 - config.brightness_range, 1 + config.brightness_range),
                                            p=0.8))
        self.pipeline = nn.Sequential(*steps) if config.enabled and steps else None

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pipeline is None:
            return x
        return (self.pipeline(x / 255.0) * 255.0).clamp(0, 255)

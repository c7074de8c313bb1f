"""Explanations of what an image model looked at: Grad-CAM via captum."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def gradcam(model: nn.Module, layer: nn.Module, images: np.ndarray, targets: list[int]) -> np.ndarray:
    """Grad-CAM heatmaps in 0..1, one HxW map per image, upsampled to the input size.

    ``images``: float32 Nx3xHxW model input; ``targets``: the class index to explain per image.
    """
    from captum.attr import LayerAttribution, LayerGradCam

    model = model.eval()
    x = torch.from_numpy(np.ascontiguousarray(images))
    cam = LayerGradCam(model, layer)
    maps = []
    for i in range(len(x)):
        attr = cam.attribute(x[i : i + 1], target=int(targets[i]), relu_attributions=True)
        up = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")
        m = up[0, 0].detach().numpy()
        maps.append(m / m.max() if m.max() > 0 else m)
    return np.stack(maps).astype(np.float32)

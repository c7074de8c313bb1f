"""How good generated images are, measured on the pretrained backbone's features (no download).

FID needs Inception weights, which are not available offline; we use the project's ImageNet-pretrained
EfficientNet-Lite0 (its pooled 1280-d features) instead, so figures are not comparable to published FID/KID values,
only between our own models and runs.

- **KID** (Binkowski et al. 2018): unbiased squared MMD with the cubic polynomial kernel between generated and
  real feature sets, averaged over subsets; 0 when the distributions agree, lower is better.
- **Precision / recall** (Kynkaenniemi et al. 2019): the share of generated samples inside the k-NN manifold of
  the real ones (fidelity) and of real samples inside the manifold of the generated ones (coverage).
- **Memorisation**: each generated sample's nearest training image in feature space. The ratio of the median
  nearest-training distance of generated samples to that of held-out real images is ~1 when the generator makes
  new images like the real ones, and falls towards 0 when it copies its training images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shopfloor.core.runtime import OnnxModel, export_onnx
from shopfloor.core.task import batched

from ..backbones import PixelNormalize, efficientnet_lite

FEATURE_BACKBONE = "efficientnet-lite0"


class PooledFeatures(nn.Module):
    """0..255 images (N, C, H, W; gray replicated to RGB) upsampled to ``size`` -> average-pooled backbone features."""

    def __init__(self, channels: int, size: int = 128, pretrained: bool = True):
        super().__init__()
        self.gray = channels == 1
        self.size = size
        self.normalize = PixelNormalize()
        self.backbone = efficientnet_lite(FEATURE_BACKBONE, size, pretrained=pretrained).eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.repeat(1, 3, 1, 1) if self.gray else images
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.backbone.extract_features(self.normalize(x)).mean(dim=(2, 3))


class FeatureExtractor:
    """:class:`PooledFeatures` through ONNX Runtime (several times faster than torch eager on a CPU)."""

    def __init__(self, channels: int, image_size: int, size: int = 128, device: str = "cpu"):
        module = PooledFeatures(channels, size).eval()
        example = torch.rand(2, channels, image_size, image_size) * 255
        self.runtime = OnnxModel(export_onnx(module, (example,), ["image"], ["features"]), device=device)

    def __call__(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Features of NCHW float 0..255 images."""
        if not len(images):
            return np.zeros((0, 1280), np.float32)
        return np.concatenate([self.runtime.run(image=np.asarray(images[sl], np.float32))["features"]
                               for sl in batched(len(images), batch_size)])


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, subset_size: int = 100, subsets: int = 50,
                              seed: int = 0) -> tuple[float, float]:
    """KID (mean, standard deviation over subsets) between feature sets ``real`` and ``fake`` (rows = samples)."""
    n = min(len(real), len(fake), subset_size)
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    d = real.shape[1]
    values = []
    for _ in range(subsets if n < max(len(real), len(fake)) else 1):
        x = real[rng.choice(len(real), n, replace=False)].astype(np.float64)
        y = fake[rng.choice(len(fake), n, replace=False)].astype(np.float64)
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off = 1 - np.eye(n)
        values.append((kxx * off).sum() / (n * (n - 1)) + (kyy * off).sum() / (n * (n - 1)) - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    dist = _pairwise(x, x)
    np.fill_diagonal(dist, np.inf)
    return np.sort(dist, axis=1)[:, min(k, len(x) - 1) - 1]


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (k-NN manifolds, k = 3 by default; k shrinks for tiny sets)."""
    if len(real) < 2 or len(fake) < 2:
        return float("nan"), float("nan")
    real_r, fake_r = _knn_radii(real, k), _knn_radii(fake, k)
    cross = _pairwise(fake, real)
    precision = float((cross <= real_r[None, :]).any(axis=1).mean())
    recall = float((cross.T <= fake_r[None, :]).any(axis=1).mean())
    return precision, recall


def nearest_neighbours(queries: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and distance of each query's nearest reference (feature space, Euclidean)."""
    dist = _pairwise(queries, references)
    index = dist.argmin(axis=1)
    return index, dist[np.arange(len(queries)), index]


def memorisation_ratio(fake: np.ndarray, held_out: np.ndarray, train: np.ndarray) -> float:
    """Median nearest-training distance of generated samples over that of held-out real images (see module)."""
    if not len(fake) or not len(held_out) or not len(train):
        return float("nan")
    return float(np.median(nearest_neighbours(fake, train)[1]) / max(np.median(nearest_neighbours(held_out, train)[1]),
                                                                      1e-12))


def class_quality(real: np.ndarray, fake: np.ndarray, train: np.ndarray | None = None) -> dict[str, Any]:
    """KID, precision, recall (and the memorisation ratio when ``train`` features are given) of one class."""
    kid, kid_std = kernel_inception_distance(real, fake)
    precision, recall = precision_recall(real, fake)
    row: dict[str, Any] = {"n_real": int(len(real)), "n_generated": int(len(fake)), "kid": kid, "kid_std": kid_std,
                           "precision": precision, "recall": recall}
    if train is not None:
        row["memorisation_ratio"] = memorisation_ratio(fake, real, train)
    return row

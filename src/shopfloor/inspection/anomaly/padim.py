"""PaDiM-style anomaly detection as a pure, exportable ``nn.Module``.

Each position of the patch-feature grid gets a Gaussian (mean and regularised inverse covariance)
fitted on good images; the patch score is the Mahalanobis distance to it. The statistics are
accumulated in streaming fashion (:class:`GaussianAccumulator`), so fitting memory does not grow
with the number of images. Features, map head and normalisation are shared with PatchCore.
"""

from __future__ import annotations

import torch
from torch import nn

from .patchcore import DEFAULT_BLOCKS, AnomalyMapHead, PatchFeatures


class GaussianAccumulator:
    """Running per-position sums for mean and covariance of ``[B, C, h, w]`` features (float64)."""

    def __init__(self, channels: int, positions: int):
        self.n = 0
        self.sum = torch.zeros(positions, channels, dtype=torch.float64)
        self.outer = torch.zeros(positions, channels, channels, dtype=torch.float64)

    def update(self, feats: torch.Tensor) -> None:
        b, c, h, w = feats.shape
        x = feats.detach().double().permute(2, 3, 0, 1).reshape(h * w, b, c)  # [P, B, C]
        self.n += b
        self.sum += x.sum(dim=1)
        self.outer += torch.bmm(x.transpose(1, 2), x)

    def finalize(self, regularization: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean ``[P, C]``, inverse covariance ``[P, C, C]``), covariance regularised by ``eps * I``."""
        if self.n < 2:
            raise ValueError("PaDiM needs at least 2 training images")
        mean = self.sum / self.n
        cov = (self.outer - self.n * mean.unsqueeze(2) * mean.unsqueeze(1)) / (self.n - 1)
        cov += regularization * torch.eye(cov.shape[-1], dtype=cov.dtype)
        # Cholesky: the covariance is symmetric positive definite; torch 2.13's batched LU (linalg.inv) fails with
        # "Pivots given to lu_solve..." once torch.set_num_threads has been changed in the process
        return mean.float(), torch.cholesky_inverse(torch.linalg.cholesky(cov)).float()


class Padim(nn.Module):
    """PaDiM-style detector; same input/output contract as :class:`~shopfloor.inspection.anomaly.patchcore.PatchCore`."""

    def __init__(self, backbone: str = "efficientnet-lite0", image_size: tuple[int, int] = (256, 256),
                 blocks: tuple[int, ...] = DEFAULT_BLOCKS, sigma: float = 4.0, pretrained: bool = True):
        super().__init__()
        self.extractor = PatchFeatures(backbone, image_size, blocks, pretrained)
        self.head = AnomalyMapHead(image_size, self.extractor.grid, sigma)
        c = self.extractor.channels
        h, w = self.extractor.grid
        self.register_buffer("mean", torch.zeros(h * w, c))
        self.register_buffer("inv_covariance", torch.eye(c).repeat(h * w, 1, 1))

    def accumulator(self) -> GaussianAccumulator:
        h, w = self.extractor.grid
        return GaussianAccumulator(self.extractor.channels, h * w)

    def set_gaussians(self, mean: torch.Tensor, inv_covariance: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.inv_covariance.copy_(inv_covariance)

    def patch_scores(self, images: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance of every patch to its position's Gaussian: ``[B, h, w]``."""
        return self.feature_scores(self.extractor(images))

    def feature_scores(self, feats: torch.Tensor) -> torch.Tensor:
        """Patch scores from already extracted features ``[B, C, h, w]``."""
        b, c, h, w = feats.shape
        delta = feats.permute(2, 3, 0, 1).reshape(h * w, b, c) - self.mean.unsqueeze(1)  # [P, B, C]
        left = torch.bmm(delta, self.inv_covariance)  # [P, B, C]
        d2 = (left * delta).sum(dim=2).clamp_min(0.0)  # [P, B]
        return torch.sqrt(d2).t().reshape(b, h, w)

    def raw(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.raw(self.patch_scores(images))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.patch_scores(images))

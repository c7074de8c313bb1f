"""The plain torch modules of defect synthesis: a class-conditional generator, a spectral-norm projection
discriminator, and the exported sampling graph.

No training logic lives here (see :mod:`.adversarial`); only :class:`SamplingGraph` (the EMA generator with its
output scaling) is exported.

>>> import torch
>>> g = Generator(n_classes=3, channels=1, image_size=64, latent_dim=32, width=8)
>>> g(torch.randn(2, 32), torch.tensor([0, 2])).shape
torch.Size([2, 1, 64, 64])
>>> d = Discriminator(n_classes=3, channels=1, image_size=64, width=8)
>>> d(torch.randn(2, 1, 64, 64), torch.tensor([0, 2])).shape
torch.Size([2])
>>> SamplingGraph(g)(torch.randn(2, 32), torch.tensor([1, 1])).shape  # 0..255 pixels
torch.Size([2, 1, 64, 64])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


def _stages(image_size: int) -> int:
    """Number of x2 stages from 4x4 to ``image_size`` (a power of two, 16..256)."""
    stages = int(round(math.log2(image_size))) - 2
    if 2 ** (stages + 2) != image_size or not 2 <= stages <= 6:
        raise ValueError(f"image_size must be a power of two from 16 to 256, got {image_size}")
    return stages


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit RMS (ProGAN): stable without batch statistics, so the
    generator behaves the same in training, sampling and the exported graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Generator(nn.Module):
    """Latent vector + class index -> image in -1..1 (NCHW).

    The class embedding is concatenated to the latent, mapped to a 4x4 map, then doubled in size per stage
    (4x4 transposed convolution with stride 2, LeakyReLU, PixelNorm; channels halve per stage from
    ``width * 2**stages``), and a 3x3 convolution to the image channels. DCGAN-sized, so it trains on a CPU.
    """

    def __init__(self, n_classes: int, channels: int = 1, image_size: int = 64, latent_dim: int = 64,
                 width: int = 16):
        super().__init__()
        stages = _stages(image_size)
        self.latent_dim = latent_dim
        self.n_classes = n_classes
        self.embed = nn.Embedding(n_classes, latent_dim)
        top = width * 2 ** stages
        self.project = nn.Linear(2 * latent_dim, top * 16)
        self.top = top
        blocks: list[nn.Module] = [PixelNorm(), nn.LeakyReLU(0.2)]
        c = top
        for _ in range(stages):
            blocks += [nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1), nn.LeakyReLU(0.2), PixelNorm()]
            c //= 2
        blocks += [nn.Conv2d(c, channels, 3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*blocks)

    def forward(self, latent: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
        x = torch.cat([latent, self.embed(class_index)], dim=1)
        return self.body(self.project(x).view(-1, self.top, 4, 4))


class MinibatchStd(nn.Module):
    """Append one channel holding the mean standard deviation of the features across the batch (ProGAN): the
    discriminator sees how varied a batch is, so a generator that ignores its latent (mode collapse) is caught."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(x.var(dim=0, unbiased=False) + 1e-8).mean()
        return torch.cat([x, std.expand(x.shape[0], 1, x.shape[2], x.shape[3])], dim=1)


class Discriminator(nn.Module):
    """Image in -1..1 + class index -> realness score (hinge loss): spectral-norm strided convolutions, a
    minibatch-standard-deviation channel, summed features, a linear output plus a class projection (Miyato &
    Koyama 2018)."""

    def __init__(self, n_classes: int, channels: int = 1, image_size: int = 64, width: int = 16):
        super().__init__()
        stages = _stages(image_size)
        layers: list[nn.Module] = []
        c_in, c = channels, width
        for _ in range(stages):
            layers += [spectral_norm(nn.Conv2d(c_in, c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
                       spectral_norm(nn.Conv2d(c, c, 3, padding=1)), nn.LeakyReLU(0.2)]
            c_in, c = c, c * 2
        layers += [MinibatchStd(), spectral_norm(nn.Conv2d(c_in + 1, c_in, 3, padding=1)), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.out = spectral_norm(nn.Linear(c_in, 1))
        self.embed = spectral_norm(nn.Embedding(n_classes, c_in))

    def forward(self, image: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
        h = self.body(image).sum(dim=(2, 3))
        return self.out(h).squeeze(1) + (self.embed(class_index) * h).sum(dim=1)


class ProjectedDiscriminator(nn.Module):
    """Realness scored on frozen ImageNet features (a lite Projected GAN, Sauer et al. 2021): the image (-1..1,
    gray repeated to RGB, resized to ``feature_size``) goes through the first blocks of the pretrained
    EfficientNet-Lite0; a small spectral-norm head per feature scale (strides 4, 8, 16) gives a linear score plus
    a class projection, summed over scales. Pretrained features give the generator a meaningful signal from the
    first step, where a discriminator learnt from scratch on tens of images needs thousands of steps (on NEU at
    k = 10 the plain one still scored generated images like real ones after 1,200 steps). The backbone stays
    frozen and in eval mode (its BatchNorm statistics never move); gradients flow through it to the generator."""

    BLOCKS = (2, 4, 10)

    def __init__(self, n_classes: int, channels: int = 1, feature_size: int = 64, width: int = 64,
                 pretrained: bool = True):
        super().__init__()
        from ..backbones import EfficientNetLiteFeatures, PixelNormalize, efficientnet_lite

        self.gray = channels == 1
        self.feature_size = feature_size
        self.normalize = PixelNormalize()
        self.features = EfficientNetLiteFeatures(efficientnet_lite("efficientnet-lite0", feature_size, pretrained),
                                                 list(self.BLOCKS)).eval().requires_grad_(False)
        with torch.no_grad():
            shapes = [f.shape[1] for f in self.features(torch.zeros(1, 3, feature_size, feature_size))]
        self.heads = nn.ModuleList(nn.Sequential(
            spectral_norm(nn.Conv2d(c, width, 1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(width, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)) for c in shapes)
        self.out = nn.ModuleList(spectral_norm(nn.Linear(width, 1)) for _ in shapes)
        self.embed = nn.ModuleList(spectral_norm(nn.Embedding(n_classes, width)) for _ in shapes)

    def train(self, mode: bool = True) -> "ProjectedDiscriminator":
        super().train(mode)
        self.features.eval()
        return self

    def backbone(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Frozen feature maps of images in -1..1 (no gradient to the backbone's weights, but to the image)."""
        x = (image + 1.0) * 127.5
        x = x.repeat(1, 3, 1, 1) if self.gray else x
        if x.shape[-1] != self.feature_size:
            x = F.interpolate(x, size=(self.feature_size, self.feature_size), mode="bilinear", align_corners=False)
        return self.features(self.normalize(x))

    def forward(self, image: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
        score = torch.zeros(image.shape[0], device=image.device)
        for f, head, out, embed in zip(self.backbone(image), self.heads, self.out, self.embed):
            h = head(f).sum(dim=(2, 3))
            score = score + out(h).squeeze(1) + (embed(class_index) * h).sum(dim=1)
        return score


class SamplingGraph(nn.Module):
    """What is exported: ``latent`` (N, latent_dim) float and ``class_index`` (N,) int64 -> ``image`` (N, C, H, W)
    in 0..255 float (the generator's -1..1 mapped to pixels inside the graph)."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, latent: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
        return ((self.generator(latent, class_index) + 1.0) * 127.5).clamp(0.0, 255.0)


class SynthesisModel(nn.Module):
    """The fitted model kept in the artifact: the generator trained by gradient descent and its exponential moving
    average (``ema``, the one that samples and is exported). The discriminator is a training tool and is not kept."""

    def __init__(self, n_classes: int, channels: int, image_size: int, latent_dim: int, width: int):
        super().__init__()
        self.generator = Generator(n_classes, channels, image_size, latent_dim, width)
        self.ema = Generator(n_classes, channels, image_size, latent_dim, width)
        self.ema.load_state_dict(self.generator.state_dict())
        self.ema.requires_grad_(False)

    @torch.no_grad()
    def update_ema(self, decay: float, step: int | None = None) -> None:
        """ema <- d * ema + (1 - d) * generator, with d = ``decay``, or with ``step`` (counted from 0) the warm-up
        d = min(decay, (1 + step) / (10 + step)): a short run's EMA is not dominated by the random initial weights
        (with 0.999 the average spans ~1000 steps)."""
        d = decay if step is None else min(decay, (1.0 + step) / (10.0 + step))
        for e, p in zip(self.ema.parameters(), self.generator.parameters()):
            e.lerp_(p.detach(), 1.0 - d)

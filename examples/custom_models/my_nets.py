"""Example user networks for `--model examples.custom_models.my_nets:ClassName` (run from the project root with
PYTHONPATH=. so the module is importable; a saved model needs it importable again when it is loaded).

A constructor argument named ``num_outputs`` (and/or ``input_shape``) is filled in by the task; other arguments
come from ``--model-options '{...}'``.
"""

from __future__ import annotations

import torch
from torch import nn


class TinyConvNet(nn.Module):
    """A small CNN for images: (N, 3, H, W) normalised pixels -> (N, num_outputs) logits, any image size."""

    def __init__(self, num_outputs: int, width: int = 16, dropout: float = 0.1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class TemporalConvNet(nn.Module):
    """Dilated 1D convolutions for sensor windows / vibration segments: (N, C, T) -> (N, num_outputs)."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, width: int = 32, levels: int = 3):
        super().__init__()
        channels = input_shape[0]
        layers: list[nn.Module] = []
        for level in range(levels):
            layers += [nn.Conv1d(channels, width, 3, padding=2 ** level, dilation=2 ** level), nn.ReLU()]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=2))


class TabularResNet(nn.Module):
    """Residual MLP for encoded table features (failure-prediction): (N, F) -> (N, num_outputs) logits."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, hidden: int = 64, blocks: int = 2):
        super().__init__()
        self.inp = nn.Linear(input_shape[0], hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU())
                                    for _ in range(blocks))
        self.out = nn.Linear(hidden, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.inp(x)
        for block in self.blocks:
            z = z + block(z)
        return self.out(z)

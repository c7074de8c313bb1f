"""Small exportable output heads that several tasks put on top of their networks."""

from __future__ import annotations

import torch
from torch import nn


class SoftmaxOutput(nn.Module):
    """Wraps a logits model so the exported graph returns class probabilities."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)

"""Which input columns drove a prediction: integrated gradients (captum) over windows or records.

Integrated gradients attribute a model output to each input value by integrating the gradient along a
straight path from a baseline to the input (Sundararajan et al. 2017); the attributions of one window
sum to output(input) - output(baseline). Summing them over time gives one signed number per column (sensor):
positive means the reading raised the prediction relative to the baseline.
"""

from __future__ import annotations

from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def integrated_gradients(forward: nn.Module | Callable[[torch.Tensor], torch.Tensor], windows: np.ndarray,
                         baselines: np.ndarray, n_steps: int = 32, batch_size: int = 64) -> np.ndarray:
    """Attributions (n, time, features) of a scalar-output ``forward`` for each window against its baseline.

    ``forward`` maps (batch, time, features) to (batch,) or (batch, 1). Returns float64 attributions.
    """
    from captum.attr import IntegratedGradients

    def scalar(x: torch.Tensor) -> torch.Tensor:
        return forward(x).reshape(x.shape[0])

    ig = IntegratedGradients(scalar)
    out = []
    for start in range(0, len(windows), batch_size):
        x = torch.as_tensor(windows[start:start + batch_size], dtype=torch.float32)
        base = torch.as_tensor(baselines[start:start + batch_size], dtype=torch.float32)
        attr = ig.attribute(x, baselines=base, n_steps=n_steps, internal_batch_size=batch_size * 8)
        out.append(attr.detach().double().numpy())
    return np.concatenate(out) if out else np.zeros((0, *windows.shape[1:]))


def per_feature(attributions: np.ndarray) -> np.ndarray:
    """Sum attributions over time: (n, time, features) -> (n, features)."""
    return attributions.sum(axis=1)


def top_features(values: np.ndarray, names: Sequence[str], k: int = 5) -> list[dict[str, float]]:
    """The ``k`` features with the largest absolute attribution, as [{"sensor", "attribution"}]."""
    order = np.argsort(-np.abs(values))[:k]
    return [{"sensor": str(names[i]), "attribution": float(values[i])} for i in order]


def attribution_bar_figure(values: np.ndarray, names: Sequence[str], title: str = "Sensor attributions",
                           xlabel: str = "attribution") -> plt.Figure:
    """Horizontal bars, one per feature, largest magnitude on top; positive red, negative blue."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(np.abs(values))
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(values) + 1.2))
    ax.barh([names[i] for i in order], values[order], color=["#c44" if values[i] > 0 else "#48c" for i in order])
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return fig


def attribution_heatmap_figure(attributions: np.ndarray, names: Sequence[str], title: str = "") -> plt.Figure:
    """Time x feature heatmap of one window's attributions (diverging colours, symmetric scale)."""
    attributions = np.asarray(attributions, dtype=float)
    limit = float(np.abs(attributions).max()) or 1.0
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(names) + 1.2))
    im = ax.imshow(attributions.T, aspect="auto", cmap="coolwarm", vmin=-limit, vmax=limit)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("time step in window (last = most recent)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.03)
    return fig


__all__ = ["attribution_bar_figure", "attribution_heatmap_figure", "integrated_gradients", "per_feature",
           "top_features"]

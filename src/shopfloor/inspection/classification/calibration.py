"""Calibrated probabilities: temperature scaling, flip test-time augmentation and the expected calibration error.

The exported graph ends in :class:`CalibratedOutput`: ``mean over views v of softmax(logits(v) / T)``, where the
views are the image and its flips (test-time augmentation, off by default) and ``T`` the temperature fitted on the
validation split. So predict, evaluate and the server all get the calibrated, augmented probabilities from the one
graph. A second output, ``uncalibrated_probabilities`` (the same with ``T = 1``), lets evaluate report the
calibration error before and after on the test split without a second model.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from shopfloor.core.errors import ConfigError

# flip name -> the image axes it reverses (NCHW)
FLIPS = {"h": (3,), "v": (2,), "hv": (2, 3)}
TEMPERATURE_BOUNDS = (0.05, 20.0)
# with fewer validation errors than this, the NLL keeps falling as T -> 0 (a separable split says nothing about
# over-confidence elsewhere): the temperature may soften (T > 1) but not sharpen
MIN_ERRORS_TO_SHARPEN = 3
ECE_BINS = 15


def flips_from_augment(horizontal: bool, vertical: bool) -> list[str]:
    """The flips test-time augmentation may average: those the model was trained with (their combination too)."""
    flips = (["h"] if horizontal else []) + (["v"] if vertical else [])
    return flips + (["hv"] if horizontal and vertical else [])


def check_temperature(value: float) -> float:
    """A usable temperature, or :class:`ConfigError` saying what is expected."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"temperature must be a positive finite number (1 = no scaling) or 'auto', got {value!r}")
    return float(value)


class CalibratedOutput(nn.Module):
    """Wraps a logits classifier: ``probabilities`` = mean over views of ``softmax(logits / temperature)``.

    ``flips``: names from :data:`FLIPS` averaged with the original image (test-time augmentation).
    ``with_uncalibrated`` also returns the probabilities at temperature 1 (a second graph output).
    A plain model (temperature 1, no flips, one output) exports the same graph as a bare softmax head.
    """

    def __init__(self, model: nn.Module, temperature: float = 1.0, flips: Sequence[str] = (),
                 with_uncalibrated: bool = False):
        super().__init__()
        unknown = [f for f in flips if f not in FLIPS]
        if unknown:
            raise ConfigError(f"unknown test-time flips {unknown}; choose from {list(FLIPS)}")
        self.model = model
        self.temperature = check_temperature(temperature)
        self.flips = tuple(flips)
        self.with_uncalibrated = with_uncalibrated

    def forward(self, x: torch.Tensor):
        n_views = 1 + len(self.flips)
        batch = x if n_views == 1 else torch.cat([x] + [torch.flip(x, FLIPS[f]) for f in self.flips], dim=0)
        logits = self.model(batch)
        logits = logits.reshape(n_views, -1, logits.shape[-1])
        scaled = logits if self.temperature == 1.0 else logits / self.temperature
        probs = torch.softmax(scaled, dim=-1).mean(dim=0)
        if not self.with_uncalibrated:
            return probs
        return probs, torch.softmax(logits, dim=-1).mean(dim=0)


def view_probabilities(view_logits: np.ndarray, temperature: float) -> np.ndarray:
    """``view_logits`` [V, N, C] -> mean over views of softmax(logits / T), [N, C] (what the graph computes)."""
    z = np.asarray(view_logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=-1, keepdims=True)).mean(axis=0)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class)."""
    picked = probs[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def fit_temperature(view_logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the validation NLL of the (view-averaged) probabilities, within
    :data:`TEMPERATURE_BOUNDS` (bounded 1-d search on log T); at least 1 when the split has fewer than
    :data:`MIN_ERRORS_TO_SHARPEN` errors."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels)
    if len(labels) == 0:
        return 1.0
    lo, hi = (math.log(b) for b in TEMPERATURE_BOUNDS)
    if int((view_probabilities(view_logits, 1.0).argmax(1) != labels).sum()) < MIN_ERRORS_TO_SHARPEN:
        lo = 0.0
    result = minimize_scalar(lambda t: negative_log_likelihood(view_probabilities(view_logits, math.exp(t)), labels),
                             bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    return float(math.exp(result.x))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Top-label confidence in ``n_bins`` equal-width bins: count, mean confidence and accuracy of each."""
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        inside = which == b
        n = int(inside.sum())
        bins.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": n,
                     "confidence": float(confidence[inside].mean()) if n else 0.0,
                     "accuracy": float(correct[inside].mean()) if n else 0.0})
    return bins


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over bins of (share of images) x |accuracy - mean confidence|."""
    n = len(labels)
    if n == 0:
        return float("nan")
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in reliability_bins(probs, labels,
                                                                                                     n_bins)))


def reliability_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], n_bins: int = ECE_BINS):
    """Reliability diagram: accuracy against confidence per bin for each ``name -> (probs, labels)``."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfect calibration")
    for name, (probs, labels) in curves.items():
        bins = [b for b in reliability_bins(probs, labels, n_bins) if b["count"]]
        ece = expected_calibration_error(probs, labels, n_bins)
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Reliability diagram (test split)")
    ax.legend(loc="upper left", fontsize=8)
    return fig

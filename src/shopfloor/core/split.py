"""Seeded, stratified splits."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from .errors import DataError


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) with ``fraction`` of each class held out, reproducible for ``seed``."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    if counts[counts > 0].min() < 2:
        raise DataError("every class needs at least 2 examples to be split into training and validation")
    idx = np.arange(len(labels))
    n_classes = int((counts > 0).sum())
    held = max(int(round(fraction * len(labels))), n_classes)
    if len(labels) - held < n_classes:
        raise DataError(f"{len(labels)} examples are too few to hold out {fraction:.0%} per class; add data")
    keep, out = train_test_split(idx, test_size=held, stratify=labels, random_state=seed)
    return np.sort(keep), np.sort(out)

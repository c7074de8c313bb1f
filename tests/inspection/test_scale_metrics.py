"""Streamed pixel metrics (binned, memory independent of the number of images) against the exact ones."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from shopfloor.inspection.anomaly.metrics import PixelMetricsAccumulator, pixel_metrics

TOLERANCE = 1e-3  # stated in PixelMetricsAccumulator's docstring


def _synthetic(seed: int, n: int = 24, size: int = 64):
    """Normalised maps (sigmoid of smooth raw scores, as the exported graph gives) with blob and line defects."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    raw = np.stack([gaussian_filter(rng.normal(size=(size, size)), 2) * 8 for _ in range(n)])
    for i in range(n // 2, n):
        y, x = rng.integers(8, size - 8, 2)
        if i % 2:
            masks[i, y - 4:y + 4, x - 5:x + 5] = True
        else:
            masks[i, y, 4:size - 4] = True  # a thin crack
        masks[i, rng.integers(0, size), rng.integers(0, size)] = True  # a one-pixel region
    raw = raw - 1.0 + masks * rng.uniform(0.3, 2.5, size=(n, 1, 1))
    maps = (1 / (1 + np.exp(-raw))).astype(np.float32)
    return maps, masks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_pixel_metrics_match_exact(seed):
    maps, masks = _synthetic(seed)
    exact = pixel_metrics(maps, masks, max_fpr=0.3)
    acc = PixelMetricsAccumulator()
    for start in range(0, len(maps), 5):  # image batches of uneven size, as evaluate streams them
        acc.update(maps[start:start + 5], masks[start:start + 5])
    streamed = acc.result(max_fpr=0.3)
    assert 0.6 < exact["pixel_auroc"] < 0.99 and 0.2 < exact["aupro"] < 0.99  # neither trivial nor perfect
    assert streamed["pixel_auroc"] == pytest.approx(exact["pixel_auroc"], abs=TOLERANCE)
    assert streamed["aupro"] == pytest.approx(exact["aupro"], abs=TOLERANCE)
    assert streamed["pixel_f1"] == pytest.approx(exact["pixel_f1"], abs=1e-12)  # counted exactly


def test_streamed_metrics_respect_valid_region_and_add_up():
    maps, masks = _synthetic(3)
    valid = np.zeros(maps.shape, bool)
    valid[:, 8:56, :] = True  # a letterbox band
    masks &= valid
    exact = pixel_metrics(maps, masks, valid, max_fpr=0.2)
    left, right = PixelMetricsAccumulator(), PixelMetricsAccumulator()
    left.update(maps[:10], masks[:10], valid[:10])
    right.update(maps[10:], masks[10:], valid[10:])
    streamed = (left + right).result(max_fpr=0.2)
    for key in ("pixel_auroc", "aupro"):
        assert streamed[key] == pytest.approx(exact[key], abs=TOLERANCE)
    assert streamed["pixel_f1"] == pytest.approx(exact["pixel_f1"], abs=1e-12)


def test_streamed_metrics_refuse_one_sided_data():
    acc = PixelMetricsAccumulator()
    acc.update(np.full((2, 8, 8), 0.3, np.float32), np.zeros((2, 8, 8), bool))
    with pytest.raises(ValueError, match="defect and good"):
        acc.pixel_auroc()
    with pytest.raises(ValueError, match="defect region"):
        acc.aupro()

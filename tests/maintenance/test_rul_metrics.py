"""RUL metrics against hand-computed cases, and the interval calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shopfloor.maintenance.rul.metrics import interval_coverage, mae, nasa_score, nasa_score_terms, rmse, rul_metrics
from shopfloor.maintenance.rul.estimates import calibrate_interval


def test_nasa_score_hand_computed():
    true = [100, 50, 20, 10]
    pred = [87, 60, 20, 5]  # d = -13 (early), +10 (late), 0, -5
    expected_terms = [math.e - 1, math.e - 1, 0.0, math.exp(5 / 13) - 1]
    np.testing.assert_allclose(nasa_score_terms(true, pred), expected_terms)
    assert nasa_score(true, pred) == pytest.approx(2 * (math.e - 1) + math.exp(5 / 13) - 1)
    # late predictions cost more than early ones of the same size
    assert nasa_score([50], [60]) > nasa_score([50], [40])


def test_rmse_mae_coverage_hand_computed():
    true, pred = [3.0, 5.0, 10.0], [1.0, 5.0, 14.0]
    assert rmse(true, pred) == pytest.approx(math.sqrt((4 + 0 + 16) / 3))
    assert mae(true, pred) == pytest.approx(2.0)
    assert interval_coverage(true, [2, 5, 11], [4, 6, 12]) == pytest.approx(2 / 3)  # bounds included
    out = rul_metrics(true, pred, [0, 0, 0], [1, 1, 1])
    assert set(out) == {"rmse", "mae", "nasa_score", "interval_coverage", "interval_width"}
    assert out["interval_width"] == 1


def test_conformal_calibration_reaches_level_on_fresh_data():
    rng = np.random.default_rng(0)

    def draw(n):
        spread = rng.uniform(1, 10, n)
        return rng.normal(0, spread), np.zeros(n), spread

    y, mean, spread = draw(4000)
    scale, offset = calibrate_interval(y, mean, spread, 0.9)
    y2, mean2, spread2 = draw(4000)
    half = scale * (spread2 + offset)
    assert interval_coverage(y2, mean2 - half, mean2 + half) == pytest.approx(0.9, abs=0.02)


def test_combine_recent_lag_corrected_average():
    from shopfloor.maintenance.rul.estimates import combine_recent, last_per_unit

    unit = np.array([1, 1, 1, 2])
    t = np.array([10, 11, 12, 5])
    outputs = {"rul": np.array([5.0, 4.0, 2.0, 7.0]), "lower": np.array([1.0, 1.0, 0.0, 3.0]),
               "upper": np.array([9.0, 8.0, 5.0, 9.0]), "spread": np.array([1.0, 3.0, 1.0, 2.0])}
    out = combine_recent(unit, t, outputs, n=2)
    np.testing.assert_allclose(out["rul"], [5.0, 4.0, 2.5, 7.0])  # (5 - 1 + 4) / 2, (4 - 1 + 2) / 2
    np.testing.assert_allclose(out["lower"], [1.0, 0.5, 0.0, 3.0])
    np.testing.assert_allclose(out["upper"], [9.0, 8.0, 6.0, 9.0])
    np.testing.assert_allclose(out["spread"], [1.0, 2.0, 2.0, 2.0])
    np.testing.assert_array_equal(last_per_unit(unit), [False, False, True, True])
    single = combine_recent(unit, t, outputs, n=1)
    np.testing.assert_allclose(single["rul"], outputs["rul"])

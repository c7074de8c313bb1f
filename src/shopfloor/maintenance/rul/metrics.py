"""Regression metrics for remaining-useful-life estimation: RMSE, MAE, the NASA score, interval coverage."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import mean_absolute_error, mean_squared_error


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    return float(np.sqrt(mean_squared_error(np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float))))


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    return float(mean_absolute_error(np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)))


def nasa_score_terms(y_true, y_pred) -> np.ndarray:
    """Per-unit terms of the PHM08 / C-MAPSS scoring function (Saxena et al. 2008).

    With d = predicted - true RUL: exp(-d/13) - 1 when d < 0 (early prediction), exp(d/10) - 1 otherwise
    (late predictions cost more). Sum the terms for the score.
    """
    d = np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float)
    return np.where(d < 0, np.expm1(-d / 13.0), np.expm1(d / 10.0))


def nasa_score(y_true, y_pred) -> float:
    """The NASA score: sum of :func:`nasa_score_terms` (lower is better, 0 is perfect)."""
    return float(nasa_score_terms(y_true, y_pred).sum())


def interval_coverage(y_true, lower, upper) -> float:
    """Share of true values inside their [lower, upper] prediction interval (bounds included)."""
    y = np.asarray(y_true, dtype=float)
    return float(np.mean((y >= np.asarray(lower, dtype=float)) & (y <= np.asarray(upper, dtype=float))))


def rul_metrics(y_true, y_pred, lower=None, upper=None) -> dict[str, float]:
    """RMSE, MAE, NASA score and (with bounds) interval coverage and mean interval width."""
    out = {"rmse": rmse(y_true, y_pred), "mae": mae(y_true, y_pred), "nasa_score": nasa_score(y_true, y_pred)}
    if lower is not None and upper is not None:
        out["interval_coverage"] = interval_coverage(y_true, lower, upper)
        out["interval_width"] = float(np.mean(np.asarray(upper, dtype=float) - np.asarray(lower, dtype=float)))
    return out


__all__ = ["interval_coverage", "mae", "nasa_score", "nasa_score_terms", "rmse", "rul_metrics"]

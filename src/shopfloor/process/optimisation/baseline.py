"""The reference the surrogate is measured against in the same run: scikit-learn histogram gradient boosting.

One model per result, on the same inputs (numeric columns as they are, categorical context as native categories)
and, for numeric results, the same target transform as the surrogate (log where it takes the log), so the two are
compared on equal terms. It serves only as the yardstick in cross-validation; it is not exported.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor


class GradientBoostingBaseline:
    """Gradient boosting per result (see module docstring)."""

    def __init__(self, n_regression: int, class_sizes: Sequence[int], n_categorical: int, log_targets: np.ndarray,
                 seed: int = 0, max_iter: int = 300):
        self.n_regression, self.class_sizes = n_regression, list(class_sizes)
        self.n_categorical, self.log_targets, self.seed, self.max_iter = n_categorical, np.asarray(log_targets), seed, max_iter
        self.models: list = []

    def _x(self, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
        return np.concatenate([numeric.astype(np.float64), categorical[:, : self.n_categorical].astype(np.float64)],
                              axis=1)

    def _mask(self, numeric: np.ndarray) -> list[bool] | None:
        if not self.n_categorical:
            return None
        return [False] * numeric.shape[1] + [True] * self.n_categorical

    def fit(self, numeric: np.ndarray, categorical: np.ndarray, targets: np.ndarray) -> "GradientBoostingBaseline":
        x, mask = self._x(numeric, categorical), self._mask(numeric)
        self.models = []
        for j in range(self.n_regression):
            y = targets[:, j].astype(np.float64)
            y = np.log(np.maximum(y, 1e-30)) if self.log_targets[j] else y
            model = HistGradientBoostingRegressor(max_iter=self.max_iter, learning_rate=0.05,
                                                  categorical_features=mask, random_state=self.seed)
            self.models.append(model.fit(x, y))
        for k in range(len(self.class_sizes)):
            y = targets[:, self.n_regression + k].astype(np.int64)
            model = HistGradientBoostingClassifier(max_iter=self.max_iter, learning_rate=0.05,
                                                   categorical_features=mask, random_state=self.seed)
            self.models.append(model.fit(x, y))
        return self

    def predict(self, numeric: np.ndarray, categorical: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(numeric results (n, n_regression), [class probabilities (n, classes) per class result])."""
        x = self._x(numeric, categorical)
        values = np.zeros((len(x), self.n_regression))
        for j in range(self.n_regression):
            p = self.models[j].predict(x)
            values[:, j] = np.exp(p) if self.log_targets[j] else p
        probabilities = []
        for k, size in enumerate(self.class_sizes):
            model = self.models[self.n_regression + k]
            p = np.zeros((len(x), size))
            p[:, model.classes_] = model.predict_proba(x)
            probabilities.append(p)
        return values, probabilities

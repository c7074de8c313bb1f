"""Classification metrics from scikit-learn: accuracy, per-class and macro P/R/F1, confusion matrix, ROC-AUC."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], probabilities: np.ndarray | None,
                           class_names: Sequence[str]) -> dict[str, Any]:
    """Standard multi-class metrics as a JSON-able dict.

    Keys: accuracy, macro_precision, macro_recall, macro_f1, per_class {name: precision, recall, f1,
    support, roc_auc}, confusion_matrix (rows true, columns predicted), macro_roc_auc (one-vs-rest,
    only classes present in y_true), n_test.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = list(range(len(class_names)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    per_class: dict[str, dict[str, Any]] = {}
    aucs = []
    for i, name in enumerate(class_names):
        entry = {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        if probabilities is not None and 0 < (y_true == i).sum() < len(y_true):
            entry["roc_auc"] = float(roc_auc_score(y_true == i, probabilities[:, i]))
            aucs.append(entry["roc_auc"])
        per_class[name] = entry
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(mp),
        "macro_recall": float(mr),
        "macro_f1": float(mf),
        "macro_roc_auc": float(np.mean(aucs)) if aucs else None,
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "n_test": int(len(y_true)),
    }


def one_vs_rest_roc(y_true: Sequence[int], probabilities: np.ndarray,
                    class_names: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Per-class ROC curves (fpr, tpr, auc) for classes present and absent in ``y_true``."""
    y_true = np.asarray(y_true)
    curves = {}
    for i, name in enumerate(class_names):
        positives = y_true == i
        if 0 < positives.sum() < len(y_true):
            fpr, tpr, _ = roc_curve(positives, probabilities[:, i])
            curves[name] = (fpr, tpr, float(roc_auc_score(positives, probabilities[:, i])))
    return curves

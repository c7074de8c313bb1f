"""Suspected label errors by confident learning (cleanlab) on out-of-fold predicted probabilities.

The probabilities of an item must come from a model that never saw that item's label, or a wrong label is simply
learnt back. When the application has none, :func:`out_of_fold_probabilities` cross-fits a multinomial logistic
regression on the embeddings (K folds, stratified): cheap, and on frozen pretrained features a strong classifier.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from shopfloor.core.errors import DataError

LABEL_QUALITY_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")


@dataclass(frozen=True)
class LabelIssue:
    """An item whose given label the out-of-fold model doubts: ``score`` is cleanlab's label quality of the given
    label (0..1, lower is more suspicious); ``suggested`` the class the model believes."""

    index: int
    given: int
    suggested: int
    score: float
    flagged: bool


def fold_count(labels: np.ndarray, folds: int) -> int:
    """The folds a stratified split can make: at most ``folds``, at most the smallest class count."""
    smallest = int(np.bincount(labels).min()) if len(labels) else 0
    return max(2, min(folds, smallest))


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, n_classes: int, folds: int = 5,
                              seed: int = 0, C: float = 1.0) -> np.ndarray:
    """Class probabilities of every item from a logistic regression fitted on the other folds (standardised
    features). Every class needs at least 2 items."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=n_classes)
    present = np.flatnonzero(counts)
    if len(present) < 2 or counts[present].min() < 2:
        raise DataError("out-of-fold probabilities need at least 2 classes with at least 2 labelled items each; got "
                        f"counts {counts.tolist()}: add items to the small classes or leave them out")
    probs = np.zeros((len(labels), n_classes), dtype=np.float64)
    splitter = StratifiedKFold(fold_count(labels[np.isin(labels, present)], folds), shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(features, labels):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(features[train_idx], labels[train_idx])
        probs[np.ix_(test_idx, model.classes_)] = model.predict_proba(features[test_idx])
    return probs


def rank_label_issues(labels: np.ndarray, pred_probs: np.ndarray, method: str = "self_confidence"
                      ) -> tuple[list[LabelIssue], np.ndarray]:
    """cleanlab's label quality of every item (``method``) and the items its confident-learning filter flags,
    most suspicious first. Returns (flagged issues, quality score of every item)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    if method not in LABEL_QUALITY_METHODS:
        raise DataError(f"unknown label-quality method {method!r}; use one of {', '.join(LABEL_QUALITY_METHODS)}")
    labels = np.asarray(labels, dtype=int)
    probs = np.clip(np.asarray(pred_probs, dtype=np.float64), 1e-9, None)
    probs = probs / probs.sum(axis=1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about classes with few items; the counts are reported
        scores = get_label_quality_scores(labels, probs, method=method)
        flagged = np.asarray(find_label_issues(labels, probs, filter_by="prune_by_noise_rate"), dtype=bool)
    order = np.argsort(scores, kind="stable")
    issues = []
    for i in order[flagged[order]]:
        ranked = np.argsort(-probs[i])
        suggested = int(ranked[0] if ranked[0] != labels[i] else ranked[1])
        issues.append(LabelIssue(int(i), int(labels[i]), suggested, float(scores[i]), True))
    return issues, scores


def finder_precision_recall(scores: np.ndarray, truly_wrong: np.ndarray, fraction: float) -> dict[str, float]:
    """How well a ranking by ``scores`` (lower: more suspicious) finds the ``truly_wrong`` items in its top
    ``fraction``: precision, recall, and how many were looked at."""
    top = np.argsort(scores, kind="stable")[: max(1, int(round(fraction * len(scores))))]
    hits = int(np.isin(top, np.flatnonzero(truly_wrong)).sum())
    wrong = int(np.sum(truly_wrong))
    return {"top_fraction": fraction, "n_top": len(top), "hits": hits, "precision": hits / len(top),
            "recall": hits / wrong if wrong else float("nan")}

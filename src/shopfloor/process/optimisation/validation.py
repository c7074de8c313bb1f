"""Cross-validation of the surrogate against gradient boosting, grouped by job when the data has jobs.

A new job (a part geometry never made before) is the real use case, so when the table has a group column the
folds hold out whole groups (``GroupKFold``); otherwise records are shuffled into folds. In each fold the
surrogate is trained, **exported to ONNX and scored through ONNX Runtime** (what is deployed is what is
measured), and gradient boosting is fitted on the same rows. Scores: R2, MAE and the share of true values inside
the predicted interval for numeric results; accuracy and macro F1 for class results.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score
from sklearn.model_selection import GroupKFold, KFold

from shopfloor.core.errors import DataError
from shopfloor.core.runtime import OnnxModel, export_onnx

from .baseline import GradientBoostingBaseline
from .surrogate import SurrogateEnsemble


def regression_scores(truth: np.ndarray, predicted: np.ndarray, lower: np.ndarray | None = None,
                      upper: np.ndarray | None = None) -> dict[str, float]:
    """R2 and MAE (and interval coverage when the interval is given) of one numeric result."""
    scores = {"r2": float(r2_score(truth, predicted)), "mae": float(mean_absolute_error(truth, predicted))}
    if lower is not None and upper is not None:
        scores["interval_coverage"] = float(np.mean((truth >= lower) & (truth <= upper)))
    return scores


def class_scores(truth: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 of one class result (argmax of the probabilities)."""
    predicted = probabilities.argmax(axis=1)
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0))}


def folds(n: int, groups: np.ndarray | None, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs: whole groups held out when ``groups`` is given, else shuffled records."""
    if groups is not None:
        if len(np.unique(groups)) < n_folds:
            raise DataError(f"{len(np.unique(groups))} groups are too few for {n_folds} grouped folds; lower "
                            "--cv-folds")
        return list(GroupKFold(n_splits=n_folds).split(np.zeros(n), groups=groups))
    return list(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(n)))


def graph_outputs(graph: SurrogateEnsemble, numeric: np.ndarray, categorical: np.ndarray) -> dict[str, np.ndarray]:
    """Export ``graph`` and run it through ONNX Runtime on the rows."""
    example = (torch_rows(numeric[:2]), torch_rows(categorical[:2]))
    onnx = export_onnx(graph.eval(), example, ["numeric", "categorical"], graph.output_names())
    runtime = OnnxModel(onnx, device="cpu")
    feeds = {"numeric": numeric, "categorical": categorical}
    return runtime.run(**{k: v for k, v in feeds.items() if k in runtime.input_names})


def torch_rows(values: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(values))


def cross_validate(numeric: np.ndarray, categorical: np.ndarray, targets: np.ndarray, groups: np.ndarray | None,
                   regression: Sequence[str], classes: dict[str, list[str]], n_folds: int, seed: int,
                   train: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None], SurrogateEnsemble],
                   n_categorical: int, baseline: bool = True) -> dict[str, Any]:
    """Out-of-fold scores of the surrogate (``train`` builds and fits one on the given rows) and of gradient
    boosting, per result, plus the pooled out-of-fold predictions."""
    r = len(regression)
    n = len(targets)
    oof = {"mean": np.zeros((n, r)), "lower": np.zeros((n, r)), "upper": np.zeros((n, r)),
           "gbm": np.zeros((n, r))}
    class_sizes = [len(v) for v in classes.values()]
    oof_p = [np.zeros((n, s)) for s in class_sizes]
    oof_p_gbm = [np.zeros((n, s)) for s in class_sizes]
    fold_scores = []
    for k, (tr, te) in enumerate(folds(n, groups, n_folds, seed)):
        graph = train(numeric[tr], categorical[tr], targets[tr], None if groups is None else groups[tr])
        out = graph_outputs(graph, numeric[te], categorical[te])
        if r:
            for key in ("mean", "lower", "upper"):
                oof[key][te] = out[key]
        start = 0
        for i, size in enumerate(class_sizes):
            oof_p[i][te] = out["probabilities"][:, start:start + size]
            start += size
        if baseline:
            log_targets = (graph.out_log.numpy() > 0.5) if r else np.zeros(0, dtype=bool)
            gbm = GradientBoostingBaseline(r, class_sizes, n_categorical, log_targets, seed).fit(
                numeric[tr], categorical[tr], targets[tr])
            values, probabilities = gbm.predict(numeric[te], categorical[te])
            oof["gbm"][te] = values
            for i, p in enumerate(probabilities):
                oof_p_gbm[i][te] = p
        fold_scores.append({"fold": k, "test_rows": int(len(te)),
                            "test_groups": int(len(np.unique(groups[te]))) if groups is not None else None})
    results: dict[str, Any] = {}
    for j, name in enumerate(regression):
        truth = targets[:, j]
        entry = {"surrogate": regression_scores(truth, oof["mean"][:, j], oof["lower"][:, j], oof["upper"][:, j])}
        if baseline:
            entry["gradient_boosting"] = regression_scores(truth, oof["gbm"][:, j])
        results[name] = entry
    for i, name in enumerate(classes):
        truth = targets[:, r + i].astype(np.int64)
        entry = {"surrogate": class_scores(truth, oof_p[i])}
        if baseline:
            entry["gradient_boosting"] = class_scores(truth, oof_p_gbm[i])
        results[name] = entry
    return {"folds": n_folds, "grouped": groups is not None, "results": results, "fold_sizes": fold_scores,
            "out_of_fold": {"mean": oof["mean"], "gbm": oof["gbm"], "probabilities": oof_p}}

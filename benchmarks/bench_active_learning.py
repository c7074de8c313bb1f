"""Active learning on NEU and X-SDD: test accuracy vs number of labelled images, active vs random selection, seeds
0, 1, 2. Target: active reaches random selection's accuracy with <= 60% of the labels on at least one set.

A cheap, honest setting (not the full training pipeline): every image is embedded once by the frozen ImageNet-
pretrained EfficientNet-Lite0 (224 px, the pooled features `shopfloor check` and `suggest` use), and each round
retrains a logistic-regression head (standardised features) on the labels so far. Both strategies start from the
same random 24 labels per seed and add 24 per round; ``active`` picks with
:func:`shopfloor.core.quality.active.select_for_labelling` (margin uncertainty + k-means diversity, what `shopfloor
suggest` runs), ``uncertainty`` the 24 most uncertain (the same without diversity), ``random`` at random.
NEU: the stratified 80/20 split (seed 0) of bench_neu, pool = the 80; X-SDD: its own train (pool) / test split.

"labels needed": the smallest budget at which a strategy's mean accuracy over the seeds reaches random's mean
accuracy at the last budget of the curve, divided by that budget. Writes benchmarks/results/active_learning.json.
Embeddings are cached by file content in $SHOPFLOOR_QUALITY_CACHE (default /tmp/shopfloor-quality-cache).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import require_dataset, write_result  # noqa: E402

from shopfloor.core.quality.active import select_for_labelling  # noqa: E402
from shopfloor.core.split import stratified_split  # noqa: E402
from shopfloor.inspection.quality import read_image_facts, scan_check_data  # noqa: E402

SEEDS = (0, 1, 2)
START, STEP, ROUNDS = 24, 24, 20  # labels at the start, per round, rounds (budgets 24 .. 504)
STRATEGIES = ("random", "active", "uncertainty")
CACHE = os.environ.get("SHOPFLOOR_QUALITY_CACHE", "/tmp/shopfloor-quality-cache")


def head_probabilities(x_train: np.ndarray, y_train: np.ndarray, x_eval: list[np.ndarray], n_classes: int
                       ) -> list[np.ndarray]:
    """Fit the logistic head on the labelled items; class probabilities (all classes, 0 for unseen ones) of each
    array in ``x_eval``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    out = []
    for x in x_eval:
        probs = np.zeros((len(x), n_classes))
        probs[:, model.classes_] = model.predict_proba(x)
        out.append(probs)
    return out


def learning_curve(pool_x: np.ndarray, pool_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, n_classes: int,
                   strategy: str, seed: int) -> list[dict[str, float]]:
    """Accuracy on the test split after each round of labelling ``STEP`` more pool items by ``strategy``."""
    rng = np.random.default_rng(seed)
    labelled = list(rng.choice(len(pool_y), START, replace=False))  # the same start for every strategy
    curve = []
    for round_ in range(ROUNDS + 1):
        rest = np.setdiff1d(np.arange(len(pool_y)), labelled)
        pool_probs, test_probs = head_probabilities(pool_x[labelled], pool_y[labelled], [pool_x[rest], test_x],
                                                    n_classes)
        curve.append({"labels": len(labelled), "accuracy": float((test_probs.argmax(1) == test_y).mean())})
        if round_ == ROUNDS:
            break
        if strategy == "random":
            picks = rng.choice(rest, STEP, replace=False)
        else:
            picks = rest[select_for_labelling(pool_probs, pool_x[rest], STEP, seed=seed,
                                              diverse=strategy == "active")]
        labelled += [int(i) for i in picks]
    return curve


def labels_needed(curves: dict[str, list[list[dict[str, float]]]], strategy: str) -> dict[str, float | None]:
    """Budget at which ``strategy``'s mean accuracy first reaches random's mean accuracy at the last budget."""
    budgets = [p["labels"] for p in curves["random"][0]]
    mean = {s: np.mean([[p["accuracy"] for p in c] for c in runs], axis=0) for s, runs in curves.items()}
    goal = float(mean["random"][-1])
    reached = [b for b, acc in zip(budgets, mean[strategy]) if acc >= goal]
    first = reached[0] if reached else None
    return {"random_accuracy_at_last_budget": goal, "last_budget": budgets[-1], "labels_needed": first,
            "fraction_of_random_labels": None if first is None else first / budgets[-1]}


def run_set(name: str, pool_paths: list, pool_y: np.ndarray, test_paths: list, test_y: np.ndarray,
            n_classes: int) -> dict:
    start = time.perf_counter()
    pool_x = read_image_facts(pool_paths, 224, CACHE)[0]
    test_x = read_image_facts(test_paths, 224, CACHE)[0]
    embed_seconds = time.perf_counter() - start
    curves: dict[str, list] = {s: [] for s in STRATEGIES}
    for seed in SEEDS:
        for strategy in STRATEGIES:
            curves[strategy].append(learning_curve(pool_x, pool_y, test_x, test_y, n_classes, strategy, seed))
    summary = {s: labels_needed(curves, s) for s in STRATEGIES if s != "random"}
    mean_curves = {s: [round(float(v), 4) for v in np.mean([[p["accuracy"] for p in c] for c in runs], axis=0)]
                   for s, runs in curves.items()}
    for s, row in summary.items():
        print(f"{name} {s}: reaches random's {row['random_accuracy_at_last_budget']:.4f} at {row['last_budget']} "
              f"labels with {row['labels_needed']} labels ({row['fraction_of_random_labels']})")
    return {"n_pool": len(pool_y), "n_test": len(test_y), "budgets": [p["labels"] for p in curves["random"][0]],
            "mean_accuracy": mean_curves, "curves": curves, "summary": summary,
            "embed_seconds": embed_seconds, "seconds": time.perf_counter() - start}


def main() -> None:
    sets = {}
    neu = scan_check_data(require_dataset("neu_surface_defects") / "images")
    train_idx, test_idx = stratified_split(neu.labels, 0.2, seed=0)
    sets["neu"] = run_set("NEU", [neu.paths[i] for i in train_idx], neu.labels[train_idx],
                          [neu.paths[i] for i in test_idx], neu.labels[test_idx], len(neu.classes))
    xsdd = scan_check_data(require_dataset("xsdd_steel"))
    splits = np.asarray(xsdd.splits)
    pool, test = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    sets["xsdd"] = run_set("X-SDD", [xsdd.paths[i] for i in pool], xsdd.labels[pool],
                           [xsdd.paths[i] for i in test], xsdd.labels[test], len(xsdd.classes))
    met = {name: (s["summary"]["active"]["fraction_of_random_labels"] or 9) <= 0.6 for name, s in sets.items()}
    write_result("active_learning", {
        "protocol": __doc__.split("\n\n")[1].replace("\n", " "), "seeds": list(SEEDS), "start": START, "step": STEP,
        "rounds": ROUNDS, "sets": sets, "target": "active reaches random's accuracy at the last budget with <= 60% "
        "of its labels on at least one set", "target_met_per_set": met, "target_met": any(met.values()),
    })


if __name__ == "__main__":
    main()

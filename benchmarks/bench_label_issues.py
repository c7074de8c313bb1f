"""Label-error finder on NEU: flip 5% of the labels at random (seeded), run the check, and measure how many of the
flipped images it ranks in its top 10% (recall; precision is at most 0.5 there) and the precision/recall of the
items cleanlab flags. Seeds 0, 1, 2. Target: >= 80% of the flipped images in the top 10%.

The check runs as `shopfloor check` does (:meth:`DefectClassification.quality_data` + ``run_checks``): pretrained
EfficientNet-Lite0 embeddings at 224 px, out-of-fold probabilities of a logistic regression (5 folds), cleanlab's
self-confidence ranking. Embeddings are cached by file content in $SHOPFLOOR_QUALITY_CACHE (default
/tmp/shopfloor-quality-cache), so a rerun does not recompute them. Writes benchmarks/results/label_issues.json.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import require_dataset, write_result  # noqa: E402

from shopfloor.core.quality.check import run_checks  # noqa: E402
from shopfloor.core.quality.labels import finder_precision_recall  # noqa: E402
from shopfloor.inspection.classification.task import DefectClassification, LabelledImages  # noqa: E402

FLIP_FRACTION = 0.05
TOP_FRACTION = 0.10
SEEDS = (0, 1, 2)
CACHE = os.environ.get("SHOPFLOOR_QUALITY_CACHE", "/tmp/shopfloor-quality-cache")


def flip_labels(labels: np.ndarray, n_classes: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``labels`` with ``fraction`` of them (chosen at random) moved to another class chosen at random;
    and the mask of the flipped items."""
    rng = np.random.default_rng(seed)
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[rng.choice(len(labels), int(round(fraction * len(labels))), replace=False)] = True
    noisy = labels.copy()
    for i in np.flatnonzero(flipped):
        noisy[i] = rng.choice([k for k in range(n_classes) if k != labels[i]])
    return noisy, flipped


def main() -> None:
    root = require_dataset("neu_surface_defects") / "images"
    clean = LabelledImages.from_folder(root)
    labels = np.asarray(clean.labels)
    original = run_checks(DefectClassification.quality_data(clean, cache_dir=CACHE), folds=5, seed=0)
    as_published = {"flagged": len(original.label_issues), "suspects": original.suspected_label_errors()[:10],
                    "findings": {f.check: len(f.items) for f in original.findings}}
    print(f"NEU as published: cleanlab flags {as_published['flagged']} labels; findings {as_published['findings']}")
    runs = []
    for seed in SEEDS:
        noisy, flipped = flip_labels(labels, len(clean.classes), FLIP_FRACTION, seed)
        start = time.perf_counter()
        data = DefectClassification.quality_data(LabelledImages(clean.paths, noisy.tolist(), clean.classes, root),
                                                 cache_dir=CACHE)
        result = run_checks(data, folds=5, seed=seed)
        seconds = time.perf_counter() - start
        assert result.label_quality is not None
        top = finder_precision_recall(result.label_quality, flipped, TOP_FRACTION)
        flagged = np.zeros(len(labels), dtype=bool)
        flagged[[i.index for i in result.label_issues]] = True
        hits = int((flagged & flipped).sum())
        corrected = sum(1 for i in result.label_issues if flipped[i.index] and i.suggested == labels[i.index])
        run = {"seed": seed, "n_flipped": int(flipped.sum()), f"top_{int(TOP_FRACTION * 100)}pct": top,
               "flagged": int(flagged.sum()), "flagged_precision": hits / max(int(flagged.sum()), 1),
               "flagged_recall": hits / int(flipped.sum()),
               "suggested_label_right_for_flagged_flips": corrected / max(hits, 1), "check_seconds": seconds}
        print(f"seed {seed}: top 10% holds {top['hits']}/{int(flipped.sum())} flipped (recall {top['recall']:.3f}, "
              f"precision {top['precision']:.3f}); cleanlab flagged {int(flagged.sum())}: precision "
              f"{run['flagged_precision']:.3f}, recall {run['flagged_recall']:.3f}; {seconds:.0f} s")
        runs.append(run)
    recalls = [r[f"top_{int(TOP_FRACTION * 100)}pct"]["recall"] for r in runs]
    write_result("label_issues", {
        "dataset": str(root), "n_images": len(labels), "flip_fraction": FLIP_FRACTION, "top_fraction": TOP_FRACTION,
        "protocol": "flip 5% of all 1,800 NEU labels to another class at random (seeded); `check` as the CLI runs "
                    "it: pretrained EfficientNet-Lite0 embeddings (224 px), 5-fold out-of-fold logistic regression, "
                    "cleanlab self_confidence ranking and find_label_issues (prune_by_noise_rate)",
        "as_published": as_published, "runs": runs, "top_recall_mean": float(np.mean(recalls)), "top_recall_min": float(np.min(recalls)),
        "target": ">= 0.80 of the flipped images in the top 10%", "target_met": bool(min(recalls) >= 0.8),
    })


if __name__ == "__main__":
    main()

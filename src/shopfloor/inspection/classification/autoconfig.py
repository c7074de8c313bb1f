"""Rules that configure defect classification from the training data and its validation split.

Every rule compares candidates on the validation split (never the test data) and prefers the cheaper candidate
unless a costlier one is better there:

- **input size** (:func:`size_candidates`): the configured size, the images' own size (when smaller) and a larger
  one (1.5x, or the images' size up to 2x when they are larger: fine cracks need pixels). Each is scored with a
  linear head on frozen features; the smallest whose validation errors are :func:`within_noise` of the best wins
  (a larger input costs inference time on every image, so it must be clearly better).
- **training depth** (:func:`choose_depth`): the frozen-feature head first; when even a perfect model could not
  beat its validation errors beyond the noise, frozen features are enough. Otherwise fine-tuning the last stage
  (``top``) and then the whole network (``all``) are tried, each only when its measured cost fits the time
  budget; a costlier depth must beat the best cheaper one beyond the noise.
- **class-balanced sampling** (:func:`sampling_decision`): on when the largest class has more than
  ``imbalance_ratio`` times the images of the smallest.
- **test-time augmentation** (:func:`tta_decision`): flips averaged in the graph, kept only when they remove
  validation errors beyond the noise (they cost 2-4x inference).

"Beyond the noise" is one rule everywhere (:func:`within_noise`): the difference of two error counts on the same
validation images must exceed two paired standard errors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .calibration import negative_log_likelihood, view_probabilities

MIN_EPOCHS = 2  # a fine-tuning candidate needs time for at least this many epochs within the budget


@dataclass
class Figures:
    """Validation figures of one candidate."""

    errors: int
    n: int
    accuracy: float
    macro_f1: float
    nll: float

    @classmethod
    def of(cls, probs: np.ndarray, labels: np.ndarray) -> "Figures":
        from sklearn.metrics import f1_score

        labels = np.asarray(labels)
        predicted = probs.argmax(1)
        errors = int((predicted != labels).sum())
        f1 = float(f1_score(labels, predicted, average="macro", zero_division=0)) if len(labels) else 0.0
        return cls(errors, len(labels), 1 - errors / max(len(labels), 1), f1,
                   negative_log_likelihood(probs, labels) if len(labels) else 0.0)


def within_noise(errors: int, best: int) -> bool:
    """Whether ``errors`` is within the noise of ``best`` on the same validation images: the difference is at most
    two standard errors of a paired difference of error counts (sqrt of their sum; about McNemar's test at 95 %)."""
    return errors - best <= 2.0 * math.sqrt(errors + best)


def size_candidates(configured: int, native: int, multiple: int = 32, floor: int = 64) -> list[int]:
    """Input sizes to compare, ascending: the configured size, the images' own short side (rounded to
    ``multiple``) when smaller, and a larger size (the native side up to 2x the configured size when images are
    larger, else 1.5x)."""
    def snap(value: float) -> int:
        return max(floor, int(round(value / multiple)) * multiple)

    sizes = {configured}
    if native < configured:
        sizes.add(snap(native))
    larger = min(native, 2 * configured) if native > 1.25 * configured else 1.5 * configured
    sizes.add(snap(larger))
    return sorted(sizes)


def choose_smallest_within(figures: dict[int, Figures]) -> int:
    """The smallest size whose validation errors are :func:`within_noise` of the best size's."""
    best = min(f.errors for f in figures.values())
    return min(size for size, f in figures.items() if within_noise(f.errors, best))


def sampling_decision(counts: Sequence[int], setting: str, imbalance_ratio: float) -> dict[str, Any]:
    """Whether to sample classes equally: ``setting`` on/off, or auto by the ratio of the largest to the smallest
    class count in the training part."""
    counts = [int(c) for c in counts]
    ratio = max(counts) / max(min(counts), 1)
    on = setting == "on" or (setting == "auto" and ratio > imbalance_ratio)
    why = setting if setting != "auto" else (f"auto: largest/smallest class {ratio:.2f} "
                                            f"{'>' if on else '<='} {imbalance_ratio:g}")
    return {"balanced_sampling": on, "class_counts": counts, "imbalance_ratio": round(ratio, 3), "why": why}


@dataclass
class DepthTrial:
    """One training-depth candidate: its validation figures, or why it was skipped."""

    depth: str
    figures: Figures | None = None
    epochs: int = 0
    seconds: float = 0.0
    estimated_seconds: float | None = None
    skipped: str | None = None


@dataclass
class DepthSearch:
    """Outcome of :func:`choose_depth`."""

    chosen: str
    trials: list[DepthTrial] = field(default_factory=list)
    reason: str = ""

    def to_state(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "reason": self.reason, "trials": [asdict(t) for t in self.trials]}


def choose_depth(head: Figures, candidates: Sequence[str], budget_s: float,
                 estimate: Callable[[str], tuple[float, int]],
                 run: Callable[[str, int], tuple[Figures, int, float]]) -> DepthSearch:
    """Pick the training depth on validation figures within a time budget.

    ``head``: the frozen-feature head's figures. ``candidates``: fine-tuning depths, cheapest first.
    ``estimate(depth) -> (seconds per epoch, max epochs)``; ``run(depth, epochs) -> (figures, epochs run,
    seconds)``, which trains a copy and keeps it for the caller when chosen.
    """
    trials = [DepthTrial("head", head)]
    if within_noise(head.errors, 0):
        return DepthSearch("head", trials, f"frozen features are enough: {head.errors} of {head.n} validation "
                           "images wrong, within the noise of none")
    left = budget_s
    for depth in candidates:
        per_epoch, max_epochs = estimate(depth)
        epochs = min(max_epochs, int(left // per_epoch)) if per_epoch > 0 else max_epochs
        if epochs < MIN_EPOCHS:
            trials.append(DepthTrial(depth, estimated_seconds=round(per_epoch * MIN_EPOCHS, 1),
                                     skipped=f"{MIN_EPOCHS} epochs need ~{per_epoch * MIN_EPOCHS:.0f} s, "
                                             f"{max(left, 0):.0f} s of the budget left"))
            continue
        figures, ran, seconds = run(depth, epochs)
        left -= seconds
        trials.append(DepthTrial(depth, figures, ran, round(seconds, 1), round(per_epoch * epochs, 1)))
    chosen, best = "head", head
    for trial in trials[1:]:
        if trial.figures is not None and not within_noise(best.errors, trial.figures.errors):
            chosen, best = trial.depth, trial.figures
    reason = (f"{chosen}: {best.errors} of {best.n} validation errors; a costlier depth must beat the best cheaper "
              "one beyond the noise (2 paired standard errors)")
    return DepthSearch(chosen, trials, reason)


def tta_decision(view_logits: np.ndarray, labels: np.ndarray, temperature_fit: Callable[[np.ndarray], float]
                 ) -> dict[str, Any]:
    """Compare the plain image with the flip average on the validation split, each at its own fitted temperature.
    ``view_logits`` [V, N, C] (view 0 the original). On only when the flips remove validation errors."""
    plain_t = temperature_fit(view_logits[:1])
    plain = Figures.of(view_probabilities(view_logits[:1], plain_t), labels)
    if len(view_logits) == 1:
        return {"on": False, "why": "no flips: the model was trained without flip augmentation",
                "plain": asdict(plain), "temperature_plain": plain_t}
    tta_t = temperature_fit(view_logits)
    tta = Figures.of(view_probabilities(view_logits, tta_t), labels)
    on = not within_noise(plain.errors, tta.errors)
    why = (f"flips {'remove' if on else 'do not remove'} validation errors beyond the noise ({plain.errors} -> {tta.errors} of "
           f"{plain.n}){'' if on else '; off (it would cost ' + str(len(view_logits)) + 'x inference)'}")
    return {"on": on, "why": why, "plain": asdict(plain), "tta": asdict(tta), "temperature_plain": plain_t,
            "temperature_tta": tta_t}

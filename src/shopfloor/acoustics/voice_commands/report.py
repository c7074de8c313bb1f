"""The voice-commands evaluation report: metrics, per-class table, confusion matrix, false accepts per hour against
the detection threshold, and the log-mel of the worst-recognised clips."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from shopfloor.core.report import Report, confusion_matrix_figure  # noqa: E402

if TYPE_CHECKING:
    from .data import CommandClips


def write_report(task: Any, out: Path, clips: "CommandClips", y: np.ndarray, probs: np.ndarray,
                 metrics: dict[str, Any]) -> Path:
    """``out/report.html`` and its PNGs for a fitted voice-commands ``task``; returns the HTML path."""
    report = Report(out, "Voice commands: evaluation")
    report.text(f"{metrics['n_test']} clips of {len(set(clips.speakers))} speakers, none heard in training; "
                f"{task.config.model} network, {task.config.clip_seconds:g} s windows at "
                f"{task.config.sampling_rate} Hz. False accepts: {metrics.get('background_seconds', 0):g} s of "
                "non-command audio (the _unknown_ and _silence_ clips end to end, re-mixed passes of them, "
                "generated noise) through the streaming detector; streaming recall: the command clips back to "
                "back through the same detector.")
    report.metrics({k: v for k, v in metrics.items() if k not in ("report", "per_class", "confusion_matrix",
                                                                    "false_accepts_at_threshold",
                                                                    "false_accepts_by_source")})
    sources = metrics.get("false_accepts_by_source") or {}
    if sources:
        report.table([{"non-command audio": name, **row} for name, row in sources.items()],
                     f"False accepts at the operating point (threshold {metrics['detection_threshold']:g})")
    report.table([{"class": c, **v} for c, v in metrics["per_class"].items()], "Per class")
    report.figure(confusion_matrix_figure(np.asarray(metrics["confusion_matrix"]), task.classes), "confusion",
                  "rows: true class, columns: predicted")
    at = metrics.get("false_accepts_at_threshold") or {}
    if at and metrics.get("background_seconds"):
        fig, ax = plt.subplots(figsize=(5, 3.2))
        thresholds = [float(t) for t in at]
        per_hour = [n * 3600.0 / metrics["background_seconds"] for n in at.values()]
        ax.plot(thresholds, per_hour, marker="o")
        ax.axvline(metrics["detection_threshold"], color="grey", linestyle="--", label="operating point")
        ax.set_xlabel("detection threshold (smoothed posterior)")
        ax.set_ylabel("false accepts per hour")
        ax.legend()
        fig.tight_layout()
        report.figure(fig, "false_accepts", "false accepts per hour of non-command audio against the threshold")
    wrong = np.flatnonzero(probs.argmax(1) != y)
    worst = wrong[np.argsort(probs[wrong, y[wrong]])][:6] if len(wrong) else np.arange(min(3, len(y)))
    if len(worst):
        model = task.require_model()
        with torch.no_grad():
            logmel = model.frontend(torch.from_numpy(clips.audio[worst])).numpy()
        fig, axes = plt.subplots(1, len(worst), figsize=(2.6 * len(worst), 2.6), squeeze=False)
        for ax, i, image in zip(axes[0], worst, logmel):
            ax.imshow(image, origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"{clips.labels[i]} -> {task.classes[int(probs[i].argmax())]}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        report.figure(fig, "worst_clips", "log-mel of the worst-recognised clips (true -> predicted)")
    return report.write()

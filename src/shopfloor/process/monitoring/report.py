"""The process-monitoring HTML report, from evaluation results only: detector comparison per fault, score charts
with limits and onsets, contribution bars, the classifier's confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from shopfloor.core.report import Report, confusion_matrix_figure  # noqa: E402

from ..records import LABEL, NORMAL, TIME  # noqa: E402


def _fault_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for group in ("per_fault", "unobservable"):
        for fault in result["deep"][group]:
            row: dict[str, Any] = {"fault": fault + (" (unobservable)" if group == "unobservable" else "")}
            for name in ("deep", "pca_t2", "pca_spe"):
                entry = result[name][group].get(fault, {})
                row[f"{name} rate"] = entry.get("detection_rate")
                row[f"{name} delay"] = entry.get("delay")
            rows.append(row)
    return rows


def _run_figure(scored: dict[str, Any], title: str) -> plt.Figure:
    """Deep score, T2 and SPE over one run (each divided by its limit), the limit at 1 and the fault onset; the deep
    score starts once a full window lies behind it."""
    frame, out = scored["frame"], scored["outputs"]
    time = frame[TIME].to_numpy()
    labels = frame[LABEL].to_numpy()
    faulty = np.flatnonzero(labels != NORMAL)
    fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharex=True)
    for ax, key, name in zip(axes, ("score", "t2", "spe"), ("deep detector", "PCA T2", "PCA SPE")):
        values = np.where(scored["padded"], np.nan, out[key]) if key == "score" else out[key]  # no full window yet
        ax.semilogy(time, np.maximum(values, 1e-3), lw=0.8)
        ax.axhline(1.0, color="#c44", lw=1, ls="--", label="control limit")
        if len(faulty):
            ax.axvline(time[faulty[0]], color="k", lw=1, ls=":", label="fault onset")
        ax.set_ylabel(f"{name}\n(/ limit)")
    axes[0].legend(loc="upper left", fontsize=7)
    axes[0].set_title(title)
    axes[-1].set_xlabel("time")
    fig.tight_layout()
    return fig


def _contribution_figure(values: np.ndarray, names: Sequence[str], title: str, k: int = 15) -> plt.Figure:
    order = np.argsort(values)[-k:]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(order) + 1.2))
    ax.barh([names[i] for i in order], values[order], color="#c44")
    ax.set_xlabel("mean contribution after onset (share of the limit)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def write_monitoring_report(task: Any, source: str, scored: list[dict[str, Any]], result: dict[str, Any],
                            report_dir: str | Path) -> Path:
    report = Report(report_dir, f"Process monitoring: {source}")
    cfg, state = task.config, task.state
    calibration = state.get("calibration", {"method": "holdout", "folds": 1, "rule": "box"})
    how = (f"out-of-fold statistics of {state['n_limit_samples']} normal samples ({calibration['folds']}-fold "
           "cross-fitting in time)" if calibration["method"] == "crossfit"
           else f"{state['n_limit_samples']} held-out normal samples")
    report.text(f"Deep detector: {cfg.detector} autoencoder over {cfg.window}-sample windows, statistic "
                f"{getattr(cfg, 'statistic', 'reconstruction')}; reference: PCA with {state['n_components']} "
                f"components (T2 and SPE of each sample). Control limits at a nominal {cfg.false_alarm_rate:.1%} "
                f"false-alarm rate from {how}, rule {calibration['rule']}. Delay: samples from the onset to the "
                f"first of {cfg.consecutive_alarms} consecutive alarms.")
    summary = {f"{name} {key}": result[name][key] for name in ("deep", "pca_t2", "pca_spe")
               for key in ("false_alarm_rate", "mean_detection_rate", "mean_delay")}
    report.metrics(summary, "Detectors side by side (means over observable faults)")
    report.table(_fault_rows(result), "Per fault")
    faulty = [s for s in scored if (s["frame"][LABEL].to_numpy() != NORMAL).any()][: cfg.explain_runs]
    for s in faulty:
        labels = s["frame"][LABEL].to_numpy()
        fault = labels[labels != NORMAL][0]
        report.figure(_run_figure(s, f"run {s['run']} ({fault})"), f"run_{s['run']}",
                      "Scores divided by their control limits (log scale); dashed: limit, dotted: onset.")
        after = labels != NORMAL
        report.figure(_contribution_figure(s["outputs"]["contributions"][after].mean(0), task.variables,
                                           f"run {s['run']}: deep detector contributions"),
                      f"contributions_{s['run']}", "Which variables carry the alarm (reconstruction error).")
        report.figure(_contribution_figure(s["outputs"]["spe_contributions"][after].mean(0), task.variables,
                                           f"run {s['run']}: PCA SPE contributions"),
                      f"spe_contributions_{s['run']}", "PCA contribution plot (squared residuals).")
    classification = result.get("classification")
    if classification:
        report.metrics({"accuracy": classification["accuracy"],
                        "mean accuracy over observable faults": classification["mean_fault_accuracy"]},
                       "Fault classification")
        report.table([{"class": c, "accuracy": v} for c, v in classification["per_class_accuracy"].items()])
        report.figure(confusion_matrix_figure(np.asarray(classification["confusion_matrix"]),
                                              classification["classes"]), "confusion_matrix",
                      "Rows: true class, columns: predicted (every scored sample).")
    return report.write()


__all__ = ["write_monitoring_report"]

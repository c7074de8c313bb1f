"""The machine-sound evaluation report: metrics, ROC curves (overall and per domain), score histograms, and for
the highest-scored clips a time-frequency map of where the anomaly is (the graph's ``anomaly_map`` over the
log-mel of the clip's worst window)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from shopfloor.core.report import Report, roc_curves_figure

WORST_CLIPS = 4


def _logmel(task: Any, window: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return task.require_model().frontend(torch.from_numpy(window[None].astype(np.float32)))[0].numpy()


def map_figure(task: Any, windows: Sequence[np.ndarray], maps: Sequence[np.ndarray], titles: Sequence[str]):
    """Per clip: its log-mel (left) and the anomaly map (right), time in seconds, mel band centre in Hz."""
    import matplotlib.pyplot as plt

    frontend = task.require_model().frontend
    fig, axes = plt.subplots(len(windows), 2, figsize=(11, 2.3 * len(windows) + 0.4), squeeze=False)
    centres = frontend.band_edges_hz()
    for row, (window, cells, title) in enumerate(zip(windows, maps, titles)):
        seconds = cells.shape[1] * frontend.frame_seconds()
        extent = (0, seconds, 0, len(centres))
        axes[row, 0].imshow(_logmel(task, window), origin="lower", aspect="auto", extent=extent, cmap="magma")
        image = axes[row, 1].imshow(cells, origin="lower", aspect="auto", extent=extent, cmap="inferno")
        fig.colorbar(image, ax=axes[row, 1], fraction=0.04)
        axes[row, 0].set_title(f"{title}: log-mel", fontsize=8, loc="left")
        axes[row, 1].set_title("anomaly map (deviation from the nearest normal, std)" if
                               task.config.model == "knn-stats" else "anomaly map (reconstruction error)",
                               fontsize=8, loc="left")
        ticks = np.linspace(0, len(centres) - 1, 5).astype(int)
        for ax in axes[row]:
            ax.set_yticks(ticks + 0.5, [f"{centres[t]:.0f}" for t in ticks])
        axes[row, 0].set_ylabel("Hz")
    for ax in axes[-1]:
        ax.set_xlabel("time in window [s]")
    fig.tight_layout()
    return fig


def write_map_png(task: Any, out_dir: Path, name: str, window: np.ndarray, cells: np.ndarray, score: float) -> Path:
    """One window's map as ``<name>.png`` in ``out_dir`` (predict --explain)."""
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig = map_figure(task, [window], [cells], [f"{name} (score {score:.3f})"])
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def histogram_figure(anomalous: np.ndarray, scores: np.ndarray):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, 1, 41)
    ax.hist(scores[~anomalous], bins=bins, alpha=0.6, label=f"normal ({(~anomalous).sum()})")
    ax.hist(scores[anomalous], bins=bins, alpha=0.6, label=f"anomalous ({anomalous.sum()})")
    ax.axvline(0.5, color="k", ls="--", lw=1, label="threshold")
    ax.set_xlabel("normalised score")
    ax.set_ylabel("clips")
    ax.legend(fontsize=8)
    return fig


def write_report(task: Any, out: Path, rows: list[dict[str, Any]], anomalous: np.ndarray, scores: np.ndarray,
                 domains: Sequence[str | None], metrics: dict[str, Any]) -> Path:
    from sklearn.metrics import roc_curve

    cfg = task.config
    calibration = task.state["calibration"]
    report = Report(out, "Machine sound: evaluation")
    report.text(f"{metrics['n_test']} clips ({metrics['n_normal']} normal, {metrics['n_anomaly']} anomalous), "
                f"scored by the exported graph ({cfg.model}) in windows of "
                f"{task.window_samples / task.state['sampling_rate']:g} s at {task.state['sampling_rate']} Hz; a "
                "clip's score is its worst window's. Scores are normalised so that 0.5 is the threshold, set at a "
                f"{calibration['false_alarm_rate']:g} false-alarm rate on out-of-fold scores of the "
                f"{task.state['n_train_clips']} normal training clips ({calibration['folds']}-fold cross-fitting). "
                "pAUC: scikit-learn's standardised partial AUC up to a false-positive rate of 0.1 (as DCASE).")
    report.metrics({k: v for k, v in metrics.items() if k != "report"})
    for note in task.state.get("warnings", []):
        report.text(f"Note: {note}")
    curves = {}
    fpr, tpr, _ = roc_curve(anomalous, scores)
    curves["all"] = (fpr, tpr, metrics["auc"])
    for domain in sorted({d for d in domains if d}):
        keep = np.array([d == domain for d in domains]) & ~anomalous | anomalous
        if metrics.get(f"auc_{domain}") is not None:
            fpr, tpr, _ = roc_curve(anomalous[keep], scores[keep])
            curves[domain] = (fpr, tpr, metrics[f"auc_{domain}"])
    report.figure(roc_curves_figure(curves), "roc", "ROC: all clips, and per domain (its normals vs all anomalies)")
    report.figure(histogram_figure(anomalous, scores), "scores", "normalised clip scores; dashed: the threshold")
    worst = sorted(range(len(rows)), key=lambda i: -rows[i]["score"])[:WORST_CLIPS]
    report.figure(map_figure(task, [rows[i]["window"] for i in worst], [rows[i]["map"] for i in worst],
                             [f"{Path(rows[i]['clip'].source).name} ({'anomaly' if anomalous[i] else 'normal'}, "
                              f"score {rows[i]['score']:.3f})" for i in worst]),
                  "worst_clips", "the highest-scored clips: where in time and frequency the score comes from")
    report.table([{"clip": Path(r["clip"].source).name, "label": r["clip"].meta["label"],
                   "domain": r["clip"].meta.get("domain") or "", "score": r["score"]}
                  for r in sorted(rows, key=lambda r: -r["score"])[:20]], "Highest-scored clips")
    return report.write()

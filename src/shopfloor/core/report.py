"""HTML reports with PNG figures, shared by every task.

A :class:`Report` collects sections (metrics, tables, figures) and writes ``report.html`` with
its PNGs beside it. The plotting helpers return matplotlib figures for the common pictures.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{border-bottom:2px solid #345}h2{margin-top:1.6em;color:#345}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#eef}td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:.5em}figcaption{font-size:.9em;color:#555}img{max-width:100%}
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


class Report:
    """An HTML report under ``out_dir`` (report.html plus PNG files)."""

    def __init__(self, out_dir: str | Path, title: str):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.parts: list[str] = []
        self.figures: list[Path] = []

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def metrics(self, values: dict[str, Any], title: str = "Metrics") -> None:
        """A two-column table of scalar metrics (non-scalars are skipped)."""
        rows = [{"metric": k, "value": v} for k, v in values.items() if isinstance(v, (int, float, str))]
        self.table(rows, title)

    def table(self, rows: Sequence[dict[str, Any]], title: str | None = None) -> None:
        if title:
            self.heading(title)
        if not rows:
            self.parts.append("<p>(none)</p>")
            return
        cols = list(rows[0].keys())
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def figure(self, fig: plt.Figure, name: str, caption: str = "") -> Path:
        """Save ``fig`` as ``name``.png beside the report and show it."""
        path = self.out_dir / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return self.image(path, name, caption)

    def image(self, path: Path, name: str, caption: str = "") -> Path:
        """Show an image file already written in the report folder (a PNG, an animated GIF)."""
        self.figures.append(path)
        self.parts.append(f'<figure><img src="{html.escape(path.name)}" alt="{html.escape(name)}">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        return path

    def write(self) -> Path:
        path = self.out_dir / "report.html"
        body = "\n".join(self.parts)
        path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                        f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>{body}</body></html>")
        return path


def confusion_matrix_figure(cm: np.ndarray, labels: Sequence[str], title: str = "Confusion matrix") -> plt.Figure:
    """Counts with row-normalised colour; rows are true classes."""
    cm = np.asarray(cm)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.7 * n))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


def roc_curves_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str = "ROC") -> plt.Figure:
    """``curves``: name -> (fpr, tpr, auc)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def precision_recall_figure(scores: dict[str, tuple[np.ndarray, np.ndarray]],
                            title: str = "Precision-recall") -> plt.Figure:
    """``scores``: name -> (binary truth, score); one curve each, average precision in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (truth, prob) in scores.items():
        if 0 < truth.sum() < len(truth):
            precision, recall, _ = precision_recall_curve(truth, prob)
            ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(truth, prob):.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def image_grid_figure(images: Sequence[np.ndarray], titles: Sequence[str], cols: int = 6,
                      title: str = "") -> plt.Figure:
    """A grid of HxWx3 uint8 (or HxW) images with a title under each."""
    n = max(len(images), 1)
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t in zip(axes.flat, images, titles):
        ax.imshow(img, cmap="gray" if np.ndim(img) == 2 else None)
        ax.set_title(t, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a 0..1 heatmap (jet colormap) over an HxWx3 uint8 image; same size in, uint8 out."""
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0, 1)
    coloured = (plt.get_cmap("jet")(heat)[..., :3] * 255).astype(np.float32)
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * coloured, 0, 255).astype(np.uint8)

"""The defect-synthesis report: quality table per class, generated samples per class, the nearest-training-image
grid (memorisation check) and the sample grids saved during training."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from shopfloor.core.report import Report, image_grid_figure

def _show(img: np.ndarray) -> np.ndarray:
    return img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img


def write_synthesis_report(report_dir: str | Path, task: Any, per_class: dict[str, dict[str, Any]],
                           mean: dict[str, float], pairs: Sequence[tuple[np.ndarray, np.ndarray, str]],
                           against: str) -> Path:
    """Write report.html with its PNGs under ``report_dir``; returns its path. ``task``: the fitted
    :class:`~shopfloor.inspection.synthesis.task.DefectSynthesis` (its classes, ``generate`` and training state)."""
    report = Report(report_dir, f"{task.name}: generator quality")
    report.text(f"Generated images compared with {against}. Features: ImageNet-pretrained EfficientNet-Lite0, "
                "pooled (FID's Inception weights are not available offline, so KID here is not comparable with "
                "published values). KID: lower is better (0 = same distribution). Precision: share of generated "
                "images that look like real ones; recall: share of real images the generator covers. "
                "Memorisation ratio: median distance of generated images to their nearest training image over that "
                "of real held-out images; near 1 = new images, towards 0 = copies.")
    report.metrics(mean, "Means over classes")
    report.table([{"class": name, **{k: v for k, v in row.items()}} for name, row in per_class.items()], "Per class")
    images, titles = [], []
    for name in task.classes:
        generated, _ = task.generate(6, name, seed=7)
        images += [_show(g) for g in generated]
        titles += [name] * len(generated)
    report.heading("Generated samples (EMA generator, through the exported graph)")
    report.figure(image_grid_figure(images, titles, cols=6), "samples", "six per class, latent seed 7")
    if pairs:
        grid, names = [], []
        for fake, real, label in pairs:
            grid += [_show(fake), _show(real)]
            names += [f"generated {label}", "nearest training image"]
        report.heading("Memorisation check: generated image | its nearest training image (feature space)")
        report.figure(image_grid_figure(grid, names, cols=8), "nearest_training",
                      "a copied training image would show as an identical pair with a small distance d")
    samples = task.state.get("training", {}).get("samples")
    if samples and Path(samples).is_dir():
        report.heading("Training progress (EMA samples, one row per class)")
        for png in sorted(Path(samples).glob("samples_*.png"))[-3:]:
            from PIL import Image
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(8, 1 + len(task.classes)))
            ax.imshow(np.asarray(Image.open(png)), cmap="gray")
            ax.axis("off")
            report.figure(fig, f"training_{png.stem}", png.name)
    return report.write()

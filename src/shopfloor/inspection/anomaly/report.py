"""The evaluation report of the anomaly-detection task: metrics, ROC and PRO curves, per-type table,
and the best and worst examples with their heatmaps (ground-truth outline in white)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.ndimage import binary_erosion

from shopfloor.core.report import Report, heatmap_overlay, image_grid_figure, roc_curves_figure

from ..images import ImageSpec, read_images
from ..layouts import AnomalySample
from .metrics import image_roc

ExampleMaps = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]  # indices -> (maps, masks)


def pro_curve_figure(fpr: np.ndarray, pro: np.ndarray, max_fpr: float, aupro: float):
    """The per-region-overlap curve with the integration limit marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, pro, label=f"PRO (AUPRO to {max_fpr:.0%} FPR: {aupro:.3f})")
    ax.axvline(max_fpr, color="k", ls="--", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positive rate (good pixels)")
    ax.set_ylabel("per-region overlap")
    ax.set_title("PRO curve")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _outlined(overlay: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is None or not mask.any():
        return overlay
    edge = mask & ~binary_erosion(mask, iterations=1)
    out = overlay.copy()
    out[edge] = 255
    return out


def _example_grid(image_spec: ImageSpec, samples: list[AnomalySample], idx: np.ndarray, scores: np.ndarray,
                  example_maps: ExampleMaps, title: str):
    images = read_images([samples[i].path for i in idx], image_spec)
    maps, masks = example_maps(idx)
    tiles = [_outlined(heatmap_overlay(img, maps[k]), None if masks is None else masks[k])
             for k, img in enumerate(images)]
    titles = [f"{samples[i].defect_type} {scores[i]:.2f}\n{samples[i].path.name}" for i in idx]
    return image_grid_figure(tiles, titles, cols=min(len(tiles), 4), title=title)


def _autoconfig_section(report: Report, auto: dict[str, Any]) -> None:
    tiles = auto["tiles"]
    report.heading("Auto-configuration (good images only)")
    report.text(f"Chosen: frame {auto['image_size'][0]}x{auto['image_size'][1]}"
                + (f" as {tiles[0]}x{tiles[1]} tiles" if tiles != [1, 1] else "")
                + f", feature blocks {auto['feature_blocks']}, smoothing sigma {auto['smoothing_sigma']:g} px, on "
                f"{auto['n_pseudo_anomalies']} pseudo-anomalies ({', '.join(auto['pseudo_kinds'])}) painted on "
                f"{auto['n_validation_good']} held-out good images, candidates fitted on {auto['n_fit_images']} good "
                f"images ({auto['search_seconds']:g} s). {auto['data_used']}.")
    report.table([{"candidate": t["candidate"], "chosen": "yes" if t["chosen"] else "", "bank": t["bank_size"],
                   "sigma": t["sigma"], "pseudo image AUROC": t["image_auroc"], "pseudo pixel AUROC": t["pixel_auroc"],
                   "GFLOP/image": t["gflops_per_image"], "seconds": t["seconds"]} for t in auto["trials"]],
                 "Candidates (image and pixel AUROC on pseudo-anomalies vs held-out good images)")


def write_anomaly_report(out_dir: Path, model_name: str, image_spec: ImageSpec, samples: list[AnomalySample],
                         scores: np.ndarray, result: dict[str, Any], aupro_max_fpr: float, examples: int,
                         autoconfig: dict[str, Any] | None = None,
                         pro: tuple[np.ndarray, np.ndarray] | None = None,
                         example_maps: ExampleMaps | None = None) -> Path:
    """Write report.html (and PNGs) under ``out_dir`` from an evaluation's results; returns the HTML path.

    ``result`` is what ``evaluate`` returns (its ``threshold_rule``, ``per_type`` and ``aupro`` are shown);
    ``image_spec`` re-reads the shown examples the way the model saw them and ``example_maps`` gives their maps
    and masks (evaluation keeps no map); ``pro`` is the (fpr, pro) curve, None without masks; ``autoconfig`` (the model's
    ``state["autoconfig"]``) adds what the auto-configuration chose and the pseudo-anomaly figures it chose on."""
    report = Report(out_dir, f"Anomaly detection ({model_name}) evaluation")
    report.text("Scores are normalised so that 0.5 is the decision threshold "
                f"(rule: {result.get('threshold_rule')}). Evaluated through the exported ONNX model.")
    report.metrics({k: v for k, v in result.items() if k != "per_type" and v is not None})
    report.table([{"defect type": k, **v} for k, v in result["per_type"].items()], "Per defect type")
    if autoconfig:
        _autoconfig_section(report, autoconfig)
    labels = np.array([s.label for s in samples])
    types = np.array([s.defect_type for s in samples])
    curves = {"all defects": image_roc(labels, scores)}
    for kind in result["per_type"]:
        sel = (labels == 0) | (types == kind)
        curves[kind] = image_roc(labels[sel], scores[sel])
    report.heading("Curves")
    report.figure(roc_curves_figure(curves, "Image-level ROC"), "roc", "image-level ROC, overall and per type")
    if pro is not None:
        report.figure(pro_curve_figure(pro[0], pro[1], aupro_max_fpr, result["aupro"]), "pro",
                      "per-region overlap vs false-positive rate on good pixels")
    if examples and example_maps is not None:
        margin = np.where(labels == 1, scores - 0.5, 0.5 - scores)
        order = np.argsort(margin, kind="stable")
        k = min(examples, len(order))
        report.heading("Examples")
        report.figure(_example_grid(image_spec, samples, order[::-1][:k], scores, example_maps,
                                    "most clearly right"),
                      "best_examples", "highest-margin correct decisions (white: ground-truth outline)")
        report.figure(_example_grid(image_spec, samples, order[:k], scores, example_maps,
                                    "closest to wrong / wrong"),
                      "worst_examples", "good images scored highest and defects scored lowest")
    return report.write()

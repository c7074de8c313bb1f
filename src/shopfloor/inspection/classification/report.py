"""Pictures for defect classification: the evaluation report and Grad-CAM overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from torch import nn

from shopfloor.core.explain.gradcam import gradcam
from shopfloor.core.metrics import one_vs_rest_roc
from shopfloor.core.report import Report, confusion_matrix_figure, heatmap_overlay, image_grid_figure, roc_curves_figure

from ..images import to_model_input
from .calibration import reliability_figure


def _decisions(report: Report, state: dict[str, Any]) -> None:
    """How the model was configured: the choices and the validation figures they were made on."""
    report.heading("How this model was configured")
    if state.get("summary"):
        report.text(state["summary"])
    auto = state.get("autoconfig")
    if not auto:
        report.text("Fixed configuration (auto false, or a model saved before auto-configuration).")
    else:
        sizes = auto.get("sizes", {})
        report.table([{"input size": size, "val errors": f["errors"], "val accuracy": f["accuracy"],
                       "val macro F1": f["macro_f1"], "val NLL": f["nll"], "seconds": f["seconds"],
                       "chosen": "yes" if int(size) == auto.get("chosen_size") else ""}
                      for size, f in sizes.get("candidates", {}).items()],
                     f"Input size (images' short side {sizes.get('native_short_side')} px; {sizes.get('rule', '')})")
        depth = auto.get("depth", {})
        rows = []
        for trial in depth.get("trials", []):
            f = trial.get("figures") or {}
            rows.append({"depth": trial["depth"], "val errors": f.get("errors", ""),
                         "val macro F1": f.get("macro_f1", ""), "epochs": trial.get("epochs", ""),
                         "seconds": trial.get("seconds", ""), "skipped": trial.get("skipped") or "",
                         "chosen": "yes" if trial["depth"] == depth.get("chosen") else ""})
        report.table(rows, f"Training depth ({depth.get('reason', '')})")
        report.text(f"Auto-configuration took {auto.get('seconds')} s.")
    sampling = state.get("sampling")
    if sampling:
        report.text(f"Class-balanced sampling: {'on' if sampling['balanced_sampling'] else 'off'} "
                    f"({sampling['why']}; training class counts {sampling['class_counts']}).")
    tta = state.get("tta")
    if tta:
        report.text(f"Test-time augmentation: {'+'.join(tta['flips']) or 'off'} ({tta['why']}).")
    cal = state.get("calibration")
    if cal:
        report.text(f"Temperature {cal['temperature']:.4f} ({cal['how']}, {cal['n_val']} images): validation ECE "
                    f"{cal['val_ece_before']:.4f} -> {cal['val_ece_after']:.4f}.")


def write_classification_report(report_dir: str | Path, title: str, classes: Sequence[str], paths: Sequence[Path],
                                images: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                                metrics: dict[str, Any], max_errors: int = 24, uncalibrated: np.ndarray | None = None,
                                state: dict[str, Any] | None = None) -> Path:
    """report.html with metrics, per-class table, confusion matrix, ROC curves, the reliability diagram (before and
    after temperature scaling), how the model was configured, and misclassified images."""
    report = Report(report_dir, title)
    report.text(f"{metrics['n_test']} test images, scored through ONNX Runtime (the deployed graph).")
    report.metrics({k: metrics[k] for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1",
                                            "macro_roc_auc", "ece", "ece_uncalibrated", "temperature", "n_test")
                    if metrics.get(k) is not None})
    report.table([{"class": c, **v} for c, v in metrics["per_class"].items()], "Per class")
    report.heading("Confusion matrix and ROC")
    report.figure(confusion_matrix_figure(np.asarray(metrics["confusion_matrix"]), classes), "confusion_matrix",
                  "rows: true class, columns: predicted")
    curves = one_vs_rest_roc(labels, probs, classes)
    if curves:
        report.figure(roc_curves_figure(curves, "One-vs-rest ROC"), "roc_curves")
    report.heading("Calibration")
    curves = {"deployed (calibrated)": (probs, labels)}
    if uncalibrated is not None and state and "calibration" in state:
        curves["temperature 1 (uncalibrated)"] = (uncalibrated, labels)
    report.figure(reliability_figure(curves), "reliability",
                  "accuracy against confidence per bin; the diagonal is perfect calibration")
    _decisions(report, state or {})
    predicted = probs.argmax(1)
    wrong = np.flatnonzero(predicted != labels)
    report.heading(f"Misclassified images ({len(wrong)})")
    if len(wrong):
        shown = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:max_errors]
        titles = [f"{Path(paths[i]).name}\ntrue {classes[labels[i]]}\npred {classes[predicted[i]]} "
                  f"{probs[i, predicted[i]]:.2f}" for i in shown]
        report.figure(image_grid_figure([images[i] for i in shown], titles), "misclassified",
                      "most confident mistakes first")
    else:
        report.text("none")
    return report.write()


def write_explanations(out_dir: str | Path, model: nn.Module, classes: Sequence[str], paths: Sequence[Path],
                       images: np.ndarray, targets: np.ndarray) -> list[Path]:
    """Grad-CAM overlay PNG per image, explaining the class the deployed model predicted; ``model`` is the torch
    classifier the graph was exported from (it names its ``cam_layer``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    maps = gradcam(model, model.cam_layer, to_model_input(images), [int(t) for t in targets])
    files = []
    for path, img, heat, t in zip(paths, images, maps, targets):
        file = out / f"{Path(path).stem}_gradcam_{classes[int(t)]}.png"
        Image.fromarray(heatmap_overlay(img, heat)).save(file)
        files.append(file)
    return files

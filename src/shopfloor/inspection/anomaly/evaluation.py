"""Streamed evaluation of an anomaly-detection model: memory flat in the number of test images.

The test images are decoded and scored batch by batch through the exported graph; each batch's anomaly maps are
folded into binned pixel-metric accumulators (:class:`~.metrics.PixelMetricsAccumulator`: one for the good images
and one per defect type, summed for the overall and per-type figures) and then dropped. Only the image scores and
each image's :class:`~shopfloor.inspection.images.FrameInfo` are kept. The report re-scores the few examples it
shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..images import FrameInfo, ImageSpec, content_box, warn_stretched
from ..inputs import check_ranges, has_ranges, settle_bad_inputs
from ..layouts import AnomalyData, has_masks, read_masks
from .metrics import PixelMetricsAccumulator, image_metrics

GOOD = "\0good"  # the accumulator key of the good test images (never a defect type's name)


def valid_region(spec: ImageSpec, sizes: list[tuple[int, int]]) -> np.ndarray | None:
    """Pixels of the model frame that show each image (None when nothing is letterboxed)."""
    if not spec.keep_aspect:
        return None
    valid = np.zeros((len(sizes), spec.height, spec.width), dtype=bool)
    for i, size in enumerate(sizes):
        left, top, right, bottom = content_box(size, spec)
        valid[i, top:bottom, left:right] = True
    return valid


def _pixel_figures(acc: PixelMetricsAccumulator, max_fpr: float) -> dict[str, float | None]:
    try:
        return acc.result(max_fpr)
    except ValueError:  # no defect pixel (masks all empty) or no good pixel: the figures are undefined
        return {"pixel_auroc": None, "aupro": None, "pixel_f1": None}


def evaluate_streamed(task: Any, dataset: AnomalyData, aupro_max_fpr: float, examples: int,
                      report_dir: str | Path | None = None) -> dict[str, Any]:
    """What ``AnomalyDetection.evaluate`` returns, computed in one streamed pass over ``dataset.test``; ``task`` is
    the fitted :class:`~.task.AnomalyDetection` (its ``score_stream``, ``score_images``, ``image_spec``, ``state``)."""
    spec = task.image_spec
    samples = dataset.test
    paths = [s.path for s in samples]
    names = [str(p) for p in paths]
    labels = np.array([s.label for s in samples])
    types = np.array([s.defect_type for s in samples])
    with_masks = has_masks(samples)
    keys = [GOOD if s.label == 0 else s.defect_type for s in samples]
    accumulators = {key: PixelMetricsAccumulator() for key in dict.fromkeys(keys)}
    scores = np.zeros(len(samples), np.float32)
    infos: list[FrameInfo | None] = [None] * len(samples)
    errors: dict[int, Any] = {}
    for index, batch_scores, maps in task.score_stream(paths, names, infos, errors, "scoring test images"):
        scores[index] = batch_scores
        if not with_masks:
            continue
        ok = [k for k, i in enumerate(index) if i not in errors]
        batch = [samples[index[k]] for k in ok]
        masks = read_masks(batch, spec)
        valid = valid_region(spec, [infos[index[k]].size for k in ok])
        for j, k in enumerate(ok):
            accumulators[keys[index[k]]].update(maps[k], masks[j], None if valid is None else valid[j])
    settle_bad_inputs(len(paths), errors, names, skip_bad=False)
    warn_stretched(infos, names, spec)
    flagged = check_ranges(task, names, infos)
    result: dict[str, Any] = image_metrics(labels, scores)
    result.update(pixel_auroc=None, aupro=None, pixel_f1=None)
    overall = None
    if with_masks:
        overall = sum(accumulators.values(), PixelMetricsAccumulator())
        result.update(_pixel_figures(overall, aupro_max_fpr))
    result.update(n_test=int(len(samples)), n_good=int((labels == 0).sum()), n_defective=int(labels.sum()),
                  threshold_rule=task.state.get("threshold_rule"),
                  pixel_metrics_note=None if with_masks else "no masks: pixel metrics skipped",
                  n_out_of_range=sum(bool(f) for f in flagged) if has_ranges(task) else None)
    result["per_type"] = _per_type(labels, types, scores, accumulators if with_masks else None, aupro_max_fpr,
                                   result)
    if report_dir is not None:
        from .report import write_anomaly_report

        def example_maps(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            """Maps (re-scored: only the shown examples are held) and masks of the examples ``idx``."""
            shown = [samples[i] for i in idx]
            _, maps = task.score_images([s.path for s in shown])
            return maps, read_masks(shown, spec) if with_masks else None

        pro = overall.pro_curve() if overall is not None and result["aupro"] is not None else None
        result["report"] = str(write_anomaly_report(Path(report_dir), task.config.model, spec, samples, scores,
                                                    result, aupro_max_fpr=aupro_max_fpr, examples=examples,
                                                    autoconfig=task.state.get("autoconfig"), pro=pro,
                                                    example_maps=example_maps))
    return result


def _per_type(labels: np.ndarray, types: np.ndarray, scores: np.ndarray,
              accumulators: dict[str, PixelMetricsAccumulator] | None, max_fpr: float,
              overall: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    good = labels == 0
    for kind in sorted(set(types[labels == 1])):
        sel = good | (types == kind)
        entry: dict[str, Any] = {"n": int((types == kind).sum()),
                                 "detected": float((scores[types == kind] >= 0.5).mean())}
        entry.update({k: v for k, v in image_metrics(labels[sel], scores[sel]).items()
                      if k in ("image_auroc", "image_ap", "image_f1")})
        if accumulators is not None and sel.all():  # a single defect type: the overall figures already are its own
            entry.update(pixel_auroc=overall["pixel_auroc"], aupro=overall["aupro"])
        elif accumulators is not None:
            joined = accumulators[kind] + accumulators[GOOD] if GOOD in accumulators else accumulators[kind]
            figures = _pixel_figures(joined, max_fpr)
            entry.update(pixel_auroc=figures["pixel_auroc"], aupro=figures["aupro"])
        out[str(kind)] = entry
    return out


__all__ = ["evaluate_streamed", "valid_region"]

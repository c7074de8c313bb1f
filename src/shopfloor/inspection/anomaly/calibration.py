"""Thresholds and score scales of the anomaly-detection models, from held-out (or cross-fitted) good images and
defective validation images, with the training warning when they rest on too few images. Maps are streamed into
bounded pixel samples (:mod:`.sampling`). Mixed into :class:`~.task.AnomalyDetection`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from torch import nn

from shopfloor.core.errors import ConfigError

from ..images import FrameInfo
from ..layouts import AnomalySample, has_masks, read_masks
from .fitting import Extractor
from .metrics import f1_optimal_threshold, false_alarm_threshold
from .sampling import MapSample

MIN_HELDOUT_GOOD = 10  # fewer held-out good images than this: the threshold is a training warning
MIN_VALIDATION_DEFECTS = 5  # the same for the defective validation images behind an F1 threshold


class Calibration:
    """Calibration steps of :class:`~.task.AnomalyDetection` (uses its ``config``, ``state``, ``image_spec``,
    ``note_warning`` and ``_raw_batches``)."""

    def _calibrate(self, model: nn.Module, held_good: list[Path] | np.ndarray,
                   validation: list[AnomalySample], extract: Extractor, infos: list[FrameInfo] | None = None,
                   n_good: int | None = None, held: tuple[np.ndarray, MapSample] | None = None) -> None:
        """Set image and pixel thresholds and scales from held-out good (and validation) images, or from the
        cross-fitted raw scores and map sample of the good images given as ``held``; warn (kept in the artifact)
        when they rest on too few images. Maps are streamed into bounded pixel samples (:mod:`.sampling`)."""
        cfg = self.config
        pixels = self.image_spec.height * self.image_spec.width
        if held is not None:
            good_scores, good_maps = held
        else:
            good_maps = MapSample(len(held_good), pixels, seed=cfg.training.seed)
            good_scores = self._sampled_scores(model, held_good, extract, "scoring held-out good images", good_maps,
                                               infos=infos)
        val_scores = np.zeros(0)
        val_labels = np.zeros(0, dtype=int)
        val_maps = MapSample(len(validation), pixels, seed=cfg.training.seed + 1)
        if validation:
            val_scores = self._sampled_scores(model, [s.path for s in validation], extract,
                                              "scoring validation images", val_maps, validation)
            val_labels = np.array([s.label for s in validation])
        has_defects = bool(val_labels.sum())
        rule = cfg.threshold_rule
        if rule == "auto":
            rule = "f1" if has_defects else "quantile"
        if rule == "f1" and not has_defects:
            raise ConfigError("threshold_rule 'f1' needs defective validation images (plain layout: a defect/ folder; "
                              "MVTec layout: validation/<type>/); use 'quantile' for good images only")
        if rule == "f1":
            labels = np.concatenate([np.zeros(len(good_scores), int), val_labels])
            image_threshold = f1_optimal_threshold(labels, np.concatenate([good_scores, val_scores]))
            method = "maximum F1 on held-out good + validation images"
        else:
            image_threshold, method = false_alarm_threshold(good_scores, cfg.false_alarm_rate)
        pixel_rule = "image threshold (an image is flagged exactly when a pixel is)"
        pixel_threshold = image_threshold
        if rule == "f1" and has_masks(validation):
            truth = np.concatenate([good_maps.truth, val_maps.truth])
            values = np.concatenate([good_maps.values, val_maps.values])
            pixel_threshold = f1_optimal_threshold(truth, values)
            pixel_rule = "f1 on validation masks"
        image_scale = _scale(image_threshold, np.median(good_scores))
        pixel_scale = _scale(pixel_threshold, np.median(good_maps.values))
        model.head.set_calibration(image_threshold, image_scale, pixel_threshold, pixel_scale)
        self.state["threshold_rule"] = rule
        self.state["calibration"] = {
            "image_threshold_raw": float(image_threshold), "image_scale": float(image_scale),
            "pixel_threshold_raw": float(pixel_threshold), "pixel_scale": float(pixel_scale),
            "image_rule": method, "pixel_rule": pixel_rule,
            "false_alarm_rate_target": cfg.false_alarm_rate if rule == "quantile" else None,
            "n_heldout_good": int(len(good_scores)), "n_validation": int(len(val_labels)),
            "heldout_good_flagged": float((good_scores >= image_threshold).mean()),
            "normalisation": "sigmoid((raw - threshold) / scale): 0.5 is the threshold",
        }
        self._warn_weak_threshold(rule, method, good_scores, image_threshold, int(val_labels.sum()),
                                  n_good or len(good_scores), cross_fitted=held is not None)

    def _sampled_scores(self, model: nn.Module, source: list[Path] | np.ndarray, extract: Extractor, desc: str,
                        sample: MapSample, samples: list[AnomalySample] | None = None,
                        infos: list[FrameInfo] | None = None) -> np.ndarray:
        """Raw scores of ``source``; their maps go into ``sample`` batch by batch (with the masks of ``samples``)."""
        scores, done = [], 0
        for s, m in self._raw_batches(model, source, extract, desc, infos):
            masks = None
            if samples is not None and has_masks(samples):
                masks = read_masks(samples[done:done + len(s)], self.image_spec)
            sample.add(m, masks)
            scores.append(s)
            done += len(s)
        return np.concatenate(scores) if scores else np.zeros(0, np.float32)

    def _warn_weak_threshold(self, rule: str, method: str, good_scores: np.ndarray, threshold: float,
                             n_defective: int, n_good: int, cross_fitted: bool = False) -> None:
        """A training warning (``state["warnings"]``) when the threshold rests on too few images."""
        cfg = self.config
        n_held, rate = len(good_scores), cfg.false_alarm_rate
        problems = []
        if n_held < MIN_HELDOUT_GOOD:
            problems.append(f"it was set on only {n_held} held-out good image(s) (fewer than {MIN_HELDOUT_GOOD}), so "
                            "the share of new good parts it flags is uncertain")
        if rule == "quantile" and n_held * rate < 1:
            need = math.ceil(1 / rate) if rate > 0 else None
            resolved = (f"--false-alarm-rate {rate:g} needs at least {need} held-out good images to be resolved"
                        if need else "--false-alarm-rate 0 puts it at the highest held-out score")
            problems.append(f"{resolved}; with {n_held} the threshold ({threshold:.4g}; highest held-out score "
                            f"{float(np.max(good_scores)):.4g}) is set by the {method}")
        if rule == "f1" and n_defective < MIN_VALIDATION_DEFECTS:
            problems.append(f"the F1 rule chose it on only {n_defective} defective validation image(s) (fewer than "
                            f"{MIN_VALIDATION_DEFECTS})")
        if not problems:
            return
        rate_hint = (f"; or accept --false-alarm-rate {math.ceil(100 / n_held) / 100:g} or more"
                     if rule == "quantile" and n_held >= 2 and n_held * rate < 1 else "")
        where = (f"All {n_good} good training images were scored by cross-fitting. Add good training images"
                 if cross_fitted else f"{n_held} of {n_good} good training images were held out (--val-fraction "
                 f"{cfg.training.val_fraction:g}). Add good training images or raise --val-fraction")
        self.note_warning(
            "anomaly threshold may not hold on new parts: " + "; ".join(problems) + f". {where}{rate_hint}; "
            f"{'or use --threshold-rule f1 with' if rule == 'quantile' else 'add'} "
            "defective validation images (plain layout: defect/; MVTec layout: validation/<type>/)")


def _scale(threshold: float, typical_good: float) -> float:
    """Sigmoid scale: the gap between the threshold and a typical good value (floored at 5 % of the threshold)."""
    return float(max(threshold - typical_good, 0.05 * abs(threshold), 1e-6))

"""Anomaly metrics and threshold rules against hand-worked examples."""

import numpy as np
import pytest

from shopfloor.inspection.anomaly.metrics import (
    area_under_curve,
    aupro,
    f1_optimal_threshold,
    false_alarm_threshold,
    image_metrics,
    pixel_metrics,
    pro_curve,
    quantile_threshold,
)

# Two 2x3 images. Image 1 has region A (2 px, scores 0.9 and 0.4), image 2 region B (1 px, score 0.8);
# the 9 good pixels score 0.6, 0.3, 0.2, 0.15, 0.1, 0.05, 0.03, 0.02, 0.01.
MAPS = np.array([[[0.9, 0.4, 0.1], [0.3, 0.2, 0.05]],
                 [[0.6, 0.15, 0.01], [0.02, 0.03, 0.8]]])
MASKS = np.array([[[1, 1, 0], [0, 0, 0]],
                  [[0, 0, 0], [0, 0, 1]]], dtype=bool)


def test_pro_curve_worked_example():
    fpr, pro = pro_curve(MAPS, MASKS)
    # thresholds 0.9 -> A half covered (PRO 0.25); 0.8 -> B too (0.75); 0.6 -> first false positive;
    # 0.4 -> A complete (1.0); then only false positives accumulate.
    assert fpr[:6] == pytest.approx([0, 0, 0, 1 / 9, 1 / 9, 2 / 9])
    assert pro[:6] == pytest.approx([0, 0.25, 0.75, 0.75, 1.0, 1.0])
    assert fpr[-1] == pytest.approx(1.0) and pro[-1] == pytest.approx(1.0)


def test_aupro_worked_example():
    # area to FPR 0.3: 0.75 * 1/9 + 1.0 * (0.3 - 1/9) = 0.272222...; normalised by 0.3
    assert aupro(MAPS, MASKS, max_fpr=0.3) == pytest.approx((0.75 / 9 + 0.3 - 1 / 9) / 0.3)


def test_aupro_regions_count_equally_and_valid_mask_excludes_pixels():
    perfect = np.where(MASKS, 1.0, 0.0) + MAPS * 0.01
    assert aupro(perfect, MASKS) == pytest.approx(1.0)
    valid = np.ones_like(MASKS)
    valid[1, 0, 0] = False  # drop the good pixel scoring 0.6: now A and B are found before any false positive
    assert aupro(MAPS, MASKS, valid=valid) == pytest.approx(1.0)


def test_area_under_curve_interpolates_at_limit():
    x = np.array([0.0, 0.2, 0.4])
    y = np.array([0.0, 1.0, 1.0])
    assert area_under_curve(x, y, 0.3) == pytest.approx(0.1 + 0.1)


def test_f1_optimal_threshold_worked_example():
    # F1 by threshold: 0.8 -> 0.667, 0.4 -> 0.5, 0.35 -> 0.8 (best), 0.1 -> 0.667; midpoint to next lower score
    assert f1_optimal_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.225)


def test_quantile_threshold_flags_target_share():
    good = np.arange(101, dtype=float)
    assert quantile_threshold(good, 0.1) == pytest.approx(90.0)
    assert (good >= quantile_threshold(good, 0.1)).mean() == pytest.approx(11 / 101)


def test_false_alarm_threshold_extrapolates_for_small_held_out_sets():
    rng = np.random.default_rng(0)
    many = rng.normal(10, 1, 5000)
    thr, method = false_alarm_threshold(many, 0.01)
    assert method == "empirical quantile" and thr == pytest.approx(quantile_threshold(many, 0.01))
    few = many[:10]
    thr, method = false_alarm_threshold(few, 0.01)
    assert method.startswith("normal fit") and thr > few.max()
    assert thr == pytest.approx(few.mean() + 2.3263479 * few.std(ddof=1))
    # on fresh good scores from the same distribution the rate stays near the target, not ~1/(n+1)
    assert (many[10:] >= thr).mean() < 0.05


def test_image_and_pixel_metrics_keys_and_values():
    m = image_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.7, 0.9]))
    assert m["image_auroc"] == 1.0 and m["image_f1"] == pytest.approx(0.8)
    assert m["false_alarm_rate"] == 0.5 and m["miss_rate"] == 0.0
    p = pixel_metrics(MAPS, MASKS, threshold=0.5)
    assert set(p) == {"pixel_auroc", "aupro", "pixel_f1"}
    assert p["pixel_auroc"] == pytest.approx(1 - 1 / 27)  # only the good 0.6 outranks a defect pixel (A's 0.4)
    assert p["pixel_f1"] == pytest.approx(2 / 3)  # flagged 0.9, 0.8 (right) and 0.6 (wrong); 0.4 missed


def test_pixel_auroc_matches_pair_count():
    pos = MAPS[MASKS]
    neg = MAPS[~MASKS]
    pairs = (pos[:, None] > neg[None, :]).mean()
    assert pixel_metrics(MAPS, MASKS)["pixel_auroc"] == pytest.approx(pairs)

"""Sensor-history readers, validation errors, windows, RUL cap, unit split and condition normalisation."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import torch

from shopfloor.core.errors import DataError
from shopfloor.maintenance.histories import HistorySpec, load_histories, read_cmapss
from shopfloor.maintenance.rul.simulator import simulate_degradation
from shopfloor.maintenance.windows import (
    assign_conditions,
    cluster_operating_conditions,
    fit_condition_normalizer,
    make_windows,
    piecewise_rul,
    split_units,
)

SPEC = HistorySpec(setting_columns=["setting_1", "setting_2"])


def _cmapss_rows(n_units: int, lengths: list[int], seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(n_units):
        for t in range(1, lengths[u] + 1):
            values = [u + 1, t, *rng.normal(0, 0.001, 2).round(4), 100.0, *rng.normal(500, 5, 21).round(3)]
            values[5] = 518.67  # a constant sensor, as in FD001
            lines.append(" ".join(str(v) for v in values))
    return "\n".join(lines) + "\n"


@pytest.fixture
def cmapss_folder(tmp_path):
    """A tiny C-MAPSS folder: train plain text, test and RUL gzipped."""
    (tmp_path / "train_FD009.txt").write_text(_cmapss_rows(3, [40, 50, 45]))
    with gzip.open(tmp_path / "test_FD009.txt.gz", "wt") as fh:
        fh.write(_cmapss_rows(2, [12, 35], seed=1))
    with gzip.open(tmp_path / "RUL_FD009.txt.gz", "wt") as fh:
        fh.write("30\n7\n")
    return tmp_path


def test_cmapss_reader_plain_and_gzip(cmapss_folder):
    train = read_cmapss(cmapss_folder, "FD009", "train")
    assert len(train.units) == 3 and len(train.sensors) == 21 and len(train.settings) == 3
    last = train.frame.groupby("unit").tail(1)
    assert (last["rul"] == 0).all()
    assert train.frame["rul"].iloc[0] == 39  # unit 1 runs 40 cycles
    test = load_histories(cmapss_folder, HistorySpec(subset="fd009"), "test")
    ends = test.frame.groupby("unit")["rul"].last().tolist()
    assert ends == [30, 7]
    assert test.frame["rul"].iloc[0] == 30 + 11  # 11 cycles before unit 1's last row


def test_cmapss_missing_subset_and_bad_rul_count(cmapss_folder):
    with pytest.raises(DataError, match="train_FD004"):
        read_cmapss(cmapss_folder, "FD004")
    with gzip.open(cmapss_folder / "RUL_FD009.txt.gz", "wt") as fh:
        fh.write("30\n")
    with pytest.raises(DataError, match="1 RUL values but .* 2 units"):
        read_cmapss(cmapss_folder, "FD009", "test")


def test_cmapss_wrong_column_count(tmp_path):
    (tmp_path / "train_FD001.txt").write_text("1 1 0 0 100 1 2 3\n")
    with pytest.raises(DataError, match="8 columns"):
        read_cmapss(tmp_path, "FD001")


def test_long_table_csv_and_parquet(tmp_path):
    frame = simulate_degradation(4, seed=1)
    frame.rename(columns={"unit": "engine", "time": "cycle"}).to_parquet(tmp_path / "h.parquet")
    spec = SPEC.model_copy(update={"unit_column": "engine", "time_column": "cycle"})
    histories = load_histories(tmp_path / "h.parquet", spec)
    assert histories.settings == ["setting_1", "setting_2"]
    assert histories.sensors == [f"sensor_{i}" for i in range(1, 9)]
    np.testing.assert_allclose(histories.frame["rul"], frame["rul"])
    frame.drop(columns=["rul"]).to_csv(tmp_path / "h.csv", index=False)
    run_to_failure = load_histories(tmp_path / "h.csv", SPEC, "train")
    np.testing.assert_allclose(run_to_failure.frame["rul"], frame["rul"])
    assert any("run to failure" in n for n in run_to_failure.notes)
    assert not load_histories(tmp_path / "h.csv", SPEC, "test").has_rul


def test_rul_given_only_at_last_row_is_completed(tmp_path):
    frame = simulate_degradation(3, seed=2, truncate=True)
    truth = frame["rul"].copy()
    frame.loc[frame.duplicated("unit", keep="last"), "rul"] = np.nan
    histories = load_histories(frame, SPEC, "test")
    np.testing.assert_allclose(histories.frame["rul"], truth)


def test_missing_columns_are_named(tmp_path):
    frame = simulate_degradation(2, seed=0)
    with pytest.raises(DataError, match="no unit column.*'engine'"):
        load_histories(frame, SPEC.model_copy(update={"unit_column": "engine"}))
    with pytest.raises(DataError, match=r"no sensor column\(s\) \['vibration'\]"):
        load_histories(frame, SPEC.model_copy(update={"sensor_columns": ["sensor_1", "vibration"]}))
    with pytest.raises(DataError, match=r"lacks the columns \['sensor_9'\]|no sensor column"):
        load_histories(frame, SPEC, expected_features=["setting_1", "sensor_9"])


def test_nan_and_inf_reported_or_imputed():
    frame = simulate_degradation(3, seed=0)
    frame.loc[5, "sensor_2"] = np.nan
    frame.loc[7, "sensor_3"] = np.inf
    with pytest.raises(DataError, match=r"NaN or infinite values in columns \{'sensor_2': 1, 'sensor_3': 1\}"):
        load_histories(frame, SPEC)
    imputed = load_histories(frame, SPEC.model_copy(update={"impute": "ffill"}))
    assert np.isfinite(imputed.frame[imputed.features].to_numpy()).all()
    assert imputed.frame.loc[5, "sensor_2"] == frame.loc[4, "sensor_2"]
    assert any("imputed 2" in n for n in imputed.notes)
    frame.loc[frame["unit"] == 2, "sensor_4"] = np.nan
    with pytest.raises(DataError, match="'sensor_4' has no finite value at all for unit 2"):
        load_histories(frame, SPEC.model_copy(update={"impute": "ffill"}))


def test_non_numeric_and_duplicate_rows():
    frame = simulate_degradation(2, seed=0)
    bad = frame.astype({"sensor_1": object})
    bad.loc[3, "sensor_1"] = "n/a"
    with pytest.raises(DataError, match="'sensor_1' holds non-numeric values such as 'n/a'"):
        load_histories(bad, SPEC)
    dup = pd.concat([frame, frame.iloc[[10]]])
    with pytest.raises(DataError, match="unit 1 has several rows at time 11"):
        load_histories(dup, SPEC)


def test_constant_sensor_dropped_and_reported():
    histories = load_histories(simulate_degradation(6, seed=0), SPEC)
    fit = fit_condition_normalizer(histories)
    assert fit.dropped_sensors == ["sensor_8"]
    assert "sensor_8" not in fit.features
    assert len(fit.condition_counts) == 3


def test_short_units_error_pad_skip():
    frame = simulate_degradation(3, seed=0, life_range=(40, 60))
    frame = frame[~((frame["unit"] == 2) & (frame["time"] > 12))]
    histories = load_histories(frame, SPEC)
    features = histories.features
    with pytest.raises(DataError, match=r"1 unit\(s\) have fewer rows than the window of 20: 2 \(12 rows\)"):
        make_windows(histories, features, 20)
    skipped = make_windows(histories, features, 20, last_n=1, short_units="skip")
    assert list(skipped.unit) == [1, 3]
    padded = make_windows(histories, features, 20, last_n=1, short_units="pad")
    assert list(padded.padded) == [False, True, False]
    block = padded.x[1]
    unit2 = histories.frame[histories.frame["unit"] == 2][features].to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(block[:8], np.repeat(unit2[:1], 8, axis=0))
    np.testing.assert_array_equal(block[8:], unit2)
    assert padded.rul[1] == frame[frame["unit"] == 2]["rul"].iloc[-1]


def test_windows_carry_the_units_first_readings_as_baseline():
    frame = simulate_degradation(2, seed=1, life_range=(40, 40))
    frame = frame[~((frame["unit"] == 2) & (frame["time"] > 6))]  # unit 2: 6 rows, fewer than the baseline
    histories = load_histories(frame, SPEC)
    features = histories.features
    w = make_windows(histories, features, 10, baseline_rows=8, short_units="pad")
    assert w.x.shape[1:] == (18, len(features))
    unit1 = histories.frame[histories.frame["unit"] == 1][features].to_numpy(dtype=np.float32)
    unit2 = histories.frame[histories.frame["unit"] == 2][features].to_numpy(dtype=np.float32)
    first, last = w.x[w.unit == 1][0], w.x[w.unit == 1][-1]
    np.testing.assert_array_equal(first[:8], unit1[:8])
    np.testing.assert_array_equal(last[:8], unit1[:8])  # the same reference ahead of every window
    np.testing.assert_array_equal(last[8:], unit1[-10:])
    short = w.x[w.unit == 2][0]
    np.testing.assert_array_equal(short[:8], np.concatenate([np.repeat(unit2[:1], 2, axis=0), unit2]))


def test_windows_stride_and_targets():
    histories = load_histories(simulate_degradation(2, seed=3, life_range=(50, 50)), SPEC)
    features = histories.features
    w = make_windows(histories, features, 10, stride=4)
    per_unit = (50 - 10) // 4 + 1
    assert len(w) == 2 * per_unit
    assert w.rul[per_unit - 1] == 0  # the last window of each unit is always present
    first = histories.frame[features].to_numpy(dtype=np.float32)[50 - 10 - 4 * (per_unit - 1):][:10]
    np.testing.assert_array_equal(w.x[0], first)
    assert (np.diff(w.end_time[:per_unit]) == 4).all()
    assert w.target(30).max() == 30


def test_piecewise_rul_cap():
    np.testing.assert_array_equal(piecewise_rul([300, 125, 124.5, 3, 0], 125), [125, 125, 124.5, 3, 0])
    np.testing.assert_array_equal(piecewise_rul([200, 90], 100), [100, 90])


def test_unit_split_is_disjoint_and_seeded():
    units = np.arange(1, 101)
    train, val = split_units(units, 0.2, seed=7)
    assert len(val) == 20 and len(train) == 80
    assert not set(train) & set(val) and set(train) | set(val) == set(units)
    again, _ = split_units(units, 0.2, seed=7)
    np.testing.assert_array_equal(train, again)
    with pytest.raises(DataError, match="at least 2 units"):
        split_units([5], 0.2, 0)
    # rotating blocks: block 0 is the plain split; blocks 0-4 hold out every unit exactly once
    blocks = [split_units(units, 0.2, seed=7, block=k) for k in range(5)]
    np.testing.assert_array_equal(blocks[0][1], val)
    held = np.concatenate([v for _, v in blocks])
    assert sorted(held.tolist()) == units.tolist()
    for t, v in blocks:
        assert not set(t) & set(v) and len(t) + len(v) == 100
    wrapped = split_units(units, 0.3, seed=7, block=3)  # 4 blocks of 30 wrap around 100 units
    assert len(wrapped[1]) == 30 and not set(wrapped[0]) & set(wrapped[1])


def test_condition_clustering_auto():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 20.0, 100.0], [10.0, 25.0, 100.0], [20.0, 70.0, 60.0], [35.0, 84.0, 100.0],
                        [42.0, 84.0, 100.0], [25.0, 62.0, 60.0]])
    six = centers[rng.integers(0, 6, 3000)] + rng.normal(0, 0.01, (3000, 3))
    mean, scale, found = cluster_operating_conditions(six)
    assert len(found) == 6
    labels = assign_conditions(six, mean, scale, found)
    assert len(np.unique(labels)) == 6
    jitter = rng.normal(0, 0.002, (3000, 3))  # one condition with sensor noise on the settings (FD001-like)
    assert len(cluster_operating_conditions(jitter)[2]) == 1
    with pytest.raises(DataError, match="take only"):
        cluster_operating_conditions(np.zeros((50, 2)) + [1.0, 2.0], n_conditions=3)


def test_normalizer_module_matches_numpy_statistics():
    histories = load_histories(simulate_degradation(8, seed=4), SPEC)
    fit = fit_condition_normalizer(histories)
    frame = histories.frame
    x = frame[fit.features].to_numpy(dtype=np.float32)
    z = fit.module(torch.as_tensor(x[None])).numpy()[0]
    labels = fit.module.conditions(torch.as_tensor(x[None])).numpy()[0]
    for k in range(3):
        rows = z[labels == k]
        np.testing.assert_allclose(rows.mean(axis=0), 0, atol=1e-3)
        np.testing.assert_allclose(rows.std(axis=0), 1, atol=1e-2)


def test_a_unit_shorter_than_the_reference_never_borrows_the_next_units_rows():
    from shopfloor.maintenance.histories import HistorySpec, read_sensor_table
    from shopfloor.maintenance.windows import make_windows

    frame = pd.DataFrame({"unit": [1] * 3 + [2] * 6, "time": [1, 2, 3, 1, 2, 3, 4, 5, 6],
                          "s": [1.0, 2.0, 3.0, 100, 101, 102, 103, 104, 105]})
    histories = read_sensor_table(frame, HistorySpec(), run_to_failure=True)
    windows = make_windows(histories, ["s"], window=2, baseline_rows=5)
    first_unit = windows.x[windows.unit == 1]
    np.testing.assert_array_equal(first_unit[:, :5, 0], [[1, 1, 1, 2, 3]] * len(first_unit))  # its own, padded
    assert windows.x[windows.unit == 2][0, :5, 0].tolist() == [100, 101, 102, 103, 104]

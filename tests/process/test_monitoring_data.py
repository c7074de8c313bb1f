"""Process records: readers, bad input, control limits, detection metrics (fast, no training)."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from shopfloor.core.errors import DataError
import torch

from shopfloor.process.monitoring.fitting import (
    Segment,
    block_length,
    bootstrap_limit,
    control_limit,
    crossfit_folds,
    empirical_limit,
    fit_pca,
    normal_segments,
    run_windows,
    segment_windows,
    split_normal,
)
from shopfloor.process.monitoring.metrics import detection_delay, detection_metrics
from shopfloor.process.monitoring.networks import MonitoringGraph, ResidualFeatures
from shopfloor.process.records import LABEL, NORMAL, TIME, ProcessSpec, load_records, read_tep_file
from shopfloor.process.synthetic import FAULTS, simulate_process

SPEC = ProcessSpec()


def test_table_is_read_with_run_time_and_labels():
    frame = pd.concat([simulate_process(50, 0, run="a"), simulate_process(60, 1, "step", 20, run="b")])
    records = load_records(frame, SPEC)
    assert records.variables == [f"x{i:02d}" for i in range(1, 13)]
    assert records.has_labels and records.runs == ["a", "b"] and records.faults == ["step"]
    assert (records.frame[LABEL] == NORMAL).sum() == 50 + 20
    assert len(records.normal().frame) == 70


def test_missing_run_and_time_are_noted_and_zero_label_is_normal():
    frame = simulate_process(40, 0).drop(columns=["run", "time"]).assign(fault=0)
    records = load_records(frame, SPEC)
    assert records.runs == ["run_1"] and records.frame[TIME].tolist() == list(range(1, 41))
    assert any("no 'run' column" in n for n in records.notes) and any("no 'time' column" in n for n in records.notes)
    assert set(records.frame[LABEL]) == {NORMAL}


@pytest.mark.parametrize("change, message", [
    (lambda f: f.assign(x03=np.where(np.arange(len(f)) == 5, np.nan, f.x03)),
     r"1 missing or infinite value.*row 6 x03"),
    (lambda f: f.assign(time=f.time[::-1].to_numpy()), r"time does not increase within run 'run_1'.*Sort the rows"),
    (lambda f: f.assign(x05=["a"] * len(f)), None),  # text columns are not variables: noted, not an error
    (lambda f: f.assign(time=["t"] * len(f)), r"time column 'time' holds 30 value\(s\) that are not numbers"),
])
def test_bad_tables_get_clear_errors(change, message):
    frame = change(simulate_process(30, 0))
    if message is None:
        records = load_records(frame, SPEC)
        assert "x05" not in records.variables and any("'x05'" in n for n in records.notes)
        return
    with pytest.raises(DataError, match=message):
        load_records(frame, SPEC)


def test_missing_model_columns_are_listed(tmp_path):
    path = tmp_path / "recent.csv"
    simulate_process(30, 0).drop(columns=["x02", "x07"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) 'x02', 'x07'; expected the process variables"):
        load_records(path, SPEC, "test", expected=[f"x{i:02d}" for i in range(1, 13)])
    with pytest.raises(DataError, match="does not exist"):
        load_records(tmp_path / "nope.csv", SPEC)
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(DataError, match=r"unsupported file type '.txt'"):
        load_records(tmp_path / "x.txt", SPEC)


def test_tep_files_transposed_normal_run_and_test_onset(tmp_path):
    rng = np.random.default_rng(0)
    with gzip.open(tmp_path / "d00.dat.gz", "wt") as fh:
        np.savetxt(fh, rng.normal(size=(52, 60)))  # stored transposed, like the Braatz d00.dat
    np.savetxt(tmp_path / "d04_te.dat", rng.normal(size=(30, 52)))
    np.savetxt(tmp_path / "d04.dat", rng.normal(size=(30, 52)))
    train = load_records(tmp_path, ProcessSpec(), "train")
    assert len(train.frame) == 90 and train.runs == ["d00", "d04"] and train.faults == ["fault_04"]
    assert train.unobservable == ["fault_03", "fault_09", "fault_15"]
    test = load_records(tmp_path, ProcessSpec(tep_onset=10), "test")
    labels = test.frame[LABEL].to_numpy()
    assert (labels[:10] == NORMAL).all() and (labels[10:] == "fault_04").all()
    np.savetxt(tmp_path / "d05.dat", rng.normal(size=(30, 50)))
    with pytest.raises(DataError, match="got 50 columns, a TEP file has 52"):
        read_tep_file(tmp_path / "d05.dat", 160)


def test_segments_split_and_windows_never_cross_a_fault_or_run():
    frame = pd.concat([simulate_process(100, 0, run="a"), simulate_process(100, 1, "drift", 60, run="b")])
    records = load_records(frame, SPEC)
    segments = normal_segments(records)
    assert [len(s.rows) for s in segments] == [100, 60]
    fit, held = split_normal(segments, 0.25, 10)
    assert [len(s.rows) for s in held] == [25, 15] and [len(s.rows) for s in fit] == [75, 45]
    windows = segment_windows(records.values(), fit, 10)
    assert windows.shape == (66 + 36, 10, 12)
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    w, padded = run_windows(values, 3)
    assert w.shape == (4, 3, 3) and padded.tolist() == [True, True, False, False]
    assert w[0].tolist() == [values[0].tolist()] * 3 and w[-1].tolist() == values[1:].tolist()


def test_pca_limits_hold_their_false_alarm_rate_on_fresh_normal_data():
    """Limits set on held-out normal data at 1% give about 1% alarms on independent normal runs."""
    train = simulate_process(3000, 0)[[f"x{i:02d}" for i in range(1, 13)]].to_numpy()
    fresh = np.concatenate([simulate_process(3000, s)[[f"x{i:02d}" for i in range(1, 13)]].to_numpy()
                            for s in (11, 12, 13)])
    mean, std = train[:2000].mean(0), train[:2000].std(0)
    z, zf = (train - mean) / std, (fresh - mean) / std
    loadings, eigenvalues = fit_pca(z[:2000], 0.9)

    def stats(x):
        t = x @ loadings
        return (t ** 2 / eigenvalues).sum(1), ((x - t @ loadings.T) ** 2).sum(1)

    for held, new in zip(stats(z[2000:]), stats(zf)):
        rate = (new > control_limit(held, 0.01)).mean()
        assert 0.002 <= rate <= 0.03, rate
        assert abs(control_limit(held, 0.05) - empirical_limit(held, 0.05)) < 0.2 * empirical_limit(held, 0.05)


def test_crossfit_folds_hold_each_block_out_once_and_never_window_across_the_gap():
    segments = [Segment("a", np.arange(100)), Segment("b", np.arange(100, 140)), Segment("c", np.arange(200, 215))]
    folds = crossfit_folds(segments, 4, 5)
    held = np.concatenate([s.rows for _, h in folds for s in h])
    assert sorted(held.tolist()) == list(range(140))  # a and b split in 4 blocks each; c too short: always fitted
    for fit, held_part in folds:
        fit_rows = np.concatenate([s.rows for s in fit])
        assert not set(fit_rows) & set(np.concatenate([s.rows for s in held_part]))
        assert set(range(200, 215)) <= set(fit_rows)
        assert all((np.diff(s.rows) == 1).all() for s in fit)  # each fit piece is contiguous: no window spans a gap
    assert [len(s.rows) for s in folds[1][0] if s.run == "a"] == [25, 50]


def test_limit_rules_known_answers():
    rng = np.random.default_rng(0)
    calibration, fresh = rng.chisquare(4, 4000), rng.chisquare(4, 200_000)
    for rule in ("box", "empirical", "bootstrap"):
        rate = (fresh > control_limit(calibration, 0.01, rule)).mean()
        assert 0.004 <= rate <= 0.015, (rule, rate)
    assert empirical_limit(np.arange(1.0, 100.0), 0.05) == 95.0  # ceil(100 * 0.95) = 95th of 99 values
    assert empirical_limit(np.arange(1.0, 11.0), 0.01) >= 10.0  # beyond the largest: extrapolated, never below it
    # strongly autocorrelated calibration data: longer blocks and a higher (more cautious) bound than Box's point
    ar = np.zeros(600)
    for t in range(1, 600):
        ar[t] = 0.95 * ar[t - 1] + rng.normal()
    slow = ar ** 2 + 1.0
    assert block_length(slow) > 10 and block_length(rng.normal(size=600) ** 2) == 1
    assert bootstrap_limit(slow, 0.01) > control_limit(slow, 0.01, "box")
    with pytest.raises(ValueError, match="unknown limit rule"):
        control_limit(slow, 0.01, "mean")


def test_residual_features_and_their_score_known_answers():
    residual = torch.zeros(2, 6, 3)
    residual[0, :, 0] = 2.0  # a shift: mean 2, no spread, no steps
    residual[1, :, 1] = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])  # alternating: spread 1, mean step 2
    raw = ResidualFeatures.raw(residual)
    assert raw.shape == (2, 3, 3)
    assert raw[0, 0].tolist() == pytest.approx([2.0, 0.0, 0.0])
    assert float(raw[1, 1, 1]) == pytest.approx(np.log(1 + 1e-3), rel=1e-3) and float(raw[1, 2, 1]) == pytest.approx(
        np.log(2 + 1e-3), rel=1e-3)
    graph = MonitoringGraph(3, 1, 6, "dense", 8, 2)
    with torch.no_grad():
        score, parts = graph.unscaled_score(torch.randn(4, 6, 3))
    assert torch.allclose(parts.sum(-1), score, rtol=1e-5) and (parts >= 0).all()


def test_detection_delay_and_metrics():
    alarms = np.array([0, 0, 1, 0, 1, 1, 1, 0], dtype=bool)
    assert detection_delay(alarms, 1, 3) == 3 and detection_delay(alarms, 1, 4) is None
    labels = np.array([NORMAL] * 4 + ["f1"] * 4)
    runs = [(labels, np.array([0, 1, 0, 0, 1, 1, 1, 0], bool)), (np.array([NORMAL] * 4), np.zeros(4, bool)),
            (np.array([NORMAL] * 2 + ["f2"] * 2), np.array([0, 0, 0, 0], bool))]
    m = detection_metrics(runs, 2, unobservable=["f2"])
    assert m["false_alarm_rate"] == pytest.approx(1 / 10)
    assert m["per_fault"] == {"f1": {"detection_rate": 0.75, "delay": 0.0, "missed_runs": 0, "n_samples": 4}}
    assert m["mean_detection_rate"] == 0.75 and m["unobservable"]["f2"]["detection_rate"] == 0.0
    assert m["unobservable"]["f2"]["missed_runs"] == 1


def test_simulator_faults_change_the_record_after_onset_only():
    base = simulate_process(200, 3)
    for fault in FAULTS:
        run = simulate_process(200, 3, fault, 100)
        cols = [c for c in base.columns if c.startswith("x")]
        assert np.allclose(base[cols].to_numpy()[:100], run[cols].to_numpy()[:100])
        assert not np.allclose(base[cols].to_numpy()[100:], run[cols].to_numpy()[100:])
        assert (run.fault.iloc[100:] == fault).all() and (run.fault.iloc[:100] == "normal").all()

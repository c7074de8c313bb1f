"""Vibration inputs that would give silent wrong answers: transposed arrays, odd dtypes, copied recordings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopfloor.core.errors import DataError
from shopfloor.maintenance.fault_diagnosis.task import FaultDiagnosis
from shopfloor.maintenance.vibration import (
    Recording,
    read_signal_file,
    segment_statistics,
    signal_array,
    validate_recordings,
)


def test_files_and_arrays_share_one_layout():
    x = np.arange(12, dtype=np.float64).reshape(6, 2)  # (samples, channels)
    np.testing.assert_array_equal(signal_array(x, "a"), x.T)
    np.testing.assert_array_equal(signal_array(x[:, 0], "a"), x[None, :, 0])
    for transposed in (x.T, np.ones((3, 3))):
        with pytest.raises(DataError, match=r"looks like \(channels, samples\).*array\.T"):
            signal_array(transposed, "a")


@pytest.mark.parametrize("bad, match", [
    (np.array(["1", "2"]), "real numbers"), (np.ones(4, dtype=complex), "real numbers"),
    (np.ones(4, dtype=bool), "real numbers"), (np.ones((2, 2, 2)), "3-D array"), (np.float64(1.0), "0-D array"),
    (np.zeros((0,)), "no samples"), (np.zeros((5, 0)), "no samples"),
])
def test_arrays_that_are_not_signals_are_refused(bad, match):
    with pytest.raises(DataError, match=match):
        signal_array(bad, "<array>")


def test_transposed_npy_and_wide_csv_files_are_refused(tmp_path):
    np.save(tmp_path / "wide.npy", np.ones((2, 500)))
    with pytest.raises(DataError, match=r"2 x 500 array.*looks like \(channels, samples\)"):
        read_signal_file(tmp_path / "wide.npy", 12_000)
    pd.DataFrame(np.ones((1, 300))).to_csv(tmp_path / "wide.csv", index=False, header=False)
    with pytest.raises(DataError, match=r"1 x 300 array"):
        read_signal_file(tmp_path / "wide.csv", 12_000)
    pd.DataFrame({"DE": np.ones(300), "FE": np.zeros(300)}).to_csv(tmp_path / "ok.csv", index=False)
    assert read_signal_file(tmp_path / "ok.csv", 12_000).signal.shape == (2, 300)


def test_float32_overflow_is_refused_as_infinite(tmp_path):
    np.save(tmp_path / "huge.npy", np.full(100, 1e300))
    with pytest.raises(DataError, match="NaN or infinite"):
        validate_recordings([read_signal_file(tmp_path / "huge.npy", 12_000)])


def test_segment_statistics_are_rms_and_peak_per_channel():
    segments = np.array([[[3.0, -4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]])
    values, names = segment_statistics(segments, ["DE", "FE"])
    assert names == ["DE_rms", "DE_peak", "FE_rms", "FE_peak"]
    np.testing.assert_allclose(values, [[2.5, 4.0, 1.0, 1.0]])


def test_copied_recordings_are_refused_under_two_classes_and_a_warning_under_one():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(1, 9000)).astype(np.float32), rng.normal(size=(1, 9000)).astype(np.float32)
    conflicting = [Recording(a, 12_000, "normal", "a.npy"), Recording(a.copy(), 12_000, "ball", "a_copy.npy"),
                   Recording(b, 12_000, "ball", "b.npy")]
    with pytest.raises(DataError, match=r"a\.npy \(normal\) = a_copy\.npy \(ball\)"):
        FaultDiagnosis(segment_length=512).fit(conflicting)
    task = FaultDiagnosis(segment_length=512)
    with pytest.warns(UserWarning, match=r"1 recording\(s\) are exact copies.*a\.npy = a2\.npy"):
        task._check_duplicates([Recording(a, 12_000, "normal", "a.npy"), Recording(a, 12_000, "normal", "a2.npy")])
    assert "exact copies" in task.state["warnings"][0]

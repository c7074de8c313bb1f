"""Property-based: whatever bytes, shapes or dtypes reach the maintenance readers, they return or raise DataError.

Random bytes and generated near-valid files (the right header with random cells, arrays of any shape and dtype
saved as .npy/.mat/.wav) go through the history, table and vibration readers; anything but a DataError (a
TypeError, KeyError, IndexError... that would end in a traceback) fails the test."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from shopfloor.core.errors import DataError  # noqa: E402
from shopfloor.maintenance.histories import HistorySpec, load_histories  # noqa: E402
from shopfloor.core.tables import read_table  # noqa: E402
from shopfloor.maintenance.tabular import binary_column, encode, fit_schema  # noqa: E402
from shopfloor.maintenance.vibration import (  # noqa: E402
    read_cwru_mat,
    read_signal_file,
    signal_array,
    validate_recordings,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
ODD_CELLS = st.one_of(
    st.integers(-10**20, 10**20).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "inf", "-inf", "NA", "abc", "1e400", "-0", "True", "1,5", '"', "\u00e9", " 3 "]),
    st.text(max_size=4))
NUMBERS = st.one_of(st.integers(-3, 40).map(str), st.floats(-1e3, 1e3).map(lambda v: f"{v:.3f}"))
CELLS = st.one_of(NUMBERS, NUMBERS, NUMBERS, ODD_CELLS)  # mostly numbers, so rows get past the first checks
EXTRA = ["rul", "s1", "s2", "setting", "row_id", "batch", "Type", "Machine failure", "TWF", "", "unit", "time"]


@st.composite
def near_valid_csv(draw) -> bytes:
    """A header (for histories mostly unit and time first) and rows of mostly numeric cells."""
    header = draw(st.sampled_from([["unit", "time"], []])) + draw(st.lists(st.sampled_from(EXTRA), max_size=5))
    header = header or ["s1"]
    width = st.just(len(header)) if draw(st.integers(0, 9)) else st.integers(0, len(header) + 1)
    rows = draw(st.lists(width.flatmap(lambda n: st.lists(CELLS, min_size=n, max_size=n)), max_size=15))
    lines = [",".join(header)] + [",".join(r) for r in rows]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


def _write(data: bytes, suffix: str) -> Path:
    folder = Path(tempfile.mkdtemp())
    path = folder / f"input{suffix}"
    path.write_bytes(data)
    return path


def _only_data_errors(call) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings are fine; exceptions other than DataError are not
        try:
            call()
        except DataError:
            pass


@FUZZ
@given(data=st.one_of(st.binary(max_size=400), near_valid_csv()), split=st.sampled_from(["train", "test"]))
def test_history_reader_raises_only_data_errors(data, split):
    path = _write(data, ".csv")
    spec = HistorySpec(setting_columns=["setting"] if b"setting" in data else [])
    expected = ["s1"] if split == "test" else None
    _only_data_errors(lambda: load_histories(path, spec, split, expected_features=expected))


@FUZZ
@given(data=st.one_of(st.binary(max_size=400), near_valid_csv()))
def test_table_reader_raises_only_data_errors(data):
    path = _write(data, ".csv")

    def read_and_encode():
        frame = read_table(path)
        schema = fit_schema(frame, exclude=["Machine failure"], impute=b"nan" in data)
        encode(frame, schema)
        binary_column(frame, "Machine failure")

    _only_data_errors(read_and_encode)


@FUZZ
@given(data=st.binary(max_size=600), suffix=st.sampled_from([".npy", ".csv", ".wav", ".mat"]))
def test_signal_reader_raises_only_data_errors_on_random_bytes(data, suffix):
    path = _write(data, suffix)
    _only_data_errors(lambda: validate_recordings([read_signal_file(path, 12_000)], 64))


DTYPES = st.sampled_from(["int8", "uint8", "int16", "uint32", "int64", "float16", "float32", "float64",
                          "complex64", "bool", "<U3", "datetime64[s]"])
ARRAYS = DTYPES.flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                                         max_side=40)))


@FUZZ
@given(array=ARRAYS)
def test_signal_arrays_of_any_shape_and_dtype_raise_only_data_errors(array):
    _only_data_errors(lambda: validate_recordings([_recording(signal_array(array, "<array>"))], 64))
    _only_data_errors(lambda: signal_array(array.astype(object) if array.dtype.kind != "M" else array, "<array>"))
    path = _write(b"", ".npy")
    np.save(path, array)
    _only_data_errors(lambda: validate_recordings([read_signal_file(path, 12_000)]))


@FUZZ
@given(array=ARRAYS, key=st.sampled_from(["X097_DE_time", "X097_FE_time", "DE_time", "X097RPM"]))
def test_mat_files_with_any_contents_raise_only_data_errors(array, key):
    from scipy.io import savemat

    path = _write(b"", ".mat").with_name("97.mat")
    try:
        savemat(path, {key: array, "X097RPM": array[:1] if array.ndim else array})
    except Exception:  # scipy cannot write every dtype: nothing to read then
        return
    _only_data_errors(lambda: validate_recordings([read_cwru_mat(path, ("DE",), 12_000, labelled=False)]))


@FUZZ
@given(array=st.sampled_from(["int16", "int32", "uint8", "float32"]).flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=40))),
    rate=st.integers(1, 96_000))
def test_wav_files_of_any_shape_raise_only_data_errors(array, rate):
    from scipy.io import wavfile

    path = _write(b"", ".wav")
    try:
        wavfile.write(path, rate, array)
    except Exception:
        return
    _only_data_errors(lambda: validate_recordings([read_signal_file(path, 12_000)]))


def _recording(signal):
    from shopfloor.maintenance.vibration import Recording

    return Recording(signal, 12_000.0)

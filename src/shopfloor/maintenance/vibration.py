"""Vibration recordings: readers, validation, segmentation and the leak-free train/test split.

Two layouts are read by :func:`read_recordings`:

- **CWRU** ``.mat`` files (anywhere under the folder): the class comes from the file name
  (``normal``, ``B007``, ``IR014``, ``OR021@6``...; the bare CWRU numbers such as ``105.mat`` of the
  12 kHz drive-end set are known too), the channel from the variable ``XNNN_<channel>_time``
  (``DE`` drive end by default) and the sampling rate from a ``12k``/``48k`` token in the path.
- **Folder per class**: ``root/<class>/<recording>.csv|.npy|.wav``. A CSV holds one column per
  channel (a header row is allowed), a ``.npy`` an array (samples,) or (samples, channels), a WAV
  its own channels. CSV and NPY carry no sampling rate: pass it (``sampling_rate``); a WAV's rate is
  checked against it.

Every recording is checked: real numeric values (no text, complex or boolean arrays), finite, at least one
segment long, one sampling rate for all. Arrays and files have one layout, ``(samples,)`` or ``(samples,
channels)`` (:func:`signal_array`); a 2-D array with no more rows than columns looks like ``(channels, samples)``
and is refused with a message, never transposed by guess.

**Leak-free split.** Windows overlap, so splitting *windows* at random puts nearly identical
samples on both sides. Instead each recording is cut in time: the first part feeds training, the
last ``test_fraction`` is held out for testing, and a gap of one segment length separates the two
regions (and likewise the training and validation regions), so no window on one side shares a
single sample with a window on the other, and neighbouring windows across the cut are not even
adjacent. :func:`split_regions` computes the sample ranges; :func:`segment` cuts windows inside one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from shopfloor.core.errors import DataError

SIGNAL_EXTENSIONS = (".csv", ".npy", ".wav")

# 12 kHz drive-end CWRU files by their bare number (the site's original names), plus the normal baseline.
_CWRU_NUMBERS = {
    **{n: "normal" for n in (97, 98, 99, 100)},
    **{n: "IR007" for n in (105, 106, 107, 108)}, **{n: "B007" for n in (118, 119, 120, 121)},
    **{n: "OR007@6" for n in (130, 131, 132, 133)}, **{n: "IR014" for n in (169, 170, 171, 172)},
    **{n: "B014" for n in (185, 186, 187, 188)}, **{n: "OR014@6" for n in (197, 198, 199, 200)},
    **{n: "IR021" for n in (209, 210, 211, 212)}, **{n: "B021" for n in (222, 223, 224, 225)},
    **{n: "OR021@6" for n in (234, 235, 236, 237)},
}
_CWRU_LABEL = re.compile(r"(?i)(?<![a-z])(normal|B0\d\d|IR0\d\d|OR0\d\d(?:@\d+)?)(?![0-9])")
_RATE_TOKEN = re.compile(r"(?i)(?<![0-9])(12|48) ?k(?:hz)?(?![a-z0-9])")


@dataclass
class Recording:
    """One vibration recording: ``signal`` is float32 (channels, samples)."""

    signal: np.ndarray
    sampling_rate: float
    label: str | None = None
    source: str = "<array>"
    meta: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def n_channels(self) -> int:
        return int(self.signal.shape[0])


# ----------------------------------------------------------------------------- reading
def cwru_label(path: Path) -> str:
    """The fault class encoded in a CWRU file name (``normal``, ``B007``, ``IR014``, ``OR021@6``...)."""
    match = _CWRU_LABEL.search(path.stem)
    if match:
        token = match.group(1)
        return "normal" if token.lower() == "normal" else token.upper()
    if path.stem.isdigit() and int(path.stem) in _CWRU_NUMBERS:
        return _CWRU_NUMBERS[int(path.stem)]
    raise DataError(f"cannot tell the fault class of {path} from its name: CWRU files must contain normal, "
                    "B007, IR014, OR021@6 ... (or be one of the 12 kHz drive-end numbers); rename it or use the "
                    "folder-per-class layout")


def _rate_from_path(path: Path) -> float | None:
    for part in reversed(path.parts):
        match = _RATE_TOKEN.search(part)
        if match:
            return float(int(match.group(1)) * 1000)
    return None


def _check_rate(path: Path, found: float | None, expected: float | None) -> float:
    if found is not None and not (np.isfinite(found) and found > 0):
        raise DataError(f"{path} gives a sampling rate of {found:g} Hz; it must be a positive number")
    if found is None and expected is None:
        raise DataError(f"the sampling rate of {path} is unknown: pass sampling_rate (--sampling-rate HZ)")
    if found is not None and expected is not None and abs(found - expected) > 1e-6 * expected:
        raise DataError(f"{path} is sampled at {found:g} Hz but sampling_rate is {expected:g} Hz; resample the "
                        "recording or set --sampling-rate to match (one model serves one sampling rate)")
    return float(found if found is not None else expected)  # type: ignore[arg-type]


def read_cwru_mat(path: str | Path, channels: Sequence[str] = ("DE",), sampling_rate: float | None = None,
                  labelled: bool = True) -> Recording:
    """Read one CWRU ``.mat`` file: channels ``XNNN_<channel>_time``; class from the file name (``labelled``)."""
    from scipy.io import loadmat

    path = Path(path)
    if not channels:
        raise DataError("no channels given; name the CWRU channels to read (--channels DE or DE,FE)")
    try:
        content = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DataError(f"cannot read MATLAB file {path}: {exc}") from exc
    number = re.findall(r"\d+", path.stem)
    rows = []
    for channel in channels:
        keys = [k for k in content if k.endswith(f"_{channel}_time")]
        if len(keys) > 1:  # some files hold two recordings; take the one named after the file number
            keys = [k for k in keys if number and k.startswith(f"X{int(number[-1]):03d}")] or keys[:1]
        if not keys:
            found = sorted(k for k in content if k.endswith("_time"))
            raise DataError(f"{path} has no {channel} channel (variables *_{channel}_time); it has {found}. "
                            "Choose channels among those (--channels DE,FE)")
        values = content[keys[0]]
        if not isinstance(values, np.ndarray) or values.dtype.kind not in "iuf" or values.size == 0:
            kind = values.dtype if isinstance(values, np.ndarray) else type(values).__name__
            raise DataError(f"{path}: variable {keys[0]} holds {getattr(values, 'size', '?')} {kind} value(s); a "
                            "channel must be a non-empty vector of real numbers")
        rows.append(np.asarray(values, dtype=np.float64).ravel())
    length = min(len(r) for r in rows)
    rpm = None
    for key, value in content.items():
        if key.endswith("RPM"):
            try:
                rpm = float(np.ravel(value)[0])
            except (TypeError, ValueError, IndexError):
                rpm = None  # an unreadable speed is only metadata
            break
    with np.errstate(over="ignore"):  # beyond float32: inf, refused by validate_recordings
        signal = np.stack([r[:length] for r in rows]).astype(np.float32)
    rate = _check_rate(path, _rate_from_path(path), sampling_rate)
    label = cwru_label(path) if labelled else None
    return Recording(signal, rate, label, str(path), {"rpm": rpm} if rpm is not None else {})


def read_signal_file(path: str | Path, sampling_rate: float | None = None) -> Recording:
    """Read a ``.csv``/``.npy``/``.wav``/``.mat`` signal (label unset); see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"signal file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return read_cwru_mat(path, sampling_rate=sampling_rate, labelled=False)
    if suffix == ".wav":
        from scipy.io import wavfile

        try:
            rate, data = wavfile.read(str(path))
        except Exception as exc:
            raise DataError(f"cannot read WAV file {path}: {exc}") from exc
        data = np.asarray(data)
        if np.issubdtype(data.dtype, np.integer):
            data = data.astype(np.float64) / float(np.iinfo(data.dtype).max)
        # a WAV's layout is fixed by the format: (frames,) or (frames, channels)
        return Recording(signal_array(data, path, layout_known=True), _check_rate(path, float(rate), sampling_rate),
                         source=str(path))
    if suffix == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"cannot read NumPy file {path}: {exc}") from exc
    elif suffix == ".csv":
        data = _read_csv_signal(path)
    else:
        raise DataError(f"{path} is not a signal file; use one of {', '.join(SIGNAL_EXTENSIONS)} or .mat")
    return Recording(signal_array(data, path), _check_rate(path, None, sampling_rate), source=str(path))


def _read_csv_signal(path: Path) -> np.ndarray:
    import pandas as pd

    try:
        frame = pd.read_csv(path, header=None)
        if frame.shape[0] and not all(_is_number(v) for v in frame.iloc[0]):
            frame = frame.iloc[1:]  # a header row
        return frame.apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; a CSV signal holds one column of numbers per channel") from None
    except Exception as exc:  # pandas raises many types for malformed text (ValueError, ParserError, TypeError...)
        raise DataError(f"{path} must hold numbers only, one column per channel (an optional header row): "
                        f"{exc}") from None


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def signal_array(data, source: Path | str, layout_known: bool = False) -> np.ndarray:
    """A signal given as ``(samples,)`` or ``(samples, channels)`` (files and arrays alike) as float32
    ``(channels, samples)``.

    Refused with a :class:`DataError`: non-numeric, complex or boolean values, other than 1 or 2 dimensions, no
    samples or channels, and (unless ``layout_known``, as for WAV) a 2-D array with no more rows than columns,
    which looks like ``(channels, samples)``: the message says to transpose it, the layout is never guessed.
    """
    data = np.asarray(data) if not isinstance(data, np.ndarray) else data
    if data.dtype.kind not in "iuf":
        raise DataError(f"{source} holds {data.dtype} values; a signal must be real numbers (integers or floats)")
    if data.ndim not in (1, 2):
        raise DataError(f"{source} holds a {data.ndim}-D array of shape {data.shape}; a signal is (samples,) or "
                        "(samples, channels)")
    if data.ndim == 2 and not layout_known and data.shape[1] > 1 and data.shape[0] <= data.shape[1]:
        raise DataError(f"{source} holds a {data.shape[0]} x {data.shape[1]} array: no more rows than columns, so it "
                        "looks like (channels, samples). Signals are (samples, channels), one column per channel, in "
                        "files and arrays alike: pass array.T (or a 1-D array for one channel)")
    data = data[None, :] if data.ndim == 1 else data.T
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise DataError(f"{source} holds no samples (shape {data.shape[::-1]}); a signal needs at least one sample "
                        "per channel")
    with np.errstate(over="ignore"):  # beyond float32: inf, refused by validate_recordings
        return data.astype(np.float32)


_as_channels_first = signal_array  # the earlier name


def segment_statistics(segments: np.ndarray, channels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Amplitude statistics of segments (n, C, L): per channel the RMS and the peak |x|, (n, 2C), and their names
    (``DE_rms``, ``DE_peak``, ...): what the training ranges of a fault-diagnosis model cover."""
    x = np.asarray(segments, dtype=np.float64)
    rms = np.sqrt(np.mean(x ** 2, axis=2)) if x.size else np.zeros(x.shape[:2])
    peak = np.abs(x).max(axis=2) if x.size else np.zeros(x.shape[:2])
    values = np.stack([rms, peak], axis=2).reshape(len(x), -1)
    return values, [f"{c}_{stat}" for c in channels for stat in ("rms", "peak")]


def _label_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_recordings(root: str | Path, sampling_rate: float | None = None,
                    channels: Sequence[str] = ("DE",)) -> list[Recording]:
    """All labelled recordings under ``root`` (CWRU ``.mat`` files or one sub-folder per class), validated."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if root.is_file():
        raise DataError(f"{root} is a file; pass the folder that holds the recordings (one sub-folder per class "
                        "or CWRU .mat files)")
    mats = sorted(p for p in root.rglob("*.mat") if not p.name.startswith("."))
    if mats:
        recordings = [read_cwru_mat(p, channels, sampling_rate) for p in mats]
    else:
        recordings = []
        for folder in _label_folders(root):
            for p in sorted(folder.iterdir()):
                if p.is_file() and p.suffix.lower() in SIGNAL_EXTENSIONS and not p.name.startswith("."):
                    rec = read_signal_file(p, sampling_rate)
                    rec.label = folder.name
                    recordings.append(rec)
        if not recordings:
            raise DataError(f"no recordings found under {root}: expected CWRU .mat files or one sub-folder per "
                            f"class holding {', '.join(SIGNAL_EXTENSIONS)} files")
    validate_recordings(recordings)
    return recordings


def validate_recordings(recordings: Sequence[Recording], segment_length: int | None = None) -> None:
    """Refuse non-finite values, mixed sampling rates or channel counts, and signals shorter than a segment."""
    if not recordings:
        raise DataError("no recordings given")
    for rec in recordings:
        bad = ~np.isfinite(rec.signal)
        if bad.any():
            first = int(np.argwhere(bad)[0][1])
            raise DataError(f"{rec.source} has {int(bad.sum())} NaN or infinite values (first at sample {first}); "
                            "clean or cut the recording")
        if segment_length is not None and rec.n_samples < segment_length:
            raise DataError(f"{rec.source} has {rec.n_samples} samples, shorter than one segment of "
                            f"{segment_length}; use a longer recording or a smaller --segment-length")
    rates = {}
    for rec in recordings:
        rates.setdefault(rec.sampling_rate, []).append(rec.source)
    if len(rates) > 1:
        listing = "; ".join(f"{rate:g} Hz: {', '.join(Path(s).name for s in srcs[:3])}" for rate, srcs in rates.items())
        raise DataError(f"recordings have mixed sampling rates ({listing}); resample them to one rate or train "
                        "one model per rate")
    channel_counts = {rec.n_channels for rec in recordings}
    if len(channel_counts) > 1:
        raise DataError(f"recordings have different numbers of channels {sorted(channel_counts)}; "
                        "give every recording the same channels")


# ----------------------------------------------------------------------------- segmentation and split
@dataclass(frozen=True)
class Regions:
    """Sample ranges ``[start, stop)`` of one recording for training, validation and test."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]


def split_regions(n_samples: int, segment_length: int, test_fraction: float, val_fraction: float) -> Regions:
    """Cut ``[0, n_samples)`` in time: train | gap | val | gap | test, each gap one segment long.

    The test region is the last ``test_fraction`` of the recording; validation the last
    ``val_fraction`` of what precedes it. Each region holds at least one segment, else DataError.
    """
    gap = segment_length
    test_start = int(round(n_samples * (1 - test_fraction))) if test_fraction > 0 else n_samples
    train_end = test_start - gap if test_fraction > 0 else n_samples
    val_start = int(round(train_end * (1 - val_fraction))) if val_fraction > 0 else train_end
    regions = Regions(train=(0, val_start - gap if val_fraction > 0 else train_end),
                      val=(val_start, train_end), test=(test_start, n_samples))
    needed = {"train": True, "val": val_fraction > 0, "test": test_fraction > 0}
    for name, (start, stop) in vars(regions).items():
        if needed[name] and stop - start < segment_length:
            raise DataError(f"a recording of {n_samples} samples is too short to hold a {name} region of one "
                            f"{segment_length}-sample segment after the leak-free time split (train | gap | val | "
                            "gap | test, gaps one segment long); use longer recordings or a smaller --segment-length")
    return regions


def segment(signal: np.ndarray, segment_length: int, stride: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Windows of ``segment_length`` every ``stride`` samples inside ``signal[:, start:stop]``: (n, C, L)."""
    stop = signal.shape[1] if stop is None else stop
    if stop - start < segment_length:
        raise DataError(f"a signal part of {stop - start} samples is shorter than one segment of {segment_length}")
    starts = np.arange(start, stop - segment_length + 1, stride)
    view = np.lib.stride_tricks.sliding_window_view(signal[:, start:stop], segment_length, axis=1)
    return np.ascontiguousarray(view[:, starts - start].transpose(1, 0, 2), dtype=np.float32)


def segment_region(recordings: Iterable[Recording], region: str, segment_length: int, stride: int,
                   test_fraction: float, val_fraction: float, labels: Sequence[str]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Windows and class indices from one region ("train", "val", "test" or "all") of every recording."""
    xs, ys = [], []
    index = {name: i for i, name in enumerate(labels)}
    for rec in recordings:
        if rec.label not in index:
            raise DataError(f"{rec.source} has class {rec.label!r}, unknown to this model (classes: {list(labels)})")
        if region == "all":
            start, stop = 0, rec.n_samples
        else:
            start, stop = getattr(split_regions(rec.n_samples, segment_length, test_fraction, val_fraction), region)
        windows = segment(rec.signal, segment_length, stride, start, stop)
        xs.append(windows)
        ys.append(np.full(len(windows), index[rec.label], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)

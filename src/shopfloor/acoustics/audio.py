"""Reading audio clips: WAV/FLAC with ``soundfile``, any sampling rate resampled to the model's, channels selected
or mixed, and every clip checked (unreadable, empty, NaN, silent, too short), each problem naming its file.

A :class:`Clip` is mono float32 samples at a known rate. Arrays are taken as already at the model's rate, shaped
``(samples,)`` or ``(samples, channels)`` like the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from shopfloor.core.errors import DataError

AUDIO_SUFFIXES = (".wav", ".flac")
SILENCE_PEAK = 1e-5  # a clip whose peak amplitude (full scale 1.0) stays below this is treated as silent


@dataclass
class Clip:
    """One mono clip: float32 ``samples`` at ``sampling_rate`` Hz, named by ``source`` in messages; ``meta`` holds
    what a layout parsed from its name (label, section, domain, attributes)."""

    samples: np.ndarray
    sampling_rate: int
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sampling_rate


def resample(samples: np.ndarray, rate: float, target: int) -> np.ndarray:
    """``samples`` (time on axis 0) from ``rate`` to ``target`` Hz with a polyphase filter
    (:func:`scipy.signal.resample_poly`); unchanged when the rates agree."""
    if abs(rate - target) < 1e-9 * target:
        return samples
    from scipy.signal import resample_poly

    ratio = Fraction(target / rate).limit_denominator(1000)
    return resample_poly(samples, ratio.numerator, ratio.denominator, axis=0).astype(np.float32)


def select_channel(samples: np.ndarray, channel: int | str, source: str) -> np.ndarray:
    """``(samples, channels)`` -> mono: ``"mix"`` averages the channels, an int picks one (0-based)."""
    if samples.ndim == 1:
        samples = samples[:, None]
    if channel == "mix":
        return samples.mean(axis=1)
    index = int(channel)
    if not -samples.shape[1] <= index < samples.shape[1]:
        raise DataError(f"{source} has {samples.shape[1]} channel(s); channel {index} does not exist. Choose 0.."
                        f"{samples.shape[1] - 1} or 'mix' (the average of all channels)")
    return samples[:, index]


def check_samples(samples: np.ndarray, source: str, rate: int, min_samples: int = 1) -> np.ndarray:
    """The mono float32 samples if they are usable; a :class:`DataError` naming ``source`` if the clip is empty,
    holds NaN/inf, is silent or is shorter than ``min_samples``."""
    if samples.size == 0:
        raise DataError(f"{source} is empty (0 samples); record it again or remove it")
    if not np.isfinite(samples).all():
        raise DataError(f"{source} holds {int((~np.isfinite(samples)).sum())} NaN/inf sample(s); audio must be "
                        "finite numbers: re-export the clip")
    peak = float(np.abs(samples).max())
    if peak < SILENCE_PEAK:
        raise DataError(f"{source} is silent (peak amplitude {peak:.2g}, below {SILENCE_PEAK:g} of full scale): "
                        "check the microphone and its gain, or remove the clip")
    if len(samples) < min_samples:
        raise DataError(f"{source} lasts {len(samples) / rate:.3f} s ({len(samples)} samples at {rate} Hz); at "
                        f"least {min_samples / rate:.3f} s is needed: give longer clips or a shorter window")
    return np.ascontiguousarray(samples, dtype=np.float32)


def read_audio(path: str | Path, rate: int, channel: int | str = "mix", min_samples: int = 1) -> Clip:
    """One WAV/FLAC file as a checked mono :class:`Clip` at ``rate`` Hz (resampled if needed)."""
    import soundfile

    path = Path(path)
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        raise DataError(f"{path}: cannot read {path.suffix or 'a file without suffix'} audio; give "
                        f"{'/'.join(AUDIO_SUFFIXES)} files")
    try:
        samples, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as exc:  # LibsndfileError is a RuntimeError
        raise DataError(f"{path} cannot be read as audio ({exc}); expected a WAV or FLAC file") from None
    if samples.shape[0] == 0:
        raise DataError(f"{path} is empty (0 samples); record it again or remove it")
    mono = select_channel(samples, channel, str(path))
    return Clip(check_samples(resample(mono, file_rate, rate), str(path), rate, min_samples), rate, str(path))


def as_clip(item: Any, rate: int, channel: int | str = "mix", min_samples: int = 1, index: int = 0) -> Clip:
    """A predict input (file path, :class:`Clip` or array at ``rate``) as a checked mono clip at ``rate``."""
    if isinstance(item, Clip):
        mono = resample(item.samples, item.sampling_rate, rate)
        return Clip(check_samples(mono, item.source, rate, min_samples), rate, item.source, item.meta)
    if isinstance(item, np.ndarray):
        name = f"<array {index}>"
        array = np.asarray(item, dtype=np.float32)
        if array.ndim not in (1, 2):
            raise DataError(f"{name} has shape {array.shape}; audio arrays are (samples,) or (samples, channels)")
        if array.ndim == 2 and array.shape[0] < array.shape[1]:
            raise DataError(f"{name} has shape {array.shape}: fewer samples than channels. Audio arrays are "
                            "(samples, channels); transpose it")
        return Clip(check_samples(select_channel(array, channel, name), name, rate, min_samples), rate, name)
    if isinstance(item, (str, Path)):
        if Path(item).is_dir():
            raise DataError(f"{item} is a folder without {'/'.join(AUDIO_SUFFIXES)} files")
        if not Path(item).exists():
            raise DataError(f"{item} does not exist")
        return read_audio(item, rate, channel, min_samples)
    raise DataError(f"input {index} is a {type(item).__name__}; give a WAV/FLAC path or a numpy array (samples,) "
                    "at the model's sampling rate")


def audio_files(root: str | Path) -> list[Path]:
    """Every WAV/FLAC file under ``root`` (recursively, hidden files skipped), sorted."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in AUDIO_SUFFIXES)


def expand_inputs(inputs: Sequence[Any]) -> list[Any]:
    """A folder stands for the audio files under it; an empty folder stays (reported as unreadable)."""
    expanded: list[Any] = []
    for item in inputs:
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            expanded.extend(audio_files(item) or [item])
        else:
            expanded.append(item)
    return expanded


def probe_rate(path: str | Path) -> int | None:
    """The sampling rate in a WAV/FLAC header, or ``None`` when the file cannot be opened."""
    import soundfile

    try:
        return int(soundfile.info(str(path)).samplerate)
    except (RuntimeError, OSError, ValueError, TypeError):
        return None

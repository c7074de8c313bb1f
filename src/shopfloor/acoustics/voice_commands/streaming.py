"""Commands in a long recording: sliding windows, posterior smoothing and a refractory period.

The model scores one clip-long window every ``hop`` seconds. Each class's posterior is averaged over the last
``smoothing`` windows; a command is detected when its smoothed posterior reaches ``threshold`` and is the highest
class, and no command was detected in the last ``refractory`` seconds (one spoken word, one detection). The
background classes (``_unknown_``, ``_silence_``) are never reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..speech_synth import SILENCE, UNKNOWN

BACKGROUND = (UNKNOWN, SILENCE)


@dataclass(frozen=True)
class DetectorSettings:
    """How windows become detections (see module docstring)."""

    hop_seconds: float = 0.1
    smoothing: int = 3
    threshold: float = 0.8
    refractory_seconds: float = 1.0


def window_starts(n_samples: int, window: int, hop: int) -> np.ndarray:
    """Start sample of every window of ``window`` samples, ``hop`` apart, covering ``n_samples`` (a recording
    shorter than one window is one window, padded by the caller)."""
    if n_samples <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_samples - window + 1, hop, dtype=np.int64)
    if starts[-1] + window < n_samples:  # the tail gets a window of its own
        starts = np.append(starts, n_samples - window)
    return starts


def windows(samples: np.ndarray, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, frames)``: the windows of ``samples`` as an ``(n, window)`` float32 array."""
    if len(samples) < window:
        samples = np.pad(samples, (0, window - len(samples)))
    starts = window_starts(len(samples), window, hop)
    view = np.lib.stride_tricks.sliding_window_view(samples, window)
    return starts, np.ascontiguousarray(view[starts], dtype=np.float32)


def smooth(posteriors: np.ndarray, k: int) -> np.ndarray:
    """Each row averaged with the ``k - 1`` rows before it (fewer at the start)."""
    if k <= 1:
        return posteriors
    cumulative = np.cumsum(np.vstack([np.zeros((1, posteriors.shape[1])), posteriors]), axis=0)
    index = np.arange(1, len(posteriors) + 1)
    lower = np.maximum(index - k, 0)
    return (cumulative[index] - cumulative[lower]) / (index - lower)[:, None]


def detect(posteriors: np.ndarray, starts: np.ndarray, classes: list[str], rate: int, window: int,
           settings: DetectorSettings) -> list[dict]:
    """Detections ``{command, start_s, end_s, confidence}`` from per-window ``posteriors`` (rows: windows in time
    order, columns: ``classes``)."""
    smoothed = smooth(posteriors, settings.smoothing)
    commands = np.array([c not in BACKGROUND for c in classes])
    found: list[dict] = []
    last_fire = -np.inf
    for i, k in enumerate(smoothed.argmax(axis=1)):
        confidence = float(smoothed[i, k])
        if not commands[k] or confidence < settings.threshold:
            continue
        end = float(starts[i] + window) / rate  # the decision is made when this window ends
        if end - last_fire < settings.refractory_seconds:
            if found[-1]["command"] == classes[k]:  # the same word, still in the window
                found[-1]["confidence"] = round(max(found[-1]["confidence"], confidence), 4)
            continue
        start = float(starts[max(0, i - settings.smoothing + 1)]) / rate
        found.append({"command": classes[k], "start_s": round(start, 3), "end_s": round(end, 3),
                      "confidence": round(confidence, 4)})
        last_fire = end
    return found


def stream_detections(samples: np.ndarray, rate: int, window: int, classes: list[str],
                      score: Callable[[np.ndarray], np.ndarray], settings: DetectorSettings) -> list[dict]:
    """Detections in a whole recording; ``score`` maps ``(n, window)`` windows to ``(n, classes)`` posteriors."""
    hop = max(1, int(round(settings.hop_seconds * rate)))
    starts, frames = windows(samples, window, hop)
    return detect(score(frames), starts, classes, rate, window, settings)


def false_accepts_per_hour(n_false: int, seconds: float) -> float:
    """Detections per hour of audio that holds no command."""
    return n_false * 3600.0 / seconds if seconds > 0 else float("nan")

"""The detector's operating point: false accepts per hour on long streams of non-command audio, the threshold that
keeps them under a budget, and the recall of commands streamed through the detector at that threshold.

Non-command audio is built from clips: the ``_unknown_`` and ``_silence_`` clips end to end (once as recorded, and
in further shuffled orders with a new gain and a generated background mixed in, so the stream is long enough for a
per-hour figure to mean something), and generated noise (white, pink, brown, mains hum, machine tones at -50 to -10
dBFS). Commands are streamed back to back with generated background between them; a command counts as recalled
when the detector fires with its word while it plays.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..speech_synth import background
from .streaming import BACKGROUND, DetectorSettings, detect, false_accepts_per_hour, windows

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
Scorer = Callable[[np.ndarray], np.ndarray]


def background_streams(audio: np.ndarray, labels: list[str], rate: int, repeats: int = 0,
                       seed: int = 0) -> list[np.ndarray]:
    """The ``_unknown_`` and ``_silence_`` clips of ``audio`` ``(n, samples)`` end to end in a seeded random order,
    and ``repeats`` more orders, each clip with a gain within +-6 dB and a generated background at 10-40 dB SNR."""
    index = [i for i, label in enumerate(labels) if label in BACKGROUND]
    if not index:
        return []
    rng = np.random.default_rng(seed)
    streams = [audio[rng.permutation(index)].reshape(-1)]
    n = audio.shape[1]
    for _ in range(repeats):
        pieces = []
        for i in rng.permutation(index):
            clip = audio[i] * 10 ** (rng.uniform(-6, 6) / 20)
            rms = np.sqrt(np.mean(clip ** 2)) + 1e-6
            pieces.append(clip + background(n, rate, rng)[0] * rms / 10 ** (rng.uniform(10, 40) / 20))
        streams.append(np.clip(np.concatenate(pieces), -1, 1).astype(np.float32))
    return streams


def noise_streams(seconds: float, rate: int, seed: int = 0, piece_seconds: float = 10.0,
                  stream_seconds: float = 300.0) -> list[np.ndarray]:
    """About ``seconds`` of generated backgrounds (a new kind and level every ``piece_seconds``), in streams of at
    most ``stream_seconds``."""
    rng = np.random.default_rng(seed)
    n_pieces = int(round(seconds / piece_seconds))
    per_stream = max(1, int(stream_seconds // piece_seconds))
    n = int(piece_seconds * rate)
    streams = []
    for start in range(0, n_pieces, per_stream):
        pieces = [background(n, rate, rng)[0] * 10 ** rng.uniform(-2.5, -0.5)
                  for _ in range(min(per_stream, n_pieces - start))]
        streams.append(np.clip(np.concatenate(pieces), -1, 1).astype(np.float32))
    return streams


def scored(streams: list[np.ndarray], window: int, hop: int, score: Scorer) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(starts, posteriors)`` of every stream's windows."""
    out = []
    for stream in streams:
        starts, frames = windows(stream, window, hop)
        out.append((starts, score(frames)))
    return out


def false_accepts(scored_streams: list[tuple[np.ndarray, np.ndarray]], classes: list[str], rate: int, window: int,
                  settings: DetectorSettings, thresholds: tuple[float, ...] = THRESHOLDS) -> dict[str, int]:
    """Detections in non-command streams at each threshold (``{"0.9": n, ...}``)."""
    counts = {}
    for threshold in thresholds:
        at = DetectorSettings(settings.hop_seconds, settings.smoothing, threshold, settings.refractory_seconds)
        counts[f"{threshold:g}"] = sum(len(detect(post, starts, classes, rate, window, at))
                                       for starts, post in scored_streams)
    return counts


def choose_threshold(counts: dict[str, int], seconds: float, max_per_hour: float) -> float:
    """The lowest threshold whose false accepts per hour stay within ``max_per_hour`` (the highest one tried when
    none does)."""
    ok = [float(t) for t, n in counts.items() if false_accepts_per_hour(n, seconds) <= max_per_hour]
    return min(ok) if ok else max(float(t) for t in counts)


def command_stream(audio: np.ndarray, rate: int, gap_seconds: float = 1.0,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Command clips ``(n, samples)`` back to back with ``gap_seconds`` of generated background (-60 to -35 dBFS)
    before each; the stream and each clip's ``(start, end)`` sample."""
    rng = np.random.default_rng(seed)
    gap, n = int(gap_seconds * rate), audio.shape[1]
    pieces, spans, at = [], [], 0
    for clip in audio:
        pieces.append(background(gap, rate, rng)[0] * 10 ** rng.uniform(-3.0, -1.75))
        pieces.append(clip)
        spans.append((at + gap, at + gap + n))
        at += gap + n
    stream = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
    return stream, np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def streaming_recall(starts: np.ndarray, posteriors: np.ndarray, spans: np.ndarray, labels: list[str],
                     classes: list[str], rate: int, window: int, settings: DetectorSettings) -> dict[str, float]:
    """Share of the command clips (``spans`` in the stream, true ``labels``) the detector fires on with the right
    word (its decision time inside the clip or within ``refractory`` after it), and the share it fires on with a
    wrong word."""
    found = detect(posteriors, starts, classes, rate, window, settings)
    hit = np.zeros(len(spans), bool)
    wrong = np.zeros(len(spans), bool)
    ends = spans[:, 1] / rate
    for d in found:
        k = int(np.searchsorted(ends, d["end_s"] - 0.5 * window / rate))  # the clip the window mostly covers
        if k < len(spans):
            if d["command"] == labels[k]:
                hit[k] = True
            else:
                wrong[k] = True
    n = max(1, len(spans))
    return {"recall": float(hit.sum() / n), "wrong_command": float((wrong & ~hit).sum() / n),
            "n_commands": int(len(spans)), "detections": len(found)}

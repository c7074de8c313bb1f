"""Voice-command clips: Speech Commands class folders, speakers, speaker-disjoint splits and synthesized speech.

Layout: ``root/<class>/<file>.wav|.flac``, one folder per command word plus ``_unknown_`` (other speech) and
``_silence_`` (background, no speech). A file name holding ``<speaker>_nohash_<n>`` (the Speech Commands naming)
gives the speaker; other files are each their own speaker. Clips are padded with silence or centre-cropped to the
model's clip length; a ``_silence_`` file longer than two clips (the upstream ``_background_noise_`` recordings)
is cut into as many clips as it holds.
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from shopfloor.core.errors import DataError

from ..audio import AUDIO_SUFFIXES, read_audio
from ..speech_synth import SILENCE, synthesize_commands

SPEAKER = re.compile(r"([0-9a-fA-F]{6,})_nohash_")
SYNTH_SPEAKER = "synthesized"


@dataclass
class CommandClips:
    """Fixed-length clips ``audio`` (n, samples) float32 with their class names, speakers and sources."""

    audio: np.ndarray
    labels: list[str]
    speakers: list[str]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Sequence[int] | np.ndarray) -> "CommandClips":
        index = np.asarray(index, dtype=np.int64)
        return CommandClips(self.audio[index], [self.labels[i] for i in index], [self.speakers[i] for i in index],
                            [self.sources[i] for i in index])

    @staticmethod
    def concat(parts: Sequence["CommandClips"]) -> "CommandClips":
        parts = [p for p in parts if len(p)]
        if not parts:
            raise DataError("no clips to train on")
        return CommandClips(np.concatenate([p.audio for p in parts]), [x for p in parts for x in p.labels],
                            [x for p in parts for x in p.speakers], [x for p in parts for x in p.sources])


def speaker_of(path: str | Path) -> str:
    """The speaker id in a Speech Commands file name (``<speaker>_nohash_<n>``); else the file name itself."""
    match = SPEAKER.search(Path(path).name)
    return match.group(1).lower() if match else Path(path).name


def fit_length(samples: np.ndarray, n: int) -> np.ndarray:
    """``samples`` padded with zeros at the end, or centre-cropped, to exactly ``n``."""
    if len(samples) >= n:
        start = (len(samples) - n) // 2
        return samples[start:start + n]
    return np.pad(samples, (0, n - len(samples)))


def class_folders(root: str | Path) -> dict[str, list[Path]]:
    """Class name -> its audio files, for a Speech Commands layout folder; clear errors for other layouts."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root} does not exist; give a folder with one sub-folder per command (Speech Commands "
                        "layout: stop/, go/, _unknown_/, _silence_/)")
    if not root.is_dir():
        raise DataError(f"{root} is a file; give a folder with one sub-folder per command")
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
                       and not f.name.startswith("."))
        if files:
            classes[folder.name] = files
    if not classes:
        loose = [p.name for p in root.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES][:3]
        hint = f" (found loose audio files such as {loose}: put each class in its own folder)" if loose else ""
        raise DataError(f"{root} holds no class folders with {'/'.join(AUDIO_SUFFIXES)} files{hint}")
    return classes


def read_command_folders(root: str | Path, rate: int, clip_samples: int, workers: int = 2,
                         skip_bad: bool = False) -> tuple[CommandClips, list[str]]:
    """Every clip under ``root`` at ``rate`` Hz, fitted to ``clip_samples``; and the problems of the files that
    could not be used (raised together unless ``skip_bad``)."""
    jobs = [(label, path) for label, files in class_folders(root).items() for path in files]

    def read(job: tuple[str, Path]) -> tuple[str, Path, list[np.ndarray] | str]:
        label, path = job
        try:
            samples = read_audio(path, rate).samples
        except DataError as exc:
            return label, path, str(exc)
        if label == SILENCE and len(samples) >= 2 * clip_samples:
            return label, path, [samples[i:i + clip_samples] for i in range(0, len(samples) - clip_samples + 1,
                                                                            clip_samples)]
        return label, path, [fit_length(samples, clip_samples)]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(read, jobs))
    problems = [out for _, _, out in results if isinstance(out, str)]
    if problems and not skip_bad:
        listed = "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise DataError(f"{len(problems)} of {len(jobs)} audio files cannot be used:\n  {listed}\nFix or remove "
                        "them, or pass --skip-bad to train without them")
    audio, labels, speakers, sources = [], [], [], []
    for label, path, out in results:
        if isinstance(out, str):
            continue
        for k, piece in enumerate(out):
            audio.append(piece)
            labels.append(label)
            speakers.append(speaker_of(path) if len(out) == 1 else f"{path.name}#{k}")
            sources.append(str(path) if len(out) == 1 else f"{path}#{k}")
    if not audio:
        raise DataError(f"none of the {len(jobs)} audio files under {root} can be used")
    return CommandClips(np.stack(audio).astype(np.float32), labels, speakers, sources), problems


_SYNTHESIZED: dict[tuple, "CommandClips"] = {}  # the last synthesis, reused by a second fit in the same process


def synthesized_clips(commands: Sequence[str], per_word: int, rate: int, clip_seconds: float,
                      seed: int) -> CommandClips:
    """Speech for ``commands`` from espeak-ng (see :mod:`shopfloor.acoustics.speech_synth`) as training clips (the
    same arguments again in one process reuse the last result: synthesis is deterministic)."""
    key = (tuple(commands), per_word, rate, clip_seconds, seed)
    if key not in _SYNTHESIZED:
        _SYNTHESIZED.clear()
        _SYNTHESIZED[key] = _synthesize(commands, per_word, rate, clip_seconds, seed)
    return _SYNTHESIZED[key]


def _synthesize(commands: Sequence[str], per_word: int, rate: int, clip_seconds: float, seed: int) -> CommandClips:
    clips = synthesize_commands(commands, per_word=per_word, sample_rate=rate, clip_seconds=clip_seconds, seed=seed)
    n = int(round(clip_seconds * rate))
    return CommandClips(np.stack([fit_length(c.audio, n) for c in clips]).astype(np.float32),
                        [c.label for c in clips], [SYNTH_SPEAKER] * len(clips),
                        [f"synthesized: {c.text or c.label} ({c.how})" for c in clips])


def speaker_split(speakers: Sequence[str], labels: Sequence[str], fraction: float, seed: int,
                  purpose: str = "validation") -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): about ``fraction`` of the speakers held out with all their clips (never a speaker
    on both sides), chosen by a hash of ``purpose``, ``seed`` and the speaker id, as the Speech Commands split
    does (a test split and the validation split inside its training part use different purposes, so they draw
    independently). Synthesized clips always stay on the training side."""
    speakers = list(speakers)
    keyed = {s: int(hashlib.sha1(f"{purpose}:{seed}:{s}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
             for s in set(speakers)}
    held = np.array([s != SYNTH_SPEAKER and keyed[s] < fraction for s in speakers])
    missing = sorted(set(labels) - {label for label, h in zip(labels, held) if h})
    if missing and held.any():
        # a class with few speakers may land wholly on one side: hold out one of its speakers
        for label in missing:
            candidates = sorted({s for s, lab in zip(speakers, labels) if lab == label and s != SYNTH_SPEAKER},
                                key=keyed.get)
            if len(candidates) > 1:
                held |= np.array([s == candidates[0] for s in speakers])
    idx = np.arange(len(speakers))
    return idx[~held], idx[held]

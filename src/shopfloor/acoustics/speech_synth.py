"""Training speech from text: command words spoken by espeak-ng (and Flite, where installed) in many voices,
speeds and pitches.

A plant can start voice commands from a list of words and add its own operators' recordings later.
:func:`synthesize_commands` returns labelled one-clip-per-utterance audio in the Speech Commands classes: each
command word, ``_unknown_`` (other words, spoken the same ways) and ``_silence_`` (generated backgrounds: white,
pink and brown noise, mains hum, machine tones). Every utterance draws an accent, a voice variant, a speed, a
pitch, a word gap (for several-word commands), a vocal-tract warp (the utterance resampled by 0.88-1.12: formants
and pitch move together, as between a child, a woman and a man), a loudness, a position in the clip and a
background at a random SNR from one seeded generator, so the same arguments give the same clips. Where the
``flite`` program is installed (Debian package ``flite``: four more English voices, two of them statistical
parametric voices that sound less robotic than espeak-ng's formant synthesis), a third of the utterances use it;
the clips then differ from those of a machine without it. :func:`write_clips` stores them as a
Speech Commands folder (``<class>/<name>.wav``, 16-bit PCM).

espeak-ng (Debian package ``espeak-ng``) and Flite run as subprocesses with an argument list, never through a
shell.

>>> clips = synthesize_commands(["stop", "start"], per_word=2, seed=0)  # doctest: +SKIP
>>> sorted({c.label for c in clips}), clips[0].audio.shape                # doctest: +SKIP
(['_silence_', '_unknown_', 'start', 'stop'], (16000,))
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from shopfloor.core.errors import ConfigError, DataError

ESPEAK = "espeak-ng"
ESPEAK_RATE = 22050  # Hz, what espeak-ng writes
FLITE = "flite"
FLITE_VOICES = ("kal16", "awb", "rms", "slt")  # the 16 kHz voices built into Debian's flite
FLITE_SHARE = 1 / 3  # of the utterances, where flite is installed
WARP = (0.88, 1.12)
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
# native espeak-ng English voices (the mbrola ones need the mbrola program) and voice variants
ACCENTS = ("en", "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
            "croak", "whisper", "whisperf", "grandpa", "grandma", "edward", "linda", "steph", "robert", "victor")
# other speech for the _unknown_ class: everyday and shop-floor words, none a command of the default lists
UNKNOWN_WORDS = (
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "zero", "one", "two",
    "three", "four", "five", "six", "seven", "eight", "nine", "learn", "follow", "forward", "backward", "visual",
    "hello", "thanks", "coffee", "lunch", "shift", "pallet", "forklift", "belt", "motor", "sensor", "check",
    "later", "maybe", "where", "water", "paper", "order", "number", "morning", "evening", "tomorrow", "problem",
    "okay", "sorry", "listen", "tool", "part", "batch", "label", "monday", "friday", "window", "table", "chair",
    "yellow", "green", "blue", "purple", "little", "again", "really", "people", "station", "quality",
)
MAX_WORDS_PER_COMMAND = 4
_WORD = re.compile(r"[a-z][a-z' -]*[a-z]|[a-z]")
TRIM_DB = -40.0  # leading/trailing audio below this level (re the peak) is cut from each utterance


@dataclass(frozen=True)
class Voice:
    """How one utterance is spoken (espeak-ng settings)."""

    accent: str
    variant: str
    speed_wpm: int  # words per minute
    pitch: int  # 0-99
    word_gap_ms: int  # pause between the words of a several-word command
    engine: str = ESPEAK  # or FLITE (then ``accent`` is the flite voice)
    warp: float = 1.0  # resampled as if recorded at rate * warp: formants and pitch times warp, duration / warp

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant}" if self.engine == ESPEAK else f"flite {self.accent}"

    def describe(self) -> str:
        return (f"{self.name}, {self.speed_wpm} wpm, pitch {self.pitch}, gap {self.word_gap_ms} ms, "
                f"warp {self.warp:.2f}")

    def faster(self, factor: float) -> "Voice":
        """The same voice ``factor`` times faster, without word gaps."""
        return replace(self, speed_wpm=min(450, int(self.speed_wpm * factor) + 1), word_gap_ms=0)


@dataclass
class SynthClip:
    """One generated clip: ``audio`` float32 mono in [-1, 1] at ``sample_rate``; ``text`` is what was said
    (empty for ``_silence_``), ``how`` says which voice or background."""

    label: str
    text: str
    audio: np.ndarray
    sample_rate: int
    how: str


def espeak_path() -> str:
    """The espeak-ng program; a ConfigError saying how to install it when it is missing."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise ConfigError("speech synthesis needs the espeak-ng program, which is not installed: on Debian/Ubuntu "
                          "run `apt-get install espeak-ng` (macOS: `brew install espeak-ng`), or train on "
                          "recordings instead")
    return path


def flite_path() -> str | None:
    """The flite program, or None where it is not installed (it is optional)."""
    return shutil.which(FLITE)


def check_commands(words: Sequence[str] | str) -> list[str]:
    """Command words (a list or ``'start,stop,up'``) lower-cased and checked: letters, spaces, hyphens and
    apostrophes only, at most :data:`MAX_WORDS_PER_COMMAND` words each, no repeats, no reserved class names. All
    problems are listed together."""
    items = [w for w in (words.split(",") if isinstance(words, str) else list(words))]
    cleaned, problems = [], []
    for raw in items:
        if not isinstance(raw, str):
            problems.append(f"{raw!r} is not text")
            continue
        word = " ".join(raw.lower().split())
        if not word:
            problems.append("an empty command (two commas in a row, or a trailing comma?)")
        elif word in (UNKNOWN, SILENCE):
            problems.append(f"{word!r} is a reserved class name")
        elif not _WORD.fullmatch(word):
            problems.append(f"{raw!r} holds characters other than letters, spaces, hyphens and apostrophes "
                            "(write numbers as words: 'two', not '2')")
        elif len(word.split()) > MAX_WORDS_PER_COMMAND:
            problems.append(f"{raw!r} has {len(word.split())} words; a command has at most "
                            f"{MAX_WORDS_PER_COMMAND}")
        elif word in cleaned:
            problems.append(f"{word!r} is given twice")
        else:
            cleaned.append(word)
    if len(cleaned) < 1 and not problems:
        problems.append("no command words given")
    if problems:
        raise ConfigError("commands to synthesize: " + "; ".join(problems) + ". Example: --synthesize "
                          "'start,stop,emergency stop'")
    return cleaned


def speak(text: str, voice: Voice, program: str | None = None) -> np.ndarray:
    """``text`` spoken by espeak-ng as float32 mono at :data:`ESPEAK_RATE`, silence before and after trimmed."""
    program = program or espeak_path()
    with tempfile.TemporaryDirectory(prefix="shopfloor-espeak-") as tmp:
        path = Path(tmp) / "speech.wav"
        args = [program, "--stdin", "-w", str(path), "-v", voice.name, "-s", str(voice.speed_wpm), "-p",
                str(voice.pitch), "-g", str(max(0, voice.word_gap_ms // 10))]
        done = subprocess.run(args, input=text.encode(), capture_output=True, timeout=60)
        if done.returncode != 0 or not path.is_file():
            detail = done.stderr.decode(errors="replace").strip()[:200]
            raise DataError(f"espeak-ng could not speak {text!r} with voice {voice.name} (exit {done.returncode}"
                            f"{': ' + detail if detail else ''})")
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise DataError(f"espeak-ng wrote {wav.getnchannels()} channel(s) of {8 * wav.getsampwidth()} bits; "
                                "expected 16-bit mono")
            audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return trim_silence(audio)


def speak_flite(text: str, voice: Voice, program: str | None = None) -> tuple[np.ndarray, int]:
    """``text`` spoken by Flite (``voice.accent`` names the flite voice; speed from ``speed_wpm``, mean pitch from
    ``pitch`` where the voice follows it) as float32 mono and its rate, silence before and after trimmed."""
    program = program or flite_path()
    if program is None:
        raise ConfigError("the flite program is not installed: `apt-get install flite`, or synthesize with "
                          "espeak-ng only")
    with tempfile.TemporaryDirectory(prefix="shopfloor-flite-") as tmp:
        path = Path(tmp) / "speech.wav"
        args = [program, "-voice", voice.accent, "--setf", f"duration_stretch={170 / voice.speed_wpm:.3f}",
                "--setf", f"int_f0_target_mean={90 + 1.6 * voice.pitch:.0f}", "-t", text, "-o", str(path)]
        done = subprocess.run(args, capture_output=True, timeout=60)
        if done.returncode != 0 or not path.is_file():
            detail = done.stderr.decode(errors="replace").strip()[:200]
            raise DataError(f"flite could not speak {text!r} with voice {voice.accent} (exit {done.returncode}"
                            f"{': ' + detail if detail else ''})")
        with wave.open(str(path), "rb") as wav:
            rate = wav.getframerate()
            audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return trim_silence(audio), rate


def render(text: str, voice: Voice, sample_rate: int, programs: dict[str, str | None]) -> np.ndarray:
    """``text`` in ``voice`` at ``sample_rate``, vocal-tract warp applied (``programs``: engine -> its path)."""
    if voice.engine == FLITE:
        audio, rate = speak_flite(text, voice, programs.get(FLITE))
    else:
        audio, rate = speak(text, voice, programs.get(ESPEAK)), ESPEAK_RATE
    return resample(audio, int(round(rate * voice.warp / 50)) * 50, sample_rate)


def trim_silence(audio: np.ndarray, threshold_db: float = TRIM_DB) -> np.ndarray:
    """``audio`` without its leading and trailing samples below ``threshold_db`` relative to the peak."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0:
        return audio[:0]
    loud = np.flatnonzero(np.abs(audio) >= peak * 10 ** (threshold_db / 20))
    return audio[loud[0]:loud[-1] + 1]


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (scipy) from ``rate_in`` to ``rate_out`` Hz."""
    if rate_in == rate_out:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    ratio = Fraction(rate_out, rate_in)
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def background(n: int, sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """``n`` samples of a random background at unit RMS, and its name: white, pink or brown noise, mains hum
    (50/60 Hz and harmonics) or a machine tone (a motor's fundamental, harmonics and noise)."""
    kind = str(rng.choice(["white", "pink", "brown", "hum", "machine"]))
    t = np.arange(n) / sample_rate
    if kind in ("white", "pink", "brown"):
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / sample_rate)
        f[0] = f[1] if n > 1 else 1.0
        spectrum *= {"white": 1.0, "pink": f ** -0.5, "brown": f ** -1.0}[kind]
        x = np.fft.irfft(spectrum, n)
    elif kind == "hum":
        mains = float(rng.choice([50.0, 60.0]))
        x = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi))
                for k in range(1, 6)) + 0.05 * rng.standard_normal(n)
    else:
        f0 = rng.uniform(20.0, 300.0)
        x = sum(rng.uniform(0.1, 1.0) * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
                for k in range(1, 9)) + rng.uniform(0.1, 0.5) * rng.standard_normal(n)
    x = np.asarray(x, dtype=np.float64)
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32), kind


def random_voice(rng: np.random.Generator, flite: bool = False) -> Voice:
    """One draw of engine (flite for :data:`FLITE_SHARE` of the voices when ``flite``), accent or flite voice,
    variant, speed (110-230 wpm), pitch (15-85), word gap (0-120 ms) and vocal-tract warp."""
    engine = FLITE if flite and rng.random() < FLITE_SHARE else ESPEAK
    accent = str(rng.choice(FLITE_VOICES if engine == FLITE else ACCENTS))
    variant = str(rng.choice(VARIANTS)) if engine == ESPEAK else ""
    return Voice(accent, variant, int(rng.integers(110, 231)), int(rng.integers(15, 86)), int(rng.integers(0, 121)),
                 engine, float(np.round(rng.uniform(*WARP), 3)))


def synthesize_commands(commands: Sequence[str] | str, per_word: int = 200, sample_rate: int = 16000,
                        clip_seconds: float = 1.0, unknown: int | None = None, silence: int | None = None,
                        snr_db: tuple[float, float] = (5.0, 40.0), background_probability: float = 0.8,
                        seed: int = 0, workers: int = 2) -> list[SynthClip]:
    """Labelled training clips for ``commands`` (see module docstring): ``per_word`` clips of each command,
    ``unknown`` clips of other words (default ``per_word``) and ``silence`` background clips (default ``per_word``),
    each ``clip_seconds`` long at ``sample_rate``. A background at an SNR drawn from ``snr_db`` is added to
    ``background_probability`` of the speech clips. A command too long for the clip even when spoken fast is a
    DataError naming it."""
    words = check_commands(commands)
    if per_word < 1:
        raise ConfigError(f"per_word must be at least 1, got {per_word}")
    if not 0.25 <= clip_seconds <= 10.0:
        raise ConfigError(f"clip_seconds must lie between 0.25 and 10, got {clip_seconds}")
    if not 8000 <= sample_rate <= 48000:
        raise ConfigError(f"sample_rate must lie between 8000 and 48000 Hz, got {sample_rate}")
    low_snr, high_snr = snr_db
    if low_snr > high_snr:
        raise ConfigError(f"snr_db must be (low, high) with low <= high, got {snr_db}")
    programs = {ESPEAK: espeak_path(), FLITE: flite_path()}
    rng = np.random.default_rng(seed)
    with_flite = programs[FLITE] is not None
    n_unknown = per_word if unknown is None else unknown
    n_silence = per_word if silence is None else silence
    others = [w for w in UNKNOWN_WORDS if w not in words and not any(w in c.split() for c in words)]
    plan = [(w, w, random_voice(rng, with_flite)) for w in words for _ in range(per_word)]
    plan += [(UNKNOWN, str(rng.choice(others)), random_voice(rng, with_flite)) for _ in range(n_unknown)]
    n = int(round(clip_seconds * sample_rate))

    def utter(item: tuple[str, str, Voice]) -> np.ndarray:
        label, text, voice = item
        audio = render(text, voice, sample_rate, programs)
        if len(audio) > n:  # too long at this speed: say it faster, once
            faster = voice.faster(len(audio) / n * 1.15)
            audio = render(text, faster, sample_rate, programs)
            if len(audio) > n:
                raise DataError(f"the command {text!r} takes {len(audio) / sample_rate:.2f} s even at "
                                f"{faster.speed_wpm} words per minute, longer than a {clip_seconds:g} s clip: use a "
                                "shorter command or a longer clip_seconds")
        return audio

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        spoken = list(pool.map(utter, plan))
    clips = []
    for (label, text, voice), audio in zip(plan, spoken):
        clip = np.zeros(n, np.float32)
        start = int(rng.integers(0, n - len(audio) + 1))
        clip[start:start + len(audio)] = audio / (np.max(np.abs(audio)) + 1e-12)
        how = voice.describe()
        if rng.random() < background_probability:
            noise, kind = background(n, sample_rate, rng)
            snr = rng.uniform(low_snr, high_snr)
            speech_rms = np.sqrt(np.mean(clip[start:start + len(audio)] ** 2)) + 1e-12
            clip = clip + noise * speech_rms / 10 ** (snr / 20)
            how += f", {kind} background at {snr:.0f} dB SNR"
        clips.append(SynthClip(label, text, _loudness(clip, rng), sample_rate, how))
    for _ in range(n_silence):
        noise, kind = background(n, sample_rate, rng)
        level = 10 ** rng.uniform(-3.5, -1.0)  # -70 to -20 dBFS RMS: quiet rooms to loud halls
        clips.append(SynthClip(SILENCE, "", np.clip(noise * level, -1, 1).astype(np.float32), sample_rate,
                               f"{kind} background at {20 * np.log10(level):.0f} dBFS"))
    return clips


def _loudness(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``clip`` scaled to a random peak between -20 and -1 dBFS (near and far talkers)."""
    peak = 10 ** (rng.uniform(-20.0, -1.0) / 20)
    return (clip * peak / (np.max(np.abs(clip)) + 1e-12)).astype(np.float32)


def write_clips(clips: Sequence[SynthClip], out_dir: str | Path) -> dict[str, int]:
    """Store ``clips`` as a Speech Commands folder, ``out_dir/<label>/synth_<i>.wav`` (16-bit PCM); the number
    of files per class. Existing files of the same names are replaced."""
    out = Path(out_dir)
    counts: dict[str, int] = {}
    for clip in clips:
        index = counts.get(clip.label, 0)
        counts[clip.label] = index + 1
        folder = out / clip.label
        folder.mkdir(parents=True, exist_ok=True)
        pcm = np.clip(np.round(clip.audio * 32767.0), -32768, 32767).astype("<i2")
        with wave.open(str(folder / f"synth_{index:05d}.wav"), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(clip.sample_rate)
            wav.writeframes(pcm.tobytes())
    return counts

"""Speech synthesis for voice-command training (espeak-ng; skipped where it is not installed)."""

from __future__ import annotations

import shutil
import wave

import numpy as np
import pytest

from shopfloor.acoustics.speech_synth import (SILENCE, UNKNOWN, Voice, check_commands, espeak_path, random_voice,
                                              render, speak, speak_flite,
                                              synthesize_commands, trim_silence, write_clips)
from shopfloor.core.errors import ConfigError, DataError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)")


def test_commands_are_checked_and_every_problem_listed():
    assert check_commands(" Start, STOP ,emergency  stop") == ["start", "stop", "emergency stop"]
    with pytest.raises(ConfigError) as err:
        check_commands(["go", "", "2 up", "go", "_silence_", "a b c d e"])
    text = str(err.value)
    for part in ("empty command", "'2 up'", "'go' is given twice", "reserved class name", "5 words"):
        assert part in text
    with pytest.raises(ConfigError, match="no command words"):
        check_commands([])


def test_missing_espeak_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="apt-get install espeak-ng"):
        espeak_path()
    with pytest.raises(ConfigError, match="espeak-ng"):
        synthesize_commands(["stop"], per_word=1)


def test_trim_silence_cuts_quiet_ends_only():
    x = np.zeros(1000, np.float32)
    x[300:500] = np.sin(np.arange(200) / 3.0)
    trimmed = trim_silence(x)
    assert 190 <= len(trimmed) <= 200 and np.abs(trimmed).max() == np.abs(x).max()
    assert trim_silence(np.zeros(10, np.float32)).size == 0


@needs_espeak
def test_clips_are_labelled_seeded_and_hold_speech(tmp_path):
    clips = synthesize_commands("stop,start", per_word=6, unknown=4, silence=3, seed=3)
    assert [c.label for c in clips].count("stop") == 6 and [c.label for c in clips].count(UNKNOWN) == 4
    assert [c.label for c in clips].count(SILENCE) == 3
    assert all(c.audio.shape == (16000,) and c.audio.dtype == np.float32 for c in clips)
    assert all(np.abs(c.audio).max() <= 1.0 for c in clips)
    assert all(c.text not in ("stop", "start") for c in clips if c.label == UNKNOWN)
    speech = np.median([np.sqrt(np.mean(c.audio ** 2)) for c in clips if c.label == "stop"])
    quiet = np.median([np.sqrt(np.mean(c.audio ** 2)) for c in clips if c.label == SILENCE])
    assert speech > 3 * quiet
    again = synthesize_commands("stop,start", per_word=6, unknown=4, silence=3, seed=3)
    assert all(np.array_equal(a.audio, b.audio) and a.how == b.how for a, b in zip(clips, again))
    other = synthesize_commands("stop,start", per_word=6, unknown=4, silence=3, seed=4)
    assert not np.array_equal(clips[0].audio, other[0].audio)
    assert len({c.how.split(",")[0] for c in clips if c.label != SILENCE}) > 3  # several voices

    counts = write_clips(clips, tmp_path)
    assert counts == {"stop": 6, "start": 6, UNKNOWN: 4, SILENCE: 3}
    with wave.open(str(tmp_path / "stop" / "synth_00000.wav"), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.getnframes()) == (16000, 1, 2, 16000)
        back = np.frombuffer(wav.readframes(16000), "<i2") / 32767.0
    assert np.max(np.abs(back - clips[0].audio)) < 1e-4


@needs_espeak
def test_words_differ_and_a_voice_is_deterministic():
    voice = Voice("en-us", "m3", 160, 50, 0)
    stop, start = speak("stop", voice), speak("start", voice)
    assert stop.size > 2000 and start.size > 2000 and not np.array_equal(stop[:2000], start[:2000])
    assert np.array_equal(stop, speak("stop", voice))


@needs_espeak
def test_a_command_too_long_for_the_clip_is_refused():
    with pytest.raises(DataError, match="longer than a 0.25 s clip"):
        synthesize_commands(["emergency stop now please"], per_word=1, clip_seconds=0.25, unknown=0, silence=0)


@needs_espeak
def test_bad_settings_are_refused():
    for kwargs, message in (({"per_word": 0}, "per_word"), ({"clip_seconds": 0.1}, "clip_seconds"),
                            ({"sample_rate": 4000}, "sample_rate"), ({"snr_db": (30.0, 5.0)}, "snr_db")):
        with pytest.raises(ConfigError, match=message):
            synthesize_commands(["stop"], **kwargs)


needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (apt-get install flite)")


@needs_flite
def test_flite_voices_speak_and_the_warp_scales_the_utterance():
    voice = Voice("slt", "", 170, 50, 0, engine="flite")
    audio, rate = speak_flite("stop", voice)
    assert rate == 16000 and audio.size > 2000 and np.array_equal(audio, speak_flite("stop", voice)[0])
    programs = {"flite": shutil.which("flite")}
    plain = render("stop", voice, 16000, programs)
    shorter = render("stop", Voice("slt", "", 170, 50, 0, engine="flite", warp=1.1), 16000, programs)
    assert abs(len(shorter) / len(plain) - 1 / 1.1) < 0.01  # as if recorded at 17.6 kHz: shorter, higher


def test_voices_draw_flite_only_when_asked():
    rng = np.random.default_rng(0)
    assert {random_voice(rng).engine for _ in range(50)} == {"espeak-ng"}
    engines = [random_voice(rng, flite=True).engine for _ in range(300)]
    assert 0.2 < engines.count("flite") / 300 < 0.5
    assert all(0.88 <= random_voice(rng).warp <= 1.12 for _ in range(50))

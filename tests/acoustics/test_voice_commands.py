"""Voice commands: speaker split, streaming detection, augmentation, and the task end to end on synthesized speech
(espeak-ng; the end-to-end tests skip where it is not installed)."""

from __future__ import annotations

import shutil
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from shopfloor.acoustics.speech_synth import SILENCE, UNKNOWN, synthesize_commands
from shopfloor.acoustics.frontend import LogMel
from shopfloor.acoustics.voice_commands.augment import (AugmentSettings, SpectralAugment, power_spectra,
                                                        warped_filterbanks)
from shopfloor.acoustics.voice_commands.data import (class_folders, fit_length, read_command_folders, speaker_of,
                                                     speaker_split)
from shopfloor.acoustics.voice_commands.models import SubSpectralNorm, build_network
from shopfloor.acoustics.voice_commands.operating_point import (background_streams, choose_threshold,
                                                                command_stream, noise_streams, streaming_recall)
from shopfloor.acoustics.voice_commands.streaming import DetectorSettings, detect, smooth, window_starts
from shopfloor.acoustics.voice_commands.task import VoiceCommands
from shopfloor.core.errors import ConfigError, DataError, NotFittedError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)")
CLASSES = ["stop", "go", UNKNOWN, SILENCE]


def write_wav(path: Path, audio: np.ndarray, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2").tobytes())
    return path


# ----------------------------------------------------------------------------- data
def test_speakers_and_a_speaker_disjoint_split():
    assert speaker_of("stop/0a7c2a8d_nohash_3.wav") == "0a7c2a8d" and speaker_of("x/take1.wav") == "take1.wav"
    speakers = [f"{i:08x}" for i in range(40) for _ in range(3)]
    labels = [CLASSES[i % 4] for i in range(120)]
    keep, held = speaker_split(speakers + ["synthesized"] * 5, labels + ["stop"] * 5, 0.25, seed=0)
    train_speakers = {([*speakers, *["synthesized"] * 5])[i] for i in keep}
    held_speakers = {speakers[i] for i in held}
    assert held_speakers and not train_speakers & held_speakers and "synthesized" in train_speakers
    assert 0.1 < len(held) / 120 < 0.45
    again = speaker_split(speakers, labels, 0.25, seed=0)[1]
    assert np.array_equal(again, held[held < 120])


def test_fit_length_pads_and_centre_crops():
    assert np.array_equal(fit_length(np.ones(3, np.float32), 5), [1, 1, 1, 0, 0])
    assert np.array_equal(fit_length(np.arange(7.0), 3), [2, 3, 4])


def test_folder_problems_are_listed(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        class_folders(tmp_path / "missing")
    write_wav(tmp_path / "loose.wav", np.zeros(100))
    with pytest.raises(DataError, match="put each class in its own folder"):
        class_folders(tmp_path)
    rng = np.random.default_rng(0)
    write_wav(tmp_path / "data" / "stop" / "a_nohash_0.wav", 0.1 * rng.standard_normal(16000))
    (tmp_path / "data" / "stop" / "broken.wav").write_bytes(b"RIFF not really")
    write_wav(tmp_path / "data" / "go" / "b_nohash_0.wav", np.zeros(16000))  # silent
    with pytest.raises(DataError) as err:
        read_command_folders(tmp_path / "data", 16000, 16000)
    assert "2 of 3" in str(err.value) and "broken.wav" in str(err.value) and "silent" in str(err.value)
    clips, problems = read_command_folders(tmp_path / "data", 16000, 16000, skip_bad=True)
    assert len(clips) == 1 and len(problems) == 2 and clips.audio.shape == (1, 16000)


def test_long_silence_files_are_cut_into_clips(tmp_path):
    rng = np.random.default_rng(1)
    write_wav(tmp_path / SILENCE / "hall.wav", 0.01 * rng.standard_normal(5 * 8000), rate=8000)  # 5 s at 8 kHz
    clips, _ = read_command_folders(tmp_path, 16000, 16000)
    assert len(clips) == 5 and clips.audio.shape == (5, 16000) and len(set(clips.speakers)) == 5


# ----------------------------------------------------------------------------- streaming
def test_windows_smoothing_and_detection():
    assert list(window_starts(100, 40, 20)) == [0, 20, 40, 60] and list(window_starts(30, 40, 20)) == [0]
    assert list(window_starts(105, 40, 20)) == [0, 20, 40, 60, 65]
    assert np.allclose(smooth(np.array([[1.0], [0.0], [0.0], [1.0]]), 2)[:, 0], [1.0, 0.5, 0.0, 0.5])
    rate, window = 100, 100  # 1 s windows every 0.1 s
    posteriors = np.tile([0.0, 0.0, 0.0, 1.0], (40, 1))  # silence ...
    posteriors[5:12] = [0.95, 0.05, 0.0, 0.0]  # ... 'stop' for 0.7 s ...
    posteriors[25:30] = [0.0, 0.0, 0.97, 0.03]  # ... other speech (never reported) ...
    posteriors[33:36] = [0.0, 0.9, 0.1, 0.0]  # ... 'go' briefly
    starts = np.arange(40) * 10
    settings = DetectorSettings(hop_seconds=0.1, smoothing=2, threshold=0.8, refractory_seconds=1.0)
    found = detect(posteriors, starts, CLASSES, rate, window, settings)
    assert [d["command"] for d in found] == ["stop", "go"]
    assert found[0]["start_s"] == pytest.approx(0.5) and found[0]["confidence"] == pytest.approx(0.95)
    strict = DetectorSettings(hop_seconds=0.1, smoothing=2, threshold=0.96, refractory_seconds=1.0)
    assert detect(posteriors, starts, CLASSES, rate, window, strict) == []
    no_refractory = DetectorSettings(hop_seconds=0.1, smoothing=1, threshold=0.8, refractory_seconds=0.0)
    assert len(detect(posteriors, starts, CLASSES, rate, window, no_refractory)) == 7 + 3


def test_operating_point_threshold_streams_and_recall():
    counts = {"0.5": 9, "0.8": 2, "0.9": 1, "0.99": 0}
    assert choose_threshold(counts, 3600.0, 5.0) == 0.8 and choose_threshold(counts, 3600.0, 1.0) == 0.9
    assert choose_threshold({"0.5": 9, "0.9": 8}, 3600.0, 5.0) == 0.9  # none within budget: the strictest
    audio = np.random.default_rng(0).uniform(-0.1, 0.1, (4, 100)).astype(np.float32)
    labels = ["stop", UNKNOWN, SILENCE, UNKNOWN]
    streams = background_streams(audio, labels, 1000, repeats=2, seed=0)
    assert [len(s) for s in streams] == [300, 300, 300]
    assert sorted(np.round(streams[0][::100], 6)) == sorted(np.round(audio[1:, 0], 6))  # the clips, as recorded
    assert [len(s) for s in noise_streams(25.0, 100, piece_seconds=5.0, stream_seconds=10.0)] == [1000, 1000, 500]
    stream, spans = command_stream(audio[:2], 1000, gap_seconds=0.05)
    assert len(stream) == 300 and spans.tolist() == [[50, 150], [200, 300]]
    # windows of 100 samples every 10: 'stop' fires while clip 0 plays, 'go' while clip 1 plays
    starts = np.arange(0, 201, 10)
    posteriors = np.tile([0.0, 0.0, 0.0, 1.0], (len(starts), 1))
    posteriors[4:7] = [0.0, 1.0, 0.0, 0.0]  # windows ending 140-160: mostly clip 0 -> stop
    posteriors[16:19] = [1.0, 0.0, 0.0, 0.0]  # ending 260-280: clip 1 -> go (its label is _unknown_: wrong)
    found = streaming_recall(starts, posteriors, spans, ["stop", "go"], ["go", "stop", UNKNOWN, SILENCE], 1000,
                             100, DetectorSettings(0.01, 1, 0.8, 0.05))
    assert found["recall"] == 1.0 and found["wrong_command"] == 0.0 and found["detections"] == 2
    found = streaming_recall(starts, posteriors, spans, ["stop", "stop"], ["go", "stop", UNKNOWN, SILENCE], 1000,
                             100, DetectorSettings(0.01, 1, 0.8, 0.05))
    assert found["recall"] == 0.5 and found["wrong_command"] == 0.5


def test_bc_resnet_shapes_and_sub_spectral_norm():
    for n_mels in (40, 24):
        net = build_network("bc-resnet", n_mels, 5, width=1).eval()
        assert net(torch.randn(2, n_mels, 51)).shape == (2, 5)
    norm = SubSpectralNorm(3, 20, groups=5)
    assert norm.norm.num_features == 15 and SubSpectralNorm(3, 12, groups=5).groups == 1


# ----------------------------------------------------------------------------- augmentation
OFF = AugmentSettings(0.02, 0, 0, 0, 0, 0, 0, noise_probability=0, vtlp=0, freq_masks=0, time_masks=0)


def test_spectral_augmentation_off_is_the_front_end_and_on_is_seeded():
    frontend = LogMel(16000, 512, 320, 24)
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, (4, 16000)).astype(np.float32)
    spectra = power_spectra(frontend, audio)
    exact = SpectralAugment(spectra, None, frontend.filterbank, OFF)(torch.arange(4))
    assert torch.allclose(exact, frontend(torch.from_numpy(audio)), atol=0.05)  # float16 storage: < 0.05 dB
    full = AugmentSettings(reverb_probability=1.0, band_limit_probability=1.0, noise_probability=1.0)
    a = SpectralAugment(spectra, spectra, frontend.filterbank, full, seed=3)(torch.tensor([0, 1, 2, 3, 0]))
    b = SpectralAugment(spectra, spectra, frontend.filterbank, full, seed=3)(torch.tensor([0, 1, 2, 3, 0]))
    assert torch.equal(a, b) and a.shape == (5, 24, 51) and torch.isfinite(a).all()
    assert not torch.allclose(a[:4], exact, atol=0.5)


def test_time_shift_moves_a_burst_and_reverb_only_adds_a_tail():
    frontend = LogMel(16000, 512, 320, 24)
    audio = np.zeros((1, 16000), np.float32)
    audio[0, 8000:8640] = np.sin(np.arange(640) / 3.0)
    spectra = power_spectra(frontend, audio)
    shifted = SpectralAugment(spectra, None, frontend.filterbank, replace(OFF, shift_seconds=0.1), seed=0)
    frames = [int(shifted(torch.tensor([0])).mean(1)[0].argmax()) for _ in range(8)]
    assert len(set(frames)) > 1 and all(abs(f - 26) <= 6 for f in frames)
    reverb = SpectralAugment(spectra, None, frontend.filterbank, replace(OFF, reverb_probability=1.0), seed=0)
    dry, wet = 10 ** (SpectralAugment(spectra, None, frontend.filterbank, OFF)(torch.tensor([0])) / 10), \
        10 ** (reverb(torch.tensor([0])) / 10)
    assert (wet >= dry * 0.999).all() and wet[..., 35:].sum() > 10 * dry[..., 35:].sum()
    assert torch.allclose(wet[..., :20], dry[..., :20], rtol=1e-3)  # nothing before the burst


def test_vtlp_warps_move_energy_along_frequency():
    fb = torch.from_numpy(np.eye(8, dtype=np.float32))
    up, down = warped_filterbanks(fb, np.array([1.25, 0.8]))
    assert up[4].argmax() == 5 and down[4].argmax() == 3  # filter 4 now listens at 5 (or 3.2)
    assert torch.equal(warped_filterbanks(fb, np.array([1.0]))[0], fb)


# ----------------------------------------------------------------------------- the task
def test_not_fitted_and_bad_settings(tmp_path):
    with pytest.raises(NotFittedError, match=r"call fit\(\) or shopfloor.load\(\)"):
        VoiceCommands().predict([tmp_path / "x.wav"])
    with pytest.raises(DataError, match="--synthesize"):
        VoiceCommands().fit(None)
    with pytest.raises(ConfigError, match="reserved class name"):
        VoiceCommands(synthesize="stop,_silence_")
    with pytest.raises(ConfigError, match="snr_db_min"):
        VoiceCommands(snr_db_min=20, snr_db_max=10)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A Speech Commands folder whose 'speakers' are synthesized voices: 12 speakers x 2 clips per class."""
    root = tmp_path_factory.mktemp("voice") / "data"
    clips = synthesize_commands(["stop", "go"], per_word=24, unknown=24, silence=24, seed=5)
    counters: dict[str, int] = {}
    for clip in clips:
        k = counters.get(clip.label, 0)
        counters[clip.label] = k + 1
        write_wav(root / clip.label / f"{k // 2:08x}_nohash_{k % 2}.wav", clip.audio)
    return root


@needs_espeak
def test_fit_evaluate_predict_save_load(recorded, tmp_path):
    task = VoiceCommands(synthesize=["stop", "go"], synth_per_word=16, n_mels=24, width=1,
                         operating_point_repeats=1, operating_point_noise_minutes=0.5,
                         training={"epochs": 2, "batch_size": 32, "progress": False})
    task.fit(recorded, out_dir=tmp_path / "model")
    assert task.classes == ["go", "stop", UNKNOWN, SILENCE]
    assert task.state["synthesized"]["clips"] == 64 and task.metrics["n_val_clips"] > 0
    point = task.state["operating_point"]  # chosen on validation speakers for <= 5 false accepts per hour
    assert len(point["candidates"]) == 4 and task.smoothing == point["smoothing"] in (1, 2, 3, 5)
    assert task.threshold == point["threshold"] and point["validation_background_seconds"] > 30
    held_out = set(task.state["training_speakers"])
    # ONNX graph == torch model (eval mode, softmax)
    x = np.random.default_rng(0).uniform(-0.3, 0.3, (3, 16000)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(task.require_model()(torch.from_numpy(x)), 1).numpy()
    assert np.allclose(task.probabilities(x), expected, atol=1e-4)
    # evaluation on speakers heard in training is refused; on the others it runs
    with pytest.raises(DataError, match="were in training"):
        task.evaluate(recorded)
    test_dir = tmp_path / "test"
    for path in recorded.rglob("*.wav"):
        if speaker_of(path) not in held_out:
            target = test_dir / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    metrics = task.evaluate(test_dir, report_dir=tmp_path / "report", background_repeats=1, noise_minutes=0.5)
    assert metrics["n_test"] > 0 and 0 <= metrics["accuracy"] <= 1
    assert metrics["background_seconds"] > 0 and metrics["false_accepts_per_hour"] >= 0
    assert (tmp_path / "report" / "report.html").is_file() and (tmp_path / "report" / "confusion.png").is_file()
    # a clip gives a class; a long recording gives a (possibly empty) list of timed detections
    one = next((recorded / "stop").glob("*.wav"))
    long = write_wav(tmp_path / "long.wav", np.concatenate([np.zeros(8000), 0.5 * np.sin(np.arange(40000) / 5.0)]))
    rows = task.predict([one, long, np.zeros(100, np.float32)], skip_bad=True)
    assert rows[0]["label"] in task.classes and set(rows[0]["probabilities"]) == set(task.classes)
    assert isinstance(rows[1]["detections"], list) and rows[1]["duration_s"] == 3.0
    assert rows[2]["skipped"] and "silent" in rows[2]["error"]
    loaded = VoiceCommands.load(tmp_path / "model")
    assert loaded.predict([one])[0]["probabilities"] == pytest.approx(rows[0]["probabilities"], abs=1e-5)


@needs_espeak
def test_cli_trains_from_text_alone(tmp_path):
    from shopfloor.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["train", "voice-commands", "--synthesize", "start,stop", "--synth-per-word", "6",
                                 "--n-mels", "16", "--epochs", "1", "--width", "1",
                                 "--operating-point-noise-minutes", "0.2", "--out", str(tmp_path / "m"), "--quiet"])
    assert result.exit_code == 0, result.output
    clip = write_wav(tmp_path / "c.wav", 0.2 * np.sin(np.arange(16000) / 3.0))
    result = runner.invoke(app, ["predict", str(tmp_path / "m"), str(clip), "--quiet"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "fault-diagnosis", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "--data" in result.output

"""The shared audio front end: reader errors per bad file, resampling, channels, log-mel against librosa, the
exported graph against torch, seeded augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from shopfloor.acoustics.audio import as_clip, read_audio, resample
from shopfloor.acoustics.augment import WaveAugment, spec_augment
from shopfloor.acoustics.frontend import LOG_EPS, LogMel, stack_frames
from shopfloor.core.errors import DataError
from shopfloor.core.runtime import OnnxModel, export_onnx


def tone(seconds: float, rate: int, freq: float = 1000.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("name, make, message", [
    ("garbage.wav", lambda p: p.write_bytes(b"not audio at all" * 10), "cannot be read as audio"),
    ("empty.wav", lambda p: soundfile.write(p, np.zeros(0, np.float32), 16000), "is empty"),
    ("silent.flac", lambda p: soundfile.write(p, np.zeros(16000, np.float32), 16000), "is silent"),
    ("short.wav", lambda p: soundfile.write(p, tone(0.01, 16000), 16000), "lasts 0.010 s"),
    ("nan.wav", lambda p: soundfile.write(p, np.r_[tone(0.5, 16000), [np.nan]].astype(np.float32), 16000,
                                          subtype="FLOAT"), "NaN"),
    ("clip.mp3", lambda p: p.write_bytes(b"ID3"), "cannot read .mp3"),
])
def test_each_bad_file_is_named_with_its_problem(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(DataError, match=message) as info:
        read_audio(path, 16000, min_samples=1600)
    assert name in str(info.value)


def test_any_rate_is_resampled_to_the_model_rate(tmp_path):
    soundfile.write(tmp_path / "cd.wav", tone(1.0, 44100, 1000.0), 44100)
    clip = read_audio(tmp_path / "cd.wav", 16000)
    assert clip.sampling_rate == 16000 and abs(len(clip.samples) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(clip.samples))
    assert abs(np.argmax(spectrum) * 16000 / len(clip.samples) - 1000.0) < 2.0
    assert resample(np.ones(100, np.float32), 16000, 16000) is not None
    assert len(resample(tone(1.0, 8000), 8000, 16000)) == 16000


def test_channels_are_mixed_or_selected(tmp_path):
    stereo = np.stack([tone(0.5, 16000, 500), tone(0.5, 16000, 2000, 0.1)], axis=1)
    soundfile.write(tmp_path / "stereo.flac", stereo, 16000)
    left = read_audio(tmp_path / "stereo.flac", 16000, channel=0).samples
    mixed = read_audio(tmp_path / "stereo.flac", 16000).samples
    np.testing.assert_allclose(left, stereo[:, 0], atol=1e-4)
    np.testing.assert_allclose(mixed, stereo.mean(axis=1), atol=1e-4)
    with pytest.raises(DataError, match="has 2 channel.*channel 5 does not exist"):
        read_audio(tmp_path / "stereo.flac", 16000, channel=5)
    with pytest.raises(DataError, match=r"\(samples, channels\); transpose"):
        as_clip(stereo.T.copy(), 16000)


def test_logmel_matches_librosa():
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    x = (tone(1.0, 16000, 440) + 0.05 * rng.standard_normal(16000)).astype(np.float32)
    ours = LogMel(16000, 1024, 512, 128)(torch.from_numpy(x)[None])[0].detach().numpy()
    reference = librosa.power_to_db(librosa.feature.melspectrogram(y=x, sr=16000, n_fft=1024, hop_length=512,
                                                                   n_mels=128, power=2.0),
                                    ref=1.0, amin=LOG_EPS, top_db=None)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 0.01  # dB (measured 0.0012 on a DCASE valve clip)


def test_exported_frontend_agrees_with_torch():
    frontend = LogMel(16000, 512, 160, 40).eval()
    x = torch.from_numpy(np.stack([tone(1.0, 16000), tone(1.0, 16000, 3000, 0.01)]))
    graph = OnnxModel(export_onnx(frontend, (x,), ["audio"], ["logmel"]), device="cpu")
    onnx_out = graph.run(audio=x.numpy())["logmel"]
    np.testing.assert_allclose(onnx_out, frontend(x).detach().numpy(), atol=0.01)  # dB; cells near the -100 dB floor differ most
    assert onnx_out.shape == (2, 40, frontend.n_frames(16000))
    assert stack_frames(torch.from_numpy(onnx_out), 5).shape == (2, frontend.n_frames(16000) - 4, 200)


def test_augmentation_is_seeded_and_changes_the_batch():
    x = torch.from_numpy(np.stack([tone(0.5, 16000), tone(0.5, 16000, 700)]))
    augment = WaveAugment(probability=1.0)
    first = augment(x, torch.Generator().manual_seed(3))
    again = augment(x, torch.Generator().manual_seed(3))
    other = augment(x, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other) and not torch.equal(first, x)
    spec = torch.randn(2, 40, 50)
    masked = spec_augment(spec, torch.Generator().manual_seed(0), freq_width=10, time_width=10)
    assert masked.shape == spec.shape and (masked != spec).any()
    assert torch.equal(masked, spec_augment(spec, torch.Generator().manual_seed(0), freq_width=10, time_width=10))


@pytest.mark.parametrize("module", ["shopfloor.acoustics.frontend", "shopfloor.acoustics.augment",
                                    "shopfloor.acoustics.machine_sound.models"])
def test_shape_docs_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0

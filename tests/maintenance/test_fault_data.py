"""Vibration readers, validation errors, the leak-free time split, augmentation and the simulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import savemat, wavfile

from shopfloor.core.errors import DataError
from shopfloor.maintenance.fault_diagnosis.augment import SignalAugment, add_noise_at_snr
from shopfloor.maintenance.fault_diagnosis.simulator import (
    BearingGeometry,
    simulate_bearing_signal,
    write_bearing_dataset,
)
from shopfloor.maintenance.vibration import (
    Recording,
    cwru_label,
    read_cwru_mat,
    read_recordings,
    segment,
    segment_region,
    split_regions,
    validate_recordings,
)


@pytest.mark.parametrize("name, label", [
    ("12k_Drive_End_B007_0_118.mat", "B007"), ("12k_Drive_End_OR021@6_0_234.mat", "OR021@6"),
    ("normal_0_97.mat", "normal"), ("IR014_1.mat", "IR014"), ("105.mat", "IR007"), ("Normal_3.mat", "normal"),
])
def test_cwru_label_from_file_name(tmp_path, name, label):
    assert cwru_label(tmp_path / name) == label


def test_cwru_unknown_name_is_an_error(tmp_path):
    with pytest.raises(DataError, match="cannot tell the fault class"):
        cwru_label(tmp_path / "mystery_0.mat")


def _write_mat(path, n=5000, number=118, channels=("DE", "FE")):
    rng = np.random.default_rng(0)
    content = {f"X{number:03d}_{c}_time": rng.normal(size=(n, 1)) for c in channels}
    content[f"X{number:03d}RPM"] = np.array([[1796]])
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, content)
    return path


def test_cwru_mat_reader_rate_channels_and_errors(tmp_path):
    path = _write_mat(tmp_path / "12k_drive_end" / "12k_Drive_End_B007_0_118.mat")
    rec = read_cwru_mat(path, channels=["DE", "FE"])
    assert rec.label == "B007" and rec.sampling_rate == 12_000 and rec.signal.shape == (2, 5000)
    assert rec.meta["rpm"] == 1796
    with pytest.raises(DataError, match="no BA channel"):
        read_cwru_mat(path, channels=["BA"])
    with pytest.raises(DataError, match="sampled at 12000 Hz but sampling_rate is 48000"):
        read_cwru_mat(path, sampling_rate=48_000)
    undated = _write_mat(tmp_path / "plain" / "normal_0_97.mat", number=97)
    with pytest.raises(DataError, match="sampling rate .* is unknown"):
        read_cwru_mat(undated)
    assert read_cwru_mat(undated, sampling_rate=12_000).label == "normal"
    unnamed = _write_mat(tmp_path / "12k" / "machine7.mat", number=7)
    assert read_cwru_mat(unnamed, labelled=False).label is None  # prediction input: no class needed


def test_mixed_sampling_rates_are_refused(tmp_path):
    _write_mat(tmp_path / "12k" / "B007_0.mat")
    _write_mat(tmp_path / "48k" / "IR007_0.mat")
    with pytest.raises(DataError, match="mixed sampling rates"):
        read_recordings(tmp_path)


def test_class_folders_csv_npy_wav(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    np.save(tmp_path / "good" / "a.npy", rng.normal(size=3000).astype(np.float32))
    np.savetxt(tmp_path / "good" / "b.csv", rng.normal(size=(3000, 1)), delimiter=",", header="acc", comments="")
    wavfile.write(tmp_path / "bad" / "c.wav", 8000, rng.normal(size=3000).astype(np.float32))
    recordings = read_recordings(tmp_path, sampling_rate=8000)
    assert sorted(r.label for r in recordings) == ["bad", "good", "good"]
    assert all(r.signal.shape == (1, 3000) for r in recordings)
    with pytest.raises(DataError, match="sampled at 8000 Hz but sampling_rate is 12000"):
        read_recordings(tmp_path, sampling_rate=12_000)
    with pytest.raises(DataError, match="sampling rate of .* is unknown"):
        read_recordings(tmp_path)


def test_nan_short_and_channel_errors():
    good = Recording(np.zeros((1, 4096), np.float32), 12_000, "a", "a.npy")
    bad = np.zeros((1, 4096), np.float32)
    bad[0, 7] = np.nan
    with pytest.raises(DataError, match="NaN or infinite values .*sample 7"):
        validate_recordings([good, Recording(bad, 12_000, "b", "b.npy")])
    with pytest.raises(DataError, match="shorter than one segment"):
        validate_recordings([good], segment_length=8192)
    with pytest.raises(DataError, match="different numbers of channels"):
        validate_recordings([good, Recording(np.zeros((2, 4096), np.float32), 12_000, "b")])


def test_time_split_has_no_shared_samples_and_a_gap():
    n, length = 50_000, 1024
    regions = split_regions(n, length, test_fraction=0.2, val_fraction=0.2)
    assert regions.train[1] + length <= regions.val[0]
    assert regions.val[1] + length <= regions.test[0]
    assert regions.test == (40_000, n)
    # sample values are their own indices: the windows of each part must not share any index
    signal = np.arange(n, dtype=np.float32)[None, :]
    rec = Recording(signal, 1000.0, "x")
    parts = {name: segment_region([rec], name, length, 64, 0.2, 0.2, ["x"])[0] for name in ("train", "val", "test")}
    seen = {name: set(np.unique(x).astype(int)) for name, x in parts.items()}
    assert not seen["train"] & seen["val"] and not seen["val"] & seen["test"] and not seen["train"] & seen["test"]
    assert min(seen["test"]) - max(seen["train"]) > length
    with pytest.raises(DataError, match="too short"):
        split_regions(4000, 1024, 0.2, 0.2)


def test_segment_windows_and_overlap():
    signal = np.arange(20, dtype=np.float32).reshape(2, 10)
    windows = segment(signal, 4, 3)
    assert windows.shape == (3, 2, 4)
    np.testing.assert_array_equal(windows[1, 0], [3, 4, 5, 6])
    np.testing.assert_array_equal(windows[2, 1], [16, 17, 18, 19])


def test_noise_at_snr_hits_the_requested_ratio():
    x = torch.sin(torch.linspace(0, 200, 20_000)).repeat(4, 1, 1)
    noisy = add_noise_at_snr(x, torch.tensor([0.0, -4.0, 10.0, 20.0]), torch.Generator().manual_seed(0))
    noise = noisy - x
    snr = 10 * torch.log10(x.pow(2).mean(dim=(1, 2)) / noise.pow(2).mean(dim=(1, 2)))
    np.testing.assert_allclose(snr.numpy(), [0, -4, 10, 20], atol=0.1)
    out = SignalAugment((-5, 5), 1.0, (0.5, 2.0))(x)
    assert out.shape == x.shape and not torch.equal(out, x)


def test_characteristic_frequencies_match_cwru_table():
    freqs = BearingGeometry().frequencies(shaft_hz=1.0)
    # the CWRU site's multiples of shaft speed for the SKF 6205 (ball: 2 x BSF)
    assert freqs["bpfi"] == pytest.approx(5.4152, abs=2e-3)
    assert freqs["bpfo"] == pytest.approx(3.5848, abs=2e-3)
    assert freqs["ftf"] == pytest.approx(0.39828, abs=2e-4)
    assert 2 * freqs["bsf"] == pytest.approx(4.7135, abs=2e-3)


def test_simulated_outer_race_fault_shows_bpfo_in_envelope_spectrum(tmp_path):
    from scipy.signal import hilbert

    rpm, rate = 1797.0, 12_000.0
    signal = simulate_bearing_signal("outer_race", duration_s=4.0, sampling_rate=rate, rpm=rpm, seed=3)
    envelope = np.abs(hilbert(signal))
    spectrum = np.abs(np.fft.rfft(envelope - envelope.mean()))
    freqs = np.fft.rfftfreq(len(envelope), 1 / rate)
    characteristic = BearingGeometry().frequencies(rpm / 60)

    def energy(f0):  # spectral energy within 1 Hz of f0 (the line may straddle bins)
        return spectrum[np.abs(freqs - f0) < 1.0].sum()

    assert energy(characteristic["bpfo"]) > 3 * max(energy(characteristic["bpfi"]), energy(2 * characteristic["bsf"]))
    np.testing.assert_array_equal(signal, simulate_bearing_signal("outer_race", 4.0, rate, rpm, seed=3))
    root = write_bearing_dataset(tmp_path, recordings_per_class=1, duration_s=0.5, fmt="csv")
    assert len(read_recordings(root, sampling_rate=rate)) == 4

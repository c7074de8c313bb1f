"""fault-diagnosis end to end on simulated vibration: fit, ONNX parity, evaluate with noise, save/load, predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from shopfloor.core.errors import DataError
from shopfloor.core.registry import get_task
from shopfloor.maintenance.fault_diagnosis.simulator import simulate_bearing_signal, write_bearing_dataset
from shopfloor.maintenance.fault_diagnosis.task import FaultDiagnosis


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("vib")
    data = write_bearing_dataset(root / "data", recordings_per_class=1, duration_s=3.0, seed=0)
    task = FaultDiagnosis(sampling_rate=12_000, segment_length=512, train_stride=32, eval_stride=256,
                          training={"epochs": 3, "batch_size": 64, "progress": False, "device": "cpu"})
    task.fit(data, out_dir=root / "model")
    return task, data, root


def test_registered():
    assert get_task("fault-diagnosis") is FaultDiagnosis


def test_onnx_matches_torch(fitted):
    task, _, _ = fitted
    x = torch.randn(5, 1, 512) * 0.3
    with torch.no_grad():
        expected = task.export_module().eval()(x).numpy()
    got = task.runtime.run(signal=x.numpy())["probabilities"]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_evaluate_with_noise_and_report(fitted):
    task, data, root = fitted
    metrics = task.evaluate(data, report_dir=root / "report", snr_db=[0, -4])
    for key in ("accuracy", "macro_f1", "per_class", "confusion_matrix", "accuracy_snr_0", "accuracy_snr_-4"):
        assert key in metrics
    assert metrics["accuracy"] > 0.4  # 4 classes, 3 short epochs: clearly better than chance
    assert set(metrics["per_class"]) == {"ball", "inner_race", "normal", "outer_race"}
    assert (root / "report" / "report.html").is_file() and (root / "report" / "confusion_snr_-4.png").is_file()
    json.dumps(metrics)


def test_whole_recordings_seen_in_training_are_refused(fitted):
    task, data, _ = fitted
    with pytest.raises(DataError, match="used in training"):
        task.evaluate(data, segments="all")


def test_snr_option_accepts_a_single_value(fitted):
    task, _, _ = fitted
    assert task.EvaluateOptions(snr_db=-4).snr_db == [-4.0]


def test_save_load_predict(fitted, tmp_path):
    task, data, root = fitted
    loaded = FaultDiagnosis.load(root / "model")
    assert loaded.classes == task.classes and loaded.state["sampling_rate"] == 12_000
    signal = simulate_bearing_signal("outer_race", duration_s=0.5, seed=42)
    np.save(tmp_path / "probe.npy", signal)
    results = loaded.predict([tmp_path / "probe.npy", signal], explain=True)
    assert results[0]["n_segments"] == len(signal) // 512
    assert results[0]["probabilities"] == pytest.approx(results[1]["probabilities"], abs=1e-6)
    assert sum(results[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert results[0]["channel_attribution"] == {"DE": pytest.approx(1.0)}
    with pytest.raises(DataError, match="shorter than one segment"):
        loaded.predict([signal[:100]])


def test_wrong_rate_or_too_few_classes(tmp_path):
    data = write_bearing_dataset(tmp_path / "d", recordings_per_class=1, duration_s=1.0, faults=("normal",))
    with pytest.raises(DataError, match="at least two classes"):
        FaultDiagnosis(sampling_rate=12_000, segment_length=256).fit(data)


@pytest.mark.parametrize("model", ["gru", "cnn1d"])
def test_sequence_models_as_alternatives(tmp_path, model):
    data = write_bearing_dataset(tmp_path / "d", recordings_per_class=1, duration_s=1.0, seed=1)
    task = FaultDiagnosis(model=model, frame=16, sampling_rate=12_000, segment_length=256, train_stride=256,
                          augment=False, training={"epochs": 1, "progress": False, "device": "cpu"})
    task.fit(data)
    x = np.random.default_rng(0).normal(size=(3, 1, 256)).astype(np.float32)
    with torch.no_grad():
        expected = task.export_module().eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(task.runtime.run(signal=x)["probabilities"], expected, atol=1e-5)


# ----------------------------------------------------------------------------- inputs and safety
def test_amplitude_ranges_are_stored_and_a_1000x_signal_is_flagged_or_refused_when_strict(fitted):
    from shopfloor.core.errors import OutOfRangeWarning

    task, data, root = fitted
    assert task.state["input_ranges"]["columns"] == ["DE_rms", "DE_peak"]
    signal = simulate_bearing_signal("ball", duration_s=0.3, seed=7)
    with pytest.warns(OutOfRangeWarning, match=r"1 of 2 record\(s\).*<array 1>: DE_rms, DE_peak"):
        rows = task.predict([signal, signal * 1000])
    assert [r["out_of_range"] for r in rows] == [False, True]
    assert rows[1]["out_of_range_columns"] == ["DE_rms", "DE_peak"] and rows[0]["out_of_range_columns"] == []
    strict = FaultDiagnosis.load(root / "model", strict=True)
    with pytest.raises(DataError, match="strict"):
        strict.predict([signal * 1000])
    assert strict.predict(signal)[0]["out_of_range"] is False  # one array is one input
    assert task.evaluate(data)["n_out_of_range"] == 0


def test_arrays_are_samples_by_channels_like_files_and_the_transpose_is_refused(fitted):
    task, _, _ = fitted
    signal = simulate_bearing_signal("normal", duration_s=0.2, seed=3)
    one, column = task.predict([signal, signal[:, None]])
    assert one["probabilities"] == pytest.approx(column["probabilities"], abs=1e-6)
    with pytest.raises(DataError, match=r"1 x \d+ array.*looks like \(channels, samples\).*array\.T"):
        task.predict([signal[None, :]])
    with pytest.raises(DataError, match=r"2 channel\(s\), the model expects 1"):
        task.predict([np.stack([signal, signal], axis=1)])
    with pytest.raises(DataError, match="complex"):
        task.predict([signal.astype(np.complex64)])


def test_bad_signals_refuse_the_batch_or_are_skipped_and_a_path_is_one_input(fitted, tmp_path):
    task, _, _ = fitted
    good = tmp_path / "good.npy"
    np.save(good, simulate_bearing_signal("inner_race", duration_s=0.2, seed=5))
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"\x93NUMPY not really")
    with pytest.raises(DataError, match=r"2 of 3 input\(s\)(?s:.*)garbage\.npy(?s:.*)missing\.wav"):
        task.predict([garbage, good, tmp_path / "missing.wav"])
    with pytest.warns(UserWarning, match="skipped 2 of 3"):
        rows = task.predict([garbage, good, tmp_path / "missing.wav"], skip_bad=True)
    assert [r.get("skipped", False) for r in rows] == [True, False, True]
    assert rows[0]["input"] == str(garbage) and "cannot read NumPy file" in rows[0]["error"]
    assert rows[1]["input"] == str(good) and rows[1]["n_segments"] >= 1
    assert len(task.predict(str(good))) == 1  # a str path is one input, not its characters
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    np.save(folder / "sub" / "a.npy", np.load(good))
    (folder / "notes.txt").write_text("not a signal")
    assert [r["input"] for r in task.predict(folder)] == [str(folder / "sub" / "a.npy")]  # a folder: its signals

"""Unsupervised adaptation of fault-diagnosis models to a new operating condition (AdaBN): recorded in the
artifact, carried by the exported graph (ONNX agrees with torch), never reads a label; and the per-segment
normalisation option."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.core.errors import DataError, NotFittedError
from shopfloor.maintenance.fault_diagnosis.simulator import FAULTS, simulate_bearing_signal, write_bearing_dataset
from shopfloor.maintenance.fault_diagnosis.task import FaultDiagnosis
from shopfloor.maintenance.vibration import Recording

SEGMENT = 512


def new_condition(folder, scale: float = 2.5, rpm: float = 1730.0):
    """Unlabelled recordings of every class at another speed and gain, in one flat folder (no class names)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, fault in enumerate(FAULTS):
        signal = simulate_bearing_signal(fault, duration_s=1.5, rpm=rpm, severity=0.9, seed=500 + k) * scale
        np.save(folder / f"recording_{k}.npy", signal)
    return folder


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    data = write_bearing_dataset(root / "data", recordings_per_class=1, duration_s=3.0, seed=0)
    task = FaultDiagnosis(sampling_rate=12_000, segment_length=SEGMENT, train_stride=64, eval_stride=256,
                          training={"epochs": 2, "batch_size": 64, "progress": False, "device": "cpu"})
    task.fit(data, out_dir=root / "model")
    return root, new_condition(root / "target")


def batchnorm_statistics(model: torch.nn.Module) -> list[np.ndarray]:
    return [m.running_mean.clone().numpy() for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]


def test_adapt_changes_only_normalisation_statistics_and_onnx_agrees_with_torch(fitted, tmp_path):
    root, target = fitted
    task = FaultDiagnosis.load(root / "model")
    x = np.stack([simulate_bearing_signal("inner_race", duration_s=0.2, seed=7)[:SEGMENT] * 2.5] * 3)[:, None]
    before_onnx = task.runtime.run(signal=x)["probabilities"]
    weights = {k: v.clone() for k, v in task.require_model().state_dict().items() if k.endswith("weight")}
    statistics = batchnorm_statistics(task.require_model())
    task.adapt(target, out_dir=tmp_path / "adapted")
    model = task.require_model()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())  # weights untouched
    assert all(not np.allclose(a, b) for a, b in zip(statistics, batchnorm_statistics(model)))
    after_onnx = task.runtime.run(signal=x)["probabilities"]
    with torch.no_grad():
        after_torch = task.export_module().eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(after_onnx, after_torch, atol=1e-5)  # the graph carries the adapted buffers
    assert not np.allclose(after_onnx, before_onnx, atol=1e-4)
    loaded = FaultDiagnosis.load(tmp_path / "adapted")  # saved, verified, same graph
    np.testing.assert_allclose(loaded.runtime.run(signal=x)["probabilities"], after_onnx, atol=1e-6)
    record = loaded.state["adaptation"]
    assert record["method"] == "adabn" and record["labels_used"] is False and record["augmented"] is True
    assert record["n_recordings"] == len(FAULTS) and record["n_segments"] >= 32
    assert loaded.state["adaptation_history"][-1]["data_fingerprint"] == record["data_fingerprint"]
    assert json.loads((tmp_path / "adapted" / "manifest.json").read_text())["state"]["adaptation"] == record
    assert FaultDiagnosis.load(root / "model").state.get("adaptation") is None  # the source model is kept


def test_adapt_never_reads_labels(fitted):
    root, target = fitted
    signals = [np.load(p) for p in sorted(target.glob("*.npy"))]
    outputs = []
    for labels in (FAULTS, FAULTS[::-1], [None] * len(FAULTS)):
        task = FaultDiagnosis.load(root / "model")
        task.adapt([Recording(s[None], 12_000.0, label, f"r{i}") for i, (s, label) in enumerate(zip(signals, labels))])
        outputs.append(batchnorm_statistics(task.require_model()))
    for other in outputs[1:]:
        for a, b in zip(outputs[0], other):
            np.testing.assert_array_equal(a, b)


def test_adapted_evaluate_reports_the_adaptation_and_ranges_cover_the_target(fitted):
    root, target = fitted
    task = FaultDiagnosis.load(root / "model")
    high_before = task.state["input_ranges"]["high"][0]
    task.adapt(target)
    assert task.state["input_ranges"]["high"][0] > high_before  # the target is 2.5x louder
    metrics = task.evaluate(root / "data")
    assert metrics["adaptation"] == "adabn" and metrics["n_recordings_adapted_on"] == 0


def test_adapt_refuses_too_little_data_and_unfitted_models(fitted):
    root, _ = fitted
    task = FaultDiagnosis.load(root / "model")
    with pytest.raises(DataError, match="at least 32"):
        task.adapt(np.zeros(SEGMENT * 3, np.float32) + np.random.default_rng(0).normal(size=SEGMENT * 3))
    with pytest.raises(DataError, match="unknown adaptation method"):
        task.adapt(fitted[1], method="magic")
    with pytest.raises(NotFittedError):
        FaultDiagnosis().adapt(fitted[1])


def test_cli_adapt_writes_a_new_model_and_refuses_the_same_directory(fitted, tmp_path):
    root, target = fitted
    runner = CliRunner()
    result = runner.invoke(app, ["adapt", str(root / "model"), "--data", str(target), "--out", str(tmp_path / "m2")])
    assert result.exit_code == 0, result.output
    assert FaultDiagnosis.load(tmp_path / "m2").state["adaptation"]["n_recordings"] == len(FAULTS)
    same = runner.invoke(app, ["adapt", str(root / "model"), "--data", str(target), "--out", str(root / "model")])
    assert same.exit_code == 2 and "must differ" in same.output


def test_segment_normalisation_ignores_gain_and_exports(tmp_path):
    data = write_bearing_dataset(tmp_path / "data", recordings_per_class=1, duration_s=2.0, seed=1)
    task = FaultDiagnosis(sampling_rate=12_000, segment_length=SEGMENT, train_stride=128, normalization="segment",
                          training={"epochs": 1, "batch_size": 64, "progress": False, "device": "cpu"})
    task.fit(data)
    x = np.random.default_rng(0).normal(size=(4, 1, SEGMENT)).astype(np.float32)
    onnx = task.runtime.run(signal=x)["probabilities"]
    np.testing.assert_allclose(task.runtime.run(signal=7 * x + 3)["probabilities"], onnx, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(task.export_module().eval()(torch.from_numpy(x)).numpy(), onnx, atol=1e-5)
    task.adapt(new_condition(tmp_path / "target"))  # AdaBN still adapts the BatchNorm layers
    assert task.state["adaptation"]["input_std_before"] is None


def test_models_saved_before_the_normalization_option_use_dataset_statistics():
    stored = FaultDiagnosis().config.model_dump(mode="json")
    del stored["normalization"]
    assert FaultDiagnosis(FaultDiagnosis.saved_config(stored)).config.normalization == "dataset"


def test_equalizer_and_speed_augmentation_keep_shape_and_are_identity_at_zero():
    from shopfloor.maintenance.fault_diagnosis.augment import SignalAugment, random_equalizer, random_speed

    x = torch.randn(3, 2, SEGMENT)
    torch.testing.assert_close(random_speed(x, 0.0), x)
    torch.testing.assert_close(random_equalizer(x, 0.0), x, atol=1e-5, rtol=0)
    tone = torch.sin(torch.arange(SEGMENT) * 0.3).repeat(3, 1, 1)
    faster = random_speed(tone, 0.1)  # a changed speed moves the tone's frequency, not its amplitude
    assert faster.shape == tone.shape and not torch.allclose(faster, tone) and faster.abs().max() <= 1.0 + 1e-6
    out = SignalAugment((0.0, 10.0), 0.5, (0.9, 1.1), equalizer_db=6.0, speed_change=0.04)(x)
    assert out.shape == x.shape and torch.isfinite(out).all()

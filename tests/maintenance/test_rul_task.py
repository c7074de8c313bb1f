"""The rul task end to end on simulated fleets: fit, evaluate, predict, export parity, save/load, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from shopfloor.core.errors import ConfigError, DataError
from shopfloor.core.explain.attribution import integrated_gradients
from shopfloor.core.registry import get_task
from shopfloor.maintenance.rul.simulator import write_degradation_dataset
from shopfloor.maintenance.rul.task import RemainingUsefulLife

EVALUATE_KEYS = {"rmse", "mae", "nasa_score", "rmse_raw", "nasa_score_raw", "interval_coverage", "n_units"}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("rul")
    paths = write_degradation_dataset(root / "data", n_train=12, n_test=6, seed=3, life_range=(50, 90))
    task = RemainingUsefulLife(window=15, ensemble=2, explain_units=2,
                               data={"setting_columns": ["setting_1", "setting_2"]},
                               training={"epochs": 2, "batch_size": 64, "progress": False})
    task.fit(paths["train"], root / "model")
    return task, paths, root


def test_registered():
    assert get_task("rul") is RemainingUsefulLife


def test_fit_state_and_artifact(fitted):
    task, _, root = fitted
    assert task.state["n_conditions"] == 3
    assert task.state["dropped_sensors"] == ["sensor_8"]
    assert task.state["n_train_units"] + task.state["n_val_units"] == 12
    # rotating member validation (default): 2 members hold out 2 different blocks of 2 units each
    assert task.config.member_validation == "rotating" and task.state["n_calibration_units"] == 4
    assert "never trained on it" in task.state["interval"]["method"]
    assert 0 < task.metrics["val_interval_coverage"] <= 1
    manifest = json.loads((root / "model" / "manifest.json").read_text())
    assert manifest["task"] == "rul" and manifest["state"]["features"] == task.features


def test_evaluate_keys_and_report(fitted, tmp_path):
    task, paths, _ = fitted
    result = task.evaluate(paths["test"], report_dir=tmp_path / "report")
    assert EVALUATE_KEYS <= set(result)
    assert result["n_units"] == 6
    assert result["rmse"] <= result["rmse_raw"] + 1e-9 or result["rmse"] >= 0  # both computed
    assert 0 <= result["interval_coverage"] <= 1
    html = (tmp_path / "report" / "report.html").read_text()
    assert "trajectories.png" in html and "attribution_mean.png" in html
    json.dumps(result)


def test_predict_one_row_per_unit_with_interval(fitted, tmp_path):
    task, paths, _ = fitted
    rows = task.predict([paths["recent"]], out_dir=tmp_path, explain=True)
    assert [r["unit"] for r in rows] == list(range(1000, 1006))
    for r in rows:
        assert 0 <= r["lower"] <= r["rul"] <= r["upper"]
        assert len(r["top_sensors"]) == 5
    assert (tmp_path / "rul_predictions.csv").is_file()
    json.dumps(rows)


def test_onnx_matches_torch_and_reload(fitted):
    task, paths, root = fitted
    recent = pd.read_csv(paths["recent"])
    histories = task._read(recent, "test")
    windows = task._windows(histories, last_n=None).x
    onnx_out = task.run_windows(windows)
    with torch.no_grad():
        torch_out = task.torch_model(torch.as_tensor(windows))
    for name, value in zip(["rul", "lower", "upper", "spread"], torch_out):
        np.testing.assert_allclose(onnx_out[name], value.numpy(), atol=1e-3, rtol=1e-4)
    loaded = RemainingUsefulLife.load(root / "model")
    again = loaded.predict([recent])
    first = task.predict([recent])
    assert [r["rul"] for r in again] == pytest.approx([r["rul"] for r in first], abs=1e-4)


def test_integrated_gradients_completeness(fitted):
    task, paths, _ = fitted
    histories = task._read(paths["recent"], "test")
    x = task._windows(histories, last_n=1).x[:3]
    base = task.attribution_baselines(x)
    attributions = integrated_gradients(task.torch_model.mean_rul, x, base, n_steps=64)
    with torch.no_grad():
        delta = (task.torch_model.mean_rul(torch.as_tensor(x)) - task.torch_model.mean_rul(torch.as_tensor(base)))
    tolerance = 0.05 * float(delta.abs().max()) + 0.05
    np.testing.assert_allclose(attributions.sum(axis=(1, 2)), delta.numpy(), atol=tolerance)
    n_settings = len(task.state["settings"])
    assert np.abs(attributions[..., :n_settings]).max() < 1e-6  # settings equal the baseline's


def test_evaluate_needs_truth_and_predict_needs_columns(fitted, tmp_path):
    task, paths, _ = fitted
    with pytest.raises(DataError, match="no true RUL"):
        task.evaluate(paths["recent"])
    pd.read_csv(paths["recent"]).drop(columns=["sensor_3"]).to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(DataError, match="sensor_3"):
        task.predict([tmp_path / "r.csv"])


def test_short_test_units_are_padded_by_default_and_refused_on_request(fitted):
    task, paths, _ = fitted
    recent = pd.read_csv(paths["recent"])
    recent = recent[~((recent["unit"] == 1001) & (recent["time"] > 5))]
    with pytest.raises(DataError, match=r"1001 \(5 rows\).*--short-units pad"):
        task.predict([recent], short_units="error")
    with pytest.warns(UserWarning, match="less certainty"):
        rows = task.predict([recent])
    assert [r["padded"] for r in rows] == [False, True, False, False, False, False]
    assert [bool(r["caveats"]) for r in rows] == [False, True, False, False, False, False]


def test_bad_config_is_config_error():
    with pytest.raises(ConfigError):
        RemainingUsefulLife(model="resnet")
    with pytest.raises(ConfigError):
        RemainingUsefulLife(interval_level=1.5)


def test_baseline_channels_ignore_a_unit_wide_offset():
    """The deviation channels compare a window with the unit's own first readings, so shifting a whole
    unit's sensor by a constant (manufacturing offset) leaves them unchanged while the level channels move."""
    from shopfloor.maintenance.rul.networks import WindowFeatures
    from shopfloor.maintenance.windows import ConditionNormalizer

    features = WindowFeatures(ConditionNormalizer(n_settings=0, n_sensors=3), baseline_rows=4)
    x = torch.randn(2, 4 + 6, 3)
    shifted = x + torch.tensor([5.0, 0.0, -2.0])
    a, b = features(x), features(shifted)
    assert a.shape == (2, 6, 6)  # (batch, 3 levels + 3 deviations, window)
    torch.testing.assert_close(a[:, 3:], b[:, 3:])
    assert not torch.allclose(a[:, :3], b[:, :3])
    torch.testing.assert_close(a[:, 3:], (x[:, 4:] - x[:, :4].mean(dim=1, keepdim=True)).transpose(1, 2))


def test_units_without_their_early_history_are_estimated_or_refused_on_request(fitted):
    """The baseline reference is each unit's first readings: a table of recent rows only is estimated with the
    fleet's reference by default, refused with late_start="error"."""
    task, paths, _ = fitted
    recent = pd.read_csv(paths["recent"])
    late = recent[recent["time"] > 40]
    with pytest.raises(DataError, match="start late.*history from its start"):
        task.predict([late], late_start="error")


def test_rotating_validation_calibrates_on_units_a_member_never_trained_on_and_shared_on_one_block(tmp_path, monkeypatch):
    from shopfloor.maintenance.rul import task as rul

    paths = write_degradation_dataset(tmp_path / "data", n_train=10, n_test=2, seed=5, life_range=(50, 70))
    task = RemainingUsefulLife(window=15, ensemble=2, member_validation="rotating",
                               data={"setting_columns": ["setting_1", "setting_2"]},
                               training={"epochs": 1, "batch_size": 64, "progress": False})
    seen = {}
    original = rul.calibrate_interval

    def spy(y, mean, spread, level):
        seen["mean"] = mean
        return original(y, mean, spread, level)

    monkeypatch.setattr(rul, "calibrate_interval", spy)
    task.fit(paths["train"])
    # 2 members hold out 2 different blocks of 2 units each
    assert task.state["n_calibration_units"] == 4 and task.state["n_val_units"] == 2
    assert "never trained on it" in task.state["interval"]["method"]
    # the calibrated estimates are single members' (member k on block k), not the ensemble's
    histories = task._read(paths["train"], "train")
    block = rul.split_units(histories.units, 0.2, 0, block=1)[1]
    windows = task._windows(histories.select_units(block))
    ensemble = task._estimates(task.require_model(), windows)["rul"]
    below = windows.target(task.config.rul_cap) < task.config.rul_cap
    assert not np.allclose(seen["mean"][-below.sum():], ensemble[below])
    shared = RemainingUsefulLife(window=15, ensemble=2, member_validation="shared",
                                 data={"setting_columns": ["setting_1", "setting_2"]},
                                 training={"epochs": 1, "batch_size": 64, "progress": False}).fit(paths["train"])
    assert shared.state["n_calibration_units"] == 2 and "whole ensemble" in shared.state["interval"]["method"]


def test_constant_interval_width_is_the_same_for_every_unit(tmp_path):
    paths = write_degradation_dataset(tmp_path / "data", n_train=10, n_test=4, seed=6, life_range=(50, 70))
    task = RemainingUsefulLife(window=15, ensemble=2, interval_width="constant",
                               data={"setting_columns": ["setting_1", "setting_2"]},
                               training={"epochs": 1, "batch_size": 64, "progress": False})
    task.fit(paths["train"], tmp_path / "model")
    loaded = RemainingUsefulLife.load(tmp_path / "model")
    histories = loaded._read(paths["test"], "test")
    windows = loaded._windows(histories)
    out = loaded.run_windows(windows.x)
    upper_half = (out["upper"] - out["rul"])[out["rul"] > 0]  # (an estimate clipped at 0 keeps upper = mean + half)
    np.testing.assert_allclose(upper_half, upper_half[0], rtol=1e-5)  # no spread in the width
    assert upper_half[0] > 0 and out["spread"].max() > 0
    with torch.no_grad():  # the exported graph agrees with the torch model
        reference = loaded.require_model()(torch.as_tensor(windows.x))
    np.testing.assert_allclose(out["upper"], reference[2].numpy(), rtol=1e-4, atol=1e-3)


def test_models_saved_before_the_interval_options_keep_their_spread_interval(fitted):
    task, _, _ = fitted
    stored = task.config.model_dump(mode="json")
    del stored["interval_width"], stored["member_validation"]
    old = RemainingUsefulLife(RemainingUsefulLife.saved_config(stored))
    assert (old.config.interval_width, old.config.member_validation) == ("spread", "shared")
    assert old._spread_weight == 1.0 and task._spread_weight == 0.0


# ----------------------------------------------------------------------------- inputs and safety
def test_training_ranges_and_inputs_note_are_stored(fitted):
    task, _, root = fitted
    ranges = task.state["input_ranges"]
    assert ranges["columns"] == [c for c in task.features if c != "time"]  # raw settings and sensors, not the age
    assert all(lo < hi for lo, hi in zip(ranges["low"], ranges["high"]))
    assert any(n.startswith("model inputs:") and "sensor_1" in n for n in task.state["notes"])
    manifest = json.loads((root / "model" / "manifest.json").read_text())
    assert manifest["state"]["input_ranges"] == ranges


def test_celsius_sent_to_a_kelvin_model_is_flagged_and_refused_when_strict(fitted):
    from shopfloor.core.errors import OutOfRangeWarning

    task, paths, root = fitted
    recent = pd.read_csv(paths["recent"])
    sensor = next(c for c in task.state["input_ranges"]["columns"] if c.startswith("sensor"))
    celsius = recent.copy()
    celsius.loc[celsius["unit"] == 1002, sensor] -= 273.15
    with pytest.warns(OutOfRangeWarning, match=f"unit 1002.*{sensor}"):
        rows = task.predict(celsius)  # one DataFrame is one input
    flagged = {r["unit"]: r["out_of_range_columns"] for r in rows}
    assert flagged.pop(1002) == [sensor] and not any(flagged.values())
    assert [r["out_of_range"] for r in rows] == [r["unit"] == 1002 for r in rows]
    strict = RemainingUsefulLife.load(root / "model", strict=True)
    with pytest.raises(DataError, match=f"1002.*{sensor}.*strict"):
        strict.predict([celsius])
    assert not any(r["out_of_range"] for r in strict.predict([recent]))
    test = pd.read_csv(paths["test"])
    assert task.evaluate(test)["n_out_of_range"] == 0
    test.loc[test["unit"] == 1002, sensor] -= 273.15
    with pytest.warns(OutOfRangeWarning):
        assert task.evaluate(test)["n_out_of_range"] == 1


def test_bad_inputs_refuse_the_batch_or_are_skipped_and_a_path_is_one_input(fitted, tmp_path):
    task, paths, _ = fitted
    broken = tmp_path / "broken.csv"
    pd.read_csv(paths["recent"]).drop(columns=["sensor_2"]).to_csv(broken, index=False)
    missing = tmp_path / "missing.csv"
    with pytest.raises(DataError, match=r"2 of 3 input\(s\)(?s:.*)sensor_2(?s:.*)missing\.csv"):
        task.predict([paths["recent"], broken, missing])
    with pytest.warns(UserWarning, match="skipped 2 of 3"):
        rows = task.predict([broken, paths["recent"], missing], skip_bad=True)
    assert rows[0] == {"input": str(broken), "skipped": True, "error": pytest.approx(rows[0]["error"])}
    assert "sensor_2" in rows[0]["error"] and rows[-1]["skipped"] and "missing.csv" in rows[-1]["error"]
    assert [r["unit"] for r in rows[1:-1]] == list(range(1000, 1006))
    assert [r["unit"] for r in task.predict(str(paths["recent"]))] == list(range(1000, 1006))  # not its characters


def test_columns_the_model_never_saw_are_named(fitted):
    task, paths, _ = fitted
    recent = pd.read_csv(paths["recent"]).assign(sensor_99=1.0)
    with pytest.warns(UserWarning, match=r"sensor_99.*not in the training data"):
        task.predict([recent])

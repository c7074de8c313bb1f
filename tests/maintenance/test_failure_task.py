"""failure-prediction end to end on synthetic records: fit, ONNX parity, stored thresholds, evaluate, predict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from shopfloor.core.errors import DataError
from shopfloor.core.registry import get_task
from shopfloor.maintenance.failure_prediction.simulator import make_process_records
from shopfloor.maintenance.failure_prediction.task import FailurePrediction, _max_f1_threshold, binary_metrics

SMALL = {"epochs": 10, "batch_size": 128, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("fp")
    records = make_process_records(2500, seed=0)
    records.iloc[:2000].to_csv(root / "train.csv", index=False)
    records.iloc[2000:].to_parquet(root / "test.parquet")
    task = FailurePrediction(folds=2, training=SMALL)
    task.fit(root / "train.csv", out_dir=root / "model")
    return task, root


def test_registered():
    assert get_task("failure-prediction") is FailurePrediction


def test_onnx_matches_torch_and_thresholds_are_stored(fitted):
    task, root = fitted
    frame = pd.read_parquet(root / "test.parquet").head(50)
    numeric, categorical = task._inputs(frame)
    with torch.no_grad():
        expected = task.require_model().eval()(torch.from_numpy(numeric), torch.from_numpy(categorical))
    got = task.runtime.run(numeric=numeric, categorical=categorical)
    for name, value in zip(task.runtime.output_names, expected):
        np.testing.assert_allclose(got[name], value.numpy(), atol=1e-5)
    stored = task.require_model().thresholds.numpy()
    assert stored[0] == pytest.approx(task.state["thresholds"]["failure"])
    assert set(task.state["thresholds"]) == {"failure", "TWF", "HDF", "PWF", "OSF", "RNF"}
    assert "val_f1" in task.metrics


def test_evaluate_keys_and_report(fitted):
    task, root = fitted
    metrics = task.evaluate(root / "test.parquet", report_dir=root / "report")
    for key in ("f1", "precision", "recall", "pr_auc", "roc_auc", "per_mode", "threshold"):
        assert key in metrics
    assert set(metrics["per_mode"]) == {"TWF", "HDF", "PWF", "OSF", "RNF"}
    assert "alarm_recall" in metrics["per_mode"]["HDF"]
    assert metrics["roc_auc"] > 0.7
    assert (root / "report" / "report.html").is_file()
    json.dumps(metrics)


def test_save_load_predict_explain(fitted):
    task, root = fitted
    loaded = FailurePrediction.load(root / "model")
    frame = pd.read_parquet(root / "test.parquet").head(4)
    a = loaded.predict([frame.drop(columns=["Machine failure", "TWF", "HDF", "PWF", "OSF", "RNF"])], explain=True)
    b = task.predict([frame])
    assert len(a) == 4 and a[0]["probability"] == pytest.approx(b[0]["probability"], abs=1e-6)
    assert set(a[0]["attribution"]) == set(task.schema.numeric)
    frame.loc[frame.index[0], "Type"] = "Z"
    with pytest.raises(DataError, match="never seen in training"):
        loaded.predict([frame])


def test_evaluate_needs_the_target(fitted):
    task, root = fitted
    frame = pd.read_parquet(root / "test.parquet").drop(columns=["HDF"])
    with pytest.raises(DataError, match="missing column"):
        task.evaluate(frame)


def test_plain_table_without_modes_or_categories(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3))
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "broken": (x[:, 0] + x[:, 1] > 1.5).astype(int)})
    task = FailurePrediction(target="broken", derived_features=["ab = a + b"], folds=1, training=SMALL)
    task.fit(frame)
    metrics = task.evaluate(frame.tail(200))
    assert metrics["per_mode"] == {} and metrics["roc_auc"] > 0.8
    with pytest.raises(DataError, match="missing target column"):
        FailurePrediction(target="nope").fit(frame)


def test_threshold_and_metrics_on_a_worked_example():
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    threshold, f1 = _max_f1_threshold(y, p)
    # best alarm set {0.35, 0.4, 0.8, 0.9}: TP 3, FP 1 (0.4), FN 0; any threshold in (0.2, 0.35] gives it,
    # and the stored one is the middle of that gap in logit space
    assert f1 == pytest.approx(6 / 7)
    assert threshold == pytest.approx(1 / (1 + np.exp(-(np.log(0.35 / 0.65) + np.log(0.2 / 0.8)) / 2)))
    assert 0.2 < threshold < 0.35
    m = binary_metrics(y, (p >= 0.5).astype(int), p)
    assert (m["precision"], m["recall"]) == (1.0, pytest.approx(2 / 3))
    assert m["roc_auc"] == pytest.approx(8 / 9)  # pairs (pos, neg) ranked right: 8 of 9


def test_repeated_cross_fitting_averages_the_members_that_held_a_record_out(monkeypatch):
    records = make_process_records(900, seed=3)
    task = FailurePrediction(folds=2, repeats=2, training={**SMALL, "epochs": 2})
    folds = task._folds(records["Machine failure"].to_numpy().astype(float))
    assert len(folds) == 4
    held_out = np.zeros(len(records))
    for train_idx, val_idx in folds:
        assert not set(train_idx) & set(val_idx)
        held_out[val_idx] += 1
    assert (held_out == 2).all()  # each record held out once per repeat
    assert not np.array_equal(folds[0][1], folds[2][1])  # the repeats draw other folds
    seen = {}
    original = FailurePrediction._choose_thresholds

    def spy(self, ensemble, y, p, schema):
        seen["y"], seen["p"] = y, p
        original(self, ensemble, y, p, schema)

    monkeypatch.setattr(FailurePrediction, "_choose_thresholds", spy)
    task.fit(records)
    assert task.state["n_members"] == 4 and len(seen["y"]) == len(records)
    # the out-of-fold estimate of a record is the sigmoid of the mean logit of the two members that held it out
    ensemble = task.require_model().eval()
    numeric, categorical = task._inputs(records.iloc[:50])
    with torch.no_grad():
        logits = [m(torch.from_numpy(numeric), torch.from_numpy(categorical)).numpy() for m in ensemble.members]
    expected = np.zeros((50, logits[0].shape[1]))
    for k, (_, val_idx) in enumerate(folds):
        rows = val_idx[val_idx < 50]
        expected[rows] += logits[k][rows] / 2
    np.testing.assert_allclose(seen["p"][:50], 1 / (1 + np.exp(-expected)), rtol=1e-5, atol=1e-6)


def test_models_saved_before_the_wide_part_load_without_it(fitted):
    task, root = fitted
    stored = task.config.model_dump(mode="json")
    assert FailurePrediction.saved_config(stored)["wide"] is True  # a saved value wins
    del stored["wide"]  # a config written before the field existed
    old = FailurePrediction(FailurePrediction.saved_config(stored))
    assert old.config.wide is False and FailurePrediction(stored).config.wide is True


def test_default_ordinal_applies_only_where_type_is_a_varying_feature():
    records = make_process_records(600, seed=4)
    task = FailurePrediction()
    assert task._resolve_columns(records)[2] == {"Type": ["L", "M", "H"]}
    assert task._resolve_columns(records.assign(Type="L"))[2] == {}  # constant: dropped, not ordinal
    assert FailurePrediction(id_columns=["UDI", "Product ID", "Type"])._resolve_columns(records)[2] == {}
    assert FailurePrediction(features=["Torque [Nm]", "Tool wear [min]"])._resolve_columns(records)[2] == {}


def test_one_split_per_repeat_with_a_single_fold():
    y = (np.arange(500) % 10 == 0).astype(float)
    folds = FailurePrediction(folds=1, repeats=3)._folds(y)
    assert len(folds) == 3 and not np.array_equal(folds[0][1], folds[1][1])
    for train_idx, val_idx in folds:
        assert not set(train_idx) & set(val_idx) and y[val_idx].sum() > 0


# ----------------------------------------------------------------------------- inputs and safety
def test_training_ranges_and_inputs_note_are_stored(fitted):
    task, _ = fitted
    assert task.state["input_ranges"]["columns"] == task.schema.numeric
    assert "Air temperature [K]" in task.state["input_ranges"]["columns"]
    note = task.state["notes"][0]
    assert note.startswith("model inputs:") and "left out as identifiers: [UDI, Product ID]" in note
    assert "UDI" not in task.schema.numeric and "warnings" not in task.state  # the clean fixture warns of nothing


def test_celsius_sent_to_a_kelvin_model_is_flagged_and_refused_when_strict(fitted):
    from shopfloor.core.errors import OutOfRangeWarning

    task, root = fitted
    frame = pd.read_parquet(root / "test.parquet").head(5)
    celsius = frame.copy()
    celsius.loc[celsius.index[1], "Air temperature [K]"] -= 273.15
    with pytest.warns(OutOfRangeWarning, match=r"row 1: Air temperature \[K\]"):
        rows = task.predict(celsius)  # one DataFrame is one input
    assert [r["out_of_range"] for r in rows] == [False, True, False, False, False]
    assert rows[1]["out_of_range_columns"] == ["Air temperature [K]"]
    strict = FailurePrediction.load(root / "model", strict=True)
    with pytest.raises(DataError, match=r"Air temperature \[K\] \(trained on 29\d.*strict"):
        strict.predict([celsius])
    assert task.evaluate(root / "test.parquet")["n_out_of_range"] == 0
    with pytest.warns(OutOfRangeWarning):
        assert task.evaluate(celsius)["n_out_of_range"] == 1


def test_bad_tables_refuse_the_batch_or_are_skipped_and_a_path_is_one_input(fitted, tmp_path):
    task, root = fitted
    good = tmp_path / "good.csv"
    pd.read_parquet(root / "test.parquet").head(3).to_csv(good, index=False)
    text = pd.read_csv(good).astype({"Torque [Nm]": object})
    text.loc[0, "Torque [Nm]"] = "high"
    text.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(DataError, match=r"2 of 3 input\(s\)(?s:.*)'Torque \[Nm\]' must be numeric(?s:.*)nope\.csv"):
        task.predict([tmp_path / "text.csv", good, tmp_path / "nope.csv"])
    with pytest.warns(UserWarning, match="skipped 2 of 3"):
        rows = task.predict([tmp_path / "text.csv", good, tmp_path / "nope.csv"], skip_bad=True)
    assert [r.get("skipped", False) for r in rows] == [True, False, False, False, True]
    assert rows[0]["input"] == str(tmp_path / "text.csv") and "must be numeric" in rows[0]["error"]
    assert [r["row"] for r in task.predict(str(good))] == [0, 1, 2]  # a str path is one input


def test_unknown_and_missing_columns_are_named(fitted):
    task, root = fitted
    frame = pd.read_parquet(root / "test.parquet").head(3)
    with pytest.warns(UserWarning, match=r"Tool wear \[h\] were not in the training data"):
        with pytest.raises(DataError, match=r"missing feature column \['Tool wear \[min\]'\]"):
            task.predict([frame.rename(columns={"Tool wear [min]": "Tool wear [h]"})])

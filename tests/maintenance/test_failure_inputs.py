"""Process records that would give silent wrong answers: identifier columns, copied records, useless thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopfloor.core.errors import DataError
from shopfloor.maintenance.checks import id_like_columns, name_tokens
from shopfloor.maintenance.failure_prediction.task import MAX_NORMAL_ALARM_RATE, FailurePrediction
from shopfloor.core.tables import read_table

TINY = {"epochs": 2, "batch_size": 128, "progress": False, "device": "cpu"}


def _table(n: int = 300, seed: int = 0, prevalence: float | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    target = rng.random(n) < prevalence if prevalence is not None else (x[:, 0] + x[:, 1] > 1.0)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "broken": target.astype(int)})


def test_identifier_words_and_value_rules():
    assert name_tokens("rowID") == ["row", "id"] and name_tokens("Product ID") == ["product", "id"]
    frame = pd.DataFrame({"counter": np.arange(20), "stamp": np.linspace(0, 1, 20) ** 2,
                          "batch": np.arange(20) % 4, "lot_id": np.random.default_rng(0).permutation(20),
                          "temp": np.random.default_rng(1).normal(size=20), "flag": [True, False] * 10})
    found = {f.column: f.refuse for f in id_like_columns(frame, frame.columns)}
    assert found == {"counter": True, "lot_id": True, "batch": False, "stamp": False}


def test_a_row_counter_is_refused_and_id_columns_resolves_it(tmp_path):
    table = _table()
    table.to_csv(tmp_path / "with_index.csv")  # the DataFrame index saved as an unnamed first column
    frame = read_table(tmp_path / "with_index.csv")
    with pytest.raises(DataError, match=r"'Unnamed: 0' \(integer values unique per row.*--id-columns "
                                        r"'UDI,Product ID,Unnamed: 0'"):
        FailurePrediction(target="broken", folds=2, training=TINY).fit(frame)
    task = FailurePrediction(target="broken", folds=2, id_columns=["Unnamed: 0"], training=TINY).fit(frame)
    assert task.schema.numeric == ["a", "b", "c"] and "warnings" not in task.state
    explicit = FailurePrediction(target="broken", folds=2, features=["a", "b"], training=TINY).fit(frame)
    assert explicit.schema.numeric == ["a", "b"]  # declared features are not second-guessed


def test_a_useless_threshold_and_copied_records_are_training_warnings():
    table = _table(400, seed=3, prevalence=0.5)  # the features carry no information about the target
    table = pd.concat([table, table.iloc[:4]], ignore_index=True)
    task = FailurePrediction(target="broken", folds=2, training=TINY)
    with pytest.warns(UserWarning) as caught:
        task.fit(table)
    kept = task.state["warnings"]
    assert {str(w.message) for w in caught} >= set(kept)
    rate = task.state["validation"]["val_normal_alarm_rate"]
    assert rate > MAX_NORMAL_ALARM_RATE and task.metrics["val_normal_alarm_rate"] == rate
    assert any(f"fires on {rate:.0%} of the normal out-of-fold records" in w and "more failure examples" in w
               for w in kept)
    assert any("4 of 404 records repeat an earlier record" in w and "400 = 0" in w for w in kept)


def test_a_threshold_chosen_on_few_failures_is_a_warning():
    task = FailurePrediction()
    task.state = {"modes": ["HDF"]}
    y = np.zeros((200, 2))
    y[:6, 0] = y[:6, 1] = 1
    alarm = np.zeros(200, dtype=int)
    alarm[:6] = 1
    with pytest.warns(UserWarning) as caught:
        task._check_thresholds(y, alarm, 0.0, 0.4, [True])
    assert [str(w.message) for w in caught] == task.state["warnings"]
    assert "only 6 failure record" in task.state["warnings"][0] and "HDF (6)" in task.state["warnings"][1]
    quiet = FailurePrediction()
    quiet.state = {"modes": []}
    y = np.zeros((200, 1))
    y[:40] = 1
    quiet._check_thresholds(y, y[:, 0].astype(int), 0.0, 0.4, [])
    assert "warnings" not in quiet.state


def test_duplicate_column_names_and_folders_are_refused(tmp_path):
    (tmp_path / "t.csv").write_text("a, a,broken\n1,2,0\n")
    with pytest.raises(DataError, match=r"several columns named \['a'\]"):
        read_table(tmp_path / "t.csv")
    with pytest.raises(DataError, match="is a folder"):
        read_table(tmp_path)

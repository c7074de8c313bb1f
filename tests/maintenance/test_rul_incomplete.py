"""Histories as they arrive in the field: shorter than the window, gaps, unseen conditions, starting mid-life.
Each evaluates and predicts with defaults, gets a wider interval and says why (``caveats``); nothing needs
retraining (prediction-time options only)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from shopfloor.core.errors import DataError
from shopfloor.maintenance.rul.incomplete import condition_distance, normalised_rows, substitute_reference
from shopfloor.maintenance.rul.simulator import write_degradation_dataset
from shopfloor.maintenance.rul.task import RemainingUsefulLife


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("rul_incomplete")
    paths = write_degradation_dataset(root / "data", n_train=12, n_test=6, seed=3, life_range=(50, 90))
    task = RemainingUsefulLife(window=15, ensemble=2, data={"setting_columns": ["setting_1", "setting_2"]},
                               training={"epochs": 2, "batch_size": 64, "progress": False})
    task.fit(paths["train"], root / "model")
    return task, paths


def rows_by_unit(task: RemainingUsefulLife, frame: pd.DataFrame, **options) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {r["unit"]: r for r in task.predict([frame], **options)}


def half_width(row: dict) -> float:
    return row["upper"] - row["rul"]


def test_fit_stores_the_fleet_reference_condition_radius_and_baseline_factor(fitted):
    task, _ = fitted
    assert len(task.state["fleet_reference"]) == len(task.state["sensors"])
    assert task.state["condition_radius"] > 0
    assert task.state["interval"]["estimated_baseline_factor"] >= 1.0


def test_a_unit_shorter_than_the_window_gets_a_wider_interval_and_a_caveat(fitted):
    task, paths = fitted
    recent = pd.read_csv(paths["recent"])
    cut = recent[~((recent["unit"] == 1001) & (recent["time"] > 5))]
    full, short = rows_by_unit(task, recent), rows_by_unit(task, cut)
    assert short[1001]["padded"] and "missing readings" in short[1001]["caveats"][0]
    others = [u for u in short if u != 1001 and short[u]["rul"] > 0]
    assert not any(short[u]["caveats"] for u in others)
    normal = half_width(full[others[0]])  # constant-width interval: the same for every complete unit
    assert half_width(short[1001]) == pytest.approx(normal * np.sqrt(15 / 5), rel=1e-3)


def test_a_model_trained_with_short_units_error_still_evaluates_short_test_units(fitted):
    """short_units at prediction time is an evaluate/predict option (default pad), not the training setting."""
    task, paths = fitted
    old = RemainingUsefulLife(task.config.model_dump() | {"short_units": "error"})
    old.state, old.torch_model = task.state, task.torch_model
    test = pd.read_csv(paths["test"])
    test = test[~((test["unit"] == 1002) & (test["time"] > 8))]
    with pytest.warns(UserWarning, match="less certainty"):
        result = old.evaluate(test)
    assert result["n_units"] == 6 and result["n_padded_units"] == 1 and result["n_units_with_caveats"] == 1
    assert "1002" in result["caveats"]
    with pytest.raises(DataError, match="fewer rows than the window"):
        old.evaluate(test, short_units="error")


def test_gaps_in_the_cycles_are_warned_about_and_widen_the_interval(fitted):
    task, paths = fitted
    recent = pd.read_csv(paths["recent"])
    last = recent.loc[recent["unit"] == 1003, "time"].max()
    gappy = recent[~((recent["unit"] == 1003) & (recent["time"] > last - 20) & (recent["time"] % 2 == 0))]
    with pytest.warns(UserWarning, match="gap"):
        rows = {r["unit"]: r for r in task.predict([gappy])}
    assert "missing readings" in rows[1003]["caveats"][0]
    # the last 15 rows (46..50, then every other cycle 51..69) span 24 cycles: half-width x sqrt(24 / 15)
    assert half_width(rows[1003]) == pytest.approx(half_width(rows_by_unit(task, recent)[1003]) * np.sqrt(24 / 15),
                                                   rel=1e-3)


def test_an_unseen_operating_condition_opens_the_interval(fitted):
    task, paths = fitted
    recent = pd.read_csv(paths["recent"])
    normalizer = task.require_model().features.normalizer
    train = pd.read_csv(paths["train"])
    grid = np.stack(np.meshgrid(np.linspace(train["setting_1"].min(), train["setting_1"].max(), 25),
                                np.linspace(train["setting_2"].min(), train["setting_2"].max(), 25)), -1).reshape(-1, 2)
    farthest = grid[condition_distance(grid, normalizer).argmax()]  # inside the training ranges, far from every centre
    unseen = recent.copy()
    tail = (unseen["unit"] == 1004) & (unseen["time"] > unseen.loc[unseen["unit"] == 1004, "time"].max() - 5)
    unseen.loc[tail, ["setting_1", "setting_2"]] = farthest
    rows = rows_by_unit(task, unseen)
    assert any("unlike any training condition" in c for c in rows[1004]["caveats"])
    assert rows[1004]["lower"] == 0 and rows[1004]["upper"] >= task.config.rul_cap
    assert not rows[1004]["out_of_range"]  # within the ranges: only the condition check sees it
    assert not any(r["caveats"] for u, r in rows.items() if u != 1004)


def test_a_history_starting_mid_life_uses_the_fleet_reference_with_a_wider_interval(fitted):
    task, paths = fitted
    recent = pd.read_csv(paths["recent"])
    late = recent[recent["time"] > 40]
    with pytest.warns(UserWarning, match="mid-life"):
        rows = {r["unit"]: r for r in task.predict([late])}
    assert rows and all(any("mid-life" in c for c in r["caveats"]) for r in rows.values())
    factor = task.state["interval"]["estimated_baseline_factor"]
    full = rows_by_unit(task, recent)
    unit = next(u for u, r in rows.items() if r["rul"] > 0 and not r["padded"])
    assert half_width(rows[unit]) == pytest.approx(half_width(full[unit]) * factor, rel=1e-3)
    # a model saved before the fleet reference existed still predicts, with its own first readings
    old = RemainingUsefulLife(task.config.model_dump())
    old.state = {k: v for k, v in task.state.items() if k != "fleet_reference"}
    old.torch_model = task.torch_model
    assert all("no fleet reference" in rows_by_unit(old, late)[u]["caveats"][-1] for u in rows)


def test_the_substituted_reference_rows_normalise_to_the_fleet_reference(fitted):
    task, paths = fitted
    k = task.config.baseline_cycles
    histories = task._read(paths["test"], "test")
    windows = task._windows(histories, last_n=1)
    normalizer = task.require_model().features.normalizer
    reference = np.asarray(task.state["fleet_reference"])
    x = substitute_reference(windows.x, k, normalizer, reference)
    np.testing.assert_array_equal(x[:, k:], windows.x[:, k:])  # only the reference rows change
    np.testing.assert_array_equal(x[:, :k, :2], windows.x[:, :k, :2])  # settings (their condition) kept
    z = normalised_rows(x[0, :k], normalizer)
    np.testing.assert_allclose(z, np.broadcast_to(reference, z.shape), atol=1e-3)  # float32 raw values


def test_every_cmapss_subset_trained_with_defaults_evaluates_and_predicts_with_defaults(shared_dataset, tmp_path):
    """FD002 has test units shorter than the default window: defaults pad them (caveat, wider interval)."""
    root = shared_dataset("cmapss")
    task = RemainingUsefulLife(data={"subset": "FD002"}, ensemble=1, epoch_windows=2048,
                               training={"epochs": 1, "progress": False})
    task.fit(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = task.evaluate(root)
        rows = task.predict([root / "test_FD002.txt.gz"])
    assert result["n_units"] == 259 and result["n_padded_units"] == 6 and np.isfinite(result["rmse"])
    assert len(rows) == 259 and sum(r["padded"] for r in rows) == 6
    assert all(r["caveats"] for r in rows if r["padded"])

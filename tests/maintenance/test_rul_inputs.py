"""Sensor histories that would give silent wrong answers: identifier columns, bad RUL, disordered or gappy cycles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopfloor.core.errors import DataError
from shopfloor.maintenance.histories import HistorySpec, read_cmapss_file, read_sensor_table
from shopfloor.maintenance.rul.simulator import simulate_degradation
from shopfloor.maintenance.rul.task import RemainingUsefulLife

SPEC = HistorySpec(setting_columns=["setting_1", "setting_2"])


@pytest.fixture(scope="module")
def fleet() -> pd.DataFrame:
    return simulate_degradation(6, seed=1, life_range=(30, 40))


def test_a_clean_fleet_reads_without_warnings(fleet):
    histories = read_sensor_table(fleet, SPEC, run_to_failure=True)
    assert histories.warnings == [] and histories.columns == list(fleet.columns)


@pytest.mark.parametrize("name", ["row_id", "Unnamed: 0", "reading"])
def test_a_row_counter_is_refused_and_id_columns_resolves_it(fleet, name):
    table = fleet.assign(**{name: np.arange(len(fleet)) + 100})
    with pytest.raises(DataError, match=f"'{name}'.*row counter.*--id-columns {name}"):
        read_sensor_table(table, SPEC)
    histories = read_sensor_table(table, SPEC.model_copy(update={"id_columns": [name]}))
    assert name not in histories.sensors and histories.warnings == []
    task = RemainingUsefulLife(data={"setting_columns": ["setting_1", "setting_2"], "id_columns": [name]})
    assert name not in task._read(table, "train").sensors  # the config field (--id-columns)


def test_an_id_unique_per_row_is_refused_and_a_repeating_batch_number_is_a_warning(fleet):
    shuffled = np.random.default_rng(0).permutation(len(fleet))
    with pytest.raises(DataError, match="'serial_no'.*named like an identifier"):
        read_sensor_table(fleet.assign(serial_no=shuffled), SPEC)
    histories = read_sensor_table(fleet.assign(batch=fleet["time"] % 3), SPEC)
    assert "batch" in histories.sensors
    (warning,) = histories.warnings
    assert "'batch'" in warning and "--id-columns batch" in warning


def test_a_unit_attribute_is_a_warning(fleet):
    histories = read_sensor_table(fleet.assign(build=fleet["unit"] * 7.5), SPEC)
    assert any("['build'] are constant within every unit" in w for w in histories.warnings)


def test_declared_sensors_are_not_second_guessed(fleet):
    spec = SPEC.model_copy(update={"sensor_columns": ["sensor_1", "row_id"]})
    assert read_sensor_table(fleet.assign(row_id=np.arange(len(fleet))), spec).warnings == []


def test_duplicated_unit_cycle_rows_are_refused(fleet):
    with pytest.raises(DataError, match="several rows at time"):
        read_sensor_table(pd.concat([fleet, fleet.iloc[[5]]]), SPEC)


def test_negative_or_non_numeric_remaining_life_is_refused(fleet):
    bad = fleet.copy()
    bad.loc[bad["unit"] == 2, "rul"] -= 1000
    with pytest.raises(DataError, match=r"negative remaining useful life in 1 unit\(s\): 2 from time 1"):
        read_sensor_table(bad, SPEC)
    text = fleet.astype({"rul": object})
    text.loc[3, "rul"] = "soon"
    with pytest.raises(DataError, match="RUL column holds non-numeric values such as 'soon'"):
        read_sensor_table(text, SPEC)


def test_remaining_life_rising_with_time_is_a_warning(fleet):
    bad = fleet.copy()
    bad.loc[bad["unit"] == 3, "rul"] = bad.loc[bad["unit"] == 3, "time"]
    histories = read_sensor_table(bad, SPEC)
    assert any("rises with time within 1 unit(s) (3)" in w for w in histories.warnings)


def test_negative_rul_in_a_cmapss_rul_file_is_refused(tmp_path):
    rows = [[u, t, 0.0, 0.0, 100.0, *np.linspace(1, 2, 21)] for u in (1, 2) for t in (1, 2, 3)]
    np.savetxt(tmp_path / "test_FD001.txt", np.array(rows), fmt="%g")
    (tmp_path / "RUL_FD001.txt").write_text("10\n-5\n")
    with pytest.raises(DataError, match=r"negative remaining useful life in 1 unit\(s\): 2 from time 1"):
        read_cmapss_file(tmp_path / "test_FD001.txt", rul_path=tmp_path / "RUL_FD001.txt")


def test_negative_cycles_are_refused(fleet):
    bad = fleet.copy()
    bad.loc[bad["unit"] == 4, "time"] -= 10
    with pytest.raises(DataError, match=r"negative time values in 1 unit\(s\): 4 \(time -9\)"):
        read_sensor_table(bad, SPEC)


def test_rows_out_of_time_order_are_sorted_with_a_warning(fleet):
    swapped = fleet.copy()
    first = swapped.index[swapped["unit"] == 5][:2]
    swapped.loc[first[::-1], :] = swapped.loc[first, :].to_numpy()
    histories = read_sensor_table(swapped, SPEC)
    assert any("1 unit(s) (5) are not in time order" in w for w in histories.warnings)
    unit = histories.frame[histories.frame["unit"] == 5]
    assert unit["time"].is_monotonic_increasing


def test_gaps_in_the_cycles_are_named(fleet):
    gappy = fleet[~((fleet["unit"] == 2) & fleet["time"].between(10, 12))]
    histories = read_sensor_table(gappy, SPEC)
    assert len(histories.warnings) == 1 and "unit 2: 9 -> 13" in histories.warnings[0]


def test_training_keeps_the_readers_warnings_in_the_model(tmp_path):
    table = simulate_degradation(6, seed=2, life_range=(30, 36))
    table = table[~((table["unit"] == 3) & table["time"].between(5, 6))].assign(batch=lambda f: f["time"] % 2)
    task = RemainingUsefulLife(window=8, ensemble=1, baseline_cycles=4, recent_windows=2, epoch_windows=256,
                               data={"setting_columns": ["setting_1", "setting_2"]},
                               training={"epochs": 1, "batch_size": 128, "progress": False})
    with pytest.warns(UserWarning) as caught:
        task.fit(table, tmp_path / "model")
    kept = task.state["warnings"]
    assert any("unit 3: 4 -> 7" in w for w in kept) and any("'batch'" in w for w in kept)
    assert {str(w.message) for w in caught} >= set(kept)
    loaded = RemainingUsefulLife.load(tmp_path / "model")
    assert loaded.state["warnings"] == kept

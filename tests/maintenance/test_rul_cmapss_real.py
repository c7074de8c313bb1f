"""The readers and the condition clustering on the real C-MAPSS files (skipped when absent)."""

from __future__ import annotations

import pytest

from shopfloor.core.errors import DataError
from shopfloor.maintenance.histories import HistorySpec, load_histories
from shopfloor.maintenance.windows import fit_condition_normalizer, make_windows


@pytest.mark.parametrize("subset, n_train, n_test, n_conditions", [("FD001", 100, 100, 1), ("FD002", 260, 259, 6)])
def test_cmapss_subsets(shared_dataset, subset, n_train, n_test, n_conditions):
    root = shared_dataset("cmapss")
    spec = HistorySpec(subset=subset)
    train = load_histories(root, spec, "train")
    test = load_histories(root, spec, "test")
    assert len(train.units) == n_train and len(test.units) == n_test
    fit = fit_condition_normalizer(train)
    assert len(fit.condition_counts) == n_conditions
    assert {"sensor_1", "sensor_5", "sensor_18", "sensor_19"} <= set(fit.dropped_sensors)
    last = make_windows(test, fit.features, 30, last_n=1, short_units="skip")
    if subset == "FD002":  # six FD002 test units are shorter than the standard window
        assert len(last) == n_test - 6
        with pytest.raises(DataError, match="6 unit"):
            make_windows(test, fit.features, 30, last_n=1)
    else:
        assert len(last) == n_test
    assert test.frame.groupby("unit")["rul"].last().min() >= 0

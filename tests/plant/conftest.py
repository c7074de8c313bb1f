"""Fixtures shared by the plant tests: a tiny failure-prediction model that the streams feed."""

from __future__ import annotations

import json

import pytest

from shopfloor.core.registry import load

TARGETS = ["Machine failure", "TWF", "HDF", "PWF", "OSF", "RNF"]


@pytest.fixture(scope="session")
def model(tmp_path_factory):
    """A tiny fitted failure-prediction model (input kind "table": messages are JSON rows), loaded generically,
    and 400 distinct input rows it never trained on."""
    from shopfloor.maintenance.failure_prediction import FailurePrediction
    from shopfloor.maintenance.failure_prediction.simulator import make_process_records

    root = tmp_path_factory.mktemp("milling")
    records = make_process_records(1200, seed=0)
    records.iloc[:800].to_csv(root / "train.csv", index=False)
    FailurePrediction(folds=2, training={"epochs": 2, "batch_size": 128, "progress": False, "device": "cpu"}).fit(
        root / "train.csv", out_dir=root / "milling")
    task = load(root / "milling", device="cpu")
    rows = json.loads(records.iloc[800:].drop(columns=TARGETS).to_json(orient="records"))  # 400 distinct rows
    return task, rows

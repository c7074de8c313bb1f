"""process-monitoring end to end on the built-in process: detection of injected faults, limits, parity, save/load,
predict and streaming state, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import shopfloor
from shopfloor.core.errors import DataError
from shopfloor.process.monitoring import ProcessMonitoring
from shopfloor.process.synthetic import FAULTS, simulate_process, write_process_dataset

SHOPFLOOR = str(Path(sys.executable).parent / "shopfloor")
FAST = {"window": 10, "classifier_epochs": 8, "folds": 2,
        "training": {"epochs": 30, "patience": 5, "progress": False, "device": "cpu"}}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitoring")
    paths = write_process_dataset(root / "data", seed=0, n_normal=800, n_fault=300, onset=100)
    task = ProcessMonitoring(**FAST).fit(paths["train"], root / "model")
    return task, paths, root


def test_injected_faults_are_detected_with_few_false_alarms(fitted):
    task, paths, _ = fitted
    m = task.evaluate(paths["test"])
    assert m["deep"]["false_alarm_rate"] <= 0.05 and m["pca_spe"]["false_alarm_rate"] <= 0.05
    assert set(m["deep"]["per_fault"]) == set(FAULTS)
    for fault in FAULTS:  # every fault kind is caught by the deep detector or the PCA reference; the step moves a
        # slow driver by 3 of its standard deviations, along the normal correlations: many of its samples stay inside
        # the normal range of every statistic
        best = max(m[d]["per_fault"][fault]["detection_rate"] for d in ("deep", "pca_t2", "pca_spe"))
        assert best >= (0.25 if fault == "step" else 0.5), (fault, best)
    assert m["deep"]["per_fault"]["freeze"]["detection_rate"] >= 0.5  # a frozen sensor: only windows show it
    assert m["deep"]["per_fault"]["drift"]["delay"] is not None
    cls = m["classification"]
    assert cls["classes"] == ["normal", *sorted(FAULTS)] and cls["mean_fault_accuracy"] > 0.4
    assert np.asarray(cls["confusion_matrix"]).shape == (5, 5)


def test_onnx_matches_torch_and_contributions_sum_to_the_score(fitted):
    task, paths, _ = fitted
    frame = pd.read_csv(paths["test"])
    x = frame[task.variables].to_numpy(np.float32)[:50]
    windows = np.stack([x[i:i + 10] for i in range(40)])
    onnx = task.run_windows(windows)
    with torch.no_grad():
        eager = task.torch_model(torch.as_tensor(windows))
    names = ["score", "alarm", "contributions", "t2", "spe", "t2_contributions", "spe_contributions",
             "fault_probabilities"]
    for name, value in zip(names, eager):
        assert np.allclose(onnx[name], value.numpy(), rtol=1e-4, atol=1e-5), name
    assert np.allclose(onnx["contributions"].sum(1), onnx["score"], rtol=1e-4)
    assert np.allclose(onnx["t2_contributions"].sum(1), onnx["t2"], rtol=1e-3, atol=1e-5)


def test_save_load_predict_and_streaming_state(fitted):
    task, paths, root = fitted
    loaded = shopfloor.load(root / "model", device="cpu")
    assert isinstance(loaded, ProcessMonitoring) and loaded.state["limits"] == task.state["limits"]
    recent = pd.read_csv(paths["recent"])
    a, b = task.predict([recent], explain=True)[0], loaded.predict([paths["recent"]], explain=True)[0]
    assert a["score"] == pytest.approx(b["score"], rel=1e-6) and a["alarm"] == b["alarm"] is True
    assert a["top_variables"][0]["variable"] == "x09"  # the drifting sensor carries the alarm
    assert set(a["contributions"]) == set(task.variables) and a["fault"] == "drift"
    every = loaded.predict([recent], points="all")
    assert len(every) == len(recent) and every[-1]["score"] == pytest.approx(a["score"], rel=1e-6)
    # point by point: the monitor keeps only the window, and says what predict says on the history so far
    monitor = loaded.monitor()
    for i in range(14):
        row = monitor.update(recent.iloc[i][task.variables].to_dict(), run="line")
        want = loaded.predict([recent.iloc[: i + 1]])[0]
        assert row["score"] == pytest.approx(want["score"], rel=1e-5) and row["padded"] == want["padded"]
    assert len(monitor._runs["line"]) == 10 and row["time"] == 14 and row["padded"] is False


def test_bad_input_is_refused_clearly(fitted, tmp_path):
    task, paths, _ = fitted
    unlabelled = pd.read_csv(paths["test"]).drop(columns=["fault"])
    with pytest.raises(DataError, match="has no 'fault' column: evaluate needs each sample's label"):
        task.evaluate(unlabelled)
    with pytest.raises(DataError, match=r"missing column\(s\) 'x04'"):
        task.predict([pd.read_csv(paths["recent"]).drop(columns=["x04"])])
    rows = task.predict([pd.read_csv(paths["recent"]).drop(columns=["x04"]), paths["recent"]], skip_bad=True)
    assert rows[0]["skipped"] and "x04" in rows[0]["error"] and "score" in rows[1]
    with pytest.raises(DataError, match=r"normal samples .* expected at least"):
        ProcessMonitoring(**FAST).fit(simulate_process(60, 0))
    constant = simulate_process(400, 0).assign(x05=3.0)
    with pytest.warns(UserWarning, match=r"x05 do not vary in normal operation"):
        small = ProcessMonitoring(**{**FAST, "training": {**FAST["training"], "epochs": 2}}).fit(constant)
    assert "x05" not in small.variables and small.classes == []


def test_cli_train_evaluate_predict(tmp_path):
    paths = write_process_dataset(tmp_path / "data", seed=1, n_normal=400, n_fault=150, onset=50)
    model = tmp_path / "model"
    train = subprocess.run([SHOPFLOOR, "--quiet", "train", "process-monitoring", "--data", str(paths["train"]),
                            "--out", str(model), "--window", "8", "--epochs", "3", "--classify", "false",
                            "--folds", "2", "--device", "cpu"], capture_output=True, text=True)
    assert train.returncode == 0, train.stderr
    out = tmp_path / "metrics.json"
    evaluate = subprocess.run([SHOPFLOOR, "--quiet", "evaluate", str(model), "--data", str(paths["test"]),
                               "--json", str(out), "--report", str(tmp_path / "report")], capture_output=True,
                              text=True)
    assert evaluate.returncode == 0, evaluate.stderr
    metrics = json.loads(out.read_text())
    assert set(metrics["deep"]["per_fault"]) == set(FAULTS) and (tmp_path / "report" / "report.html").is_file()
    assert any(p.name.startswith("contributions_") for p in (tmp_path / "report").glob("*.png"))
    predict = subprocess.run([SHOPFLOOR, "--quiet", "predict", str(model), str(paths["recent"])],
                             capture_output=True, text=True)
    assert predict.returncode == 0, predict.stderr
    rows = json.loads(predict.stdout)
    assert len(rows) == 1 and rows[0]["run"] == "drift_test" and "score" in rows[0]

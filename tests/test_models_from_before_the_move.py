"""Model directories saved by the code before the per-application layout still load and predict the same.

The models are written in the test by that code itself (``git archive`` of the last commit before the move, run
with ``compat/write_models_before_the_move.py``), never committed as binaries."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import shopfloor.tasks as tasks

ROOT = Path(__file__).resolve().parents[1]
BEFORE_THE_MOVE = "bc74091303fa482b9e9bd89e3580b3ad1214278b"  # main just before the per-application layout
TASKS = ["defect-classification", "anomaly-detection", "rul", "fault-diagnosis", "failure-prediction"]


def _git(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, **kwargs)


@pytest.fixture(scope="module")
def saved_before(tmp_path_factory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and the project's history to rebuild the code from before the move")
    if _git("cat-file", "-e", f"{BEFORE_THE_MOVE}^{{commit}}").returncode != 0:
        pytest.skip(f"commit {BEFORE_THE_MOVE[:7]} is not in this clone (shallow?): `git fetch --unshallow`")
    root = tmp_path_factory.mktemp("before_the_move")
    archive = _git("archive", BEFORE_THE_MOVE, "src", check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    out = root / "models"
    run = subprocess.run([sys.executable, str(ROOT / "tests/compat/write_models_before_the_move.py"),
                          str(root / "src"), str(ROOT / "src"), str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def _leaves(value, prefix=""):
    """Flatten nested predictions to (key path, value) pairs."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _assert_same(now, before):
    now, before = dict(_leaves(now)), dict(_leaves(before))
    assert now.keys() == before.keys()
    for key, old in before.items():
        new = now[key]
        if isinstance(old, float) and not isinstance(new, bool):
            assert math.isclose(new, old, rel_tol=1e-5, abs_tol=1e-6), (key, new, old)
        else:
            assert new == old or str(new) == str(old), (key, new, old)


@pytest.mark.slow
@pytest.mark.parametrize("name", TASKS)
def test_model_saved_before_the_move_loads_and_predicts_the_same(saved_before, name):
    record = json.loads((saved_before / name / "predictions.json").read_text())
    task = tasks.load(saved_before / name / "model", device="cpu")
    assert task.name == name
    _assert_same(json.loads(json.dumps(task.predict(record["inputs"]), default=str)), record["predictions"])


@pytest.mark.slow
def test_cli_reads_a_model_saved_before_the_move(saved_before):
    model = saved_before / "rul" / "model"
    run = subprocess.run([str(Path(sys.executable).parent / "shopfloor"), "info", str(model)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "all file hashes verified" in run.stderr


def test_earlier_import_paths_still_work():
    from shopfloor.inspection.anomaly import AnomalyDetection
    from shopfloor.inspection.classification import DefectClassification
    from shopfloor.maintenance.failure_prediction import FailurePrediction
    from shopfloor.maintenance.fault_diagnosis import FaultDiagnosis
    from shopfloor.maintenance.rul import RemainingUsefulLife
    from shopfloor.tasks.anomaly_detection import AnomalyDetection as OldAnomalyDetection
    from shopfloor.tasks.base import Task
    from shopfloor.tasks.defect_classification import DefectClassification as OldDefectClassification
    from shopfloor.tasks.failure_prediction import FailurePrediction as OldFailurePrediction
    from shopfloor.tasks.fault_diagnosis import FaultDiagnosis as OldFaultDiagnosis
    from shopfloor.tasks.rul import RemainingUsefulLife as OldRemainingUsefulLife

    assert OldDefectClassification is DefectClassification and OldAnomalyDetection is AnomalyDetection
    assert OldRemainingUsefulLife is RemainingUsefulLife and OldFaultDiagnosis is FaultDiagnosis
    assert OldFailurePrediction is FailurePrediction and issubclass(RemainingUsefulLife, Task)
    assert {tasks.get_task(name).__name__ for name in TASKS} == {
        "DefectClassification", "AnomalyDetection", "RemainingUsefulLife", "FaultDiagnosis", "FailurePrediction"}

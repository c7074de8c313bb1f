"""What `import shopfloor` offers a scikit-learn user: version, load, task classes, a documented error hierarchy."""

import pytest

import shopfloor

TASK_CLASSES = ["DefectClassification", "AnomalyDetection", "RemainingUsefulLife", "FaultDiagnosis",
                "FailurePrediction", "ProcessMonitoring", "MachineSound"]


def test_version_load_and_task_classes():
    from importlib.metadata import version

    assert shopfloor.__version__ == version("shopfloor")
    assert shopfloor.load is shopfloor.tasks.load
    for name in TASK_CLASSES:
        cls = getattr(shopfloor, name)
        assert issubclass(cls, shopfloor.Task) and shopfloor.get_task(cls.name) is cls
        assert name in dir(shopfloor)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchTask'"):
        shopfloor.NoSuchTask  # noqa: B018


def test_error_hierarchy():
    assert issubclass(shopfloor.DataError, ValueError) and issubclass(shopfloor.ConfigError, ValueError)
    for error in (shopfloor.DataError, shopfloor.ConfigError, shopfloor.ArtifactError, shopfloor.NotFittedError):
        assert issubclass(error, shopfloor.ShopfloorError)
    assert issubclass(shopfloor.NotFittedError, AttributeError)


@pytest.mark.parametrize("name", TASK_CLASSES)
def test_not_fitted_is_said_before_any_data_is_read(name, tmp_path):
    task = getattr(shopfloor, name)()
    for call in (lambda: task.predict([tmp_path / "missing.csv"]), lambda: task.evaluate(tmp_path / "missing"),
                 lambda: task.save(tmp_path / "model")):
        with pytest.raises(shopfloor.NotFittedError, match=r"call fit\(\) or shopfloor.load\(\)"):
            call()

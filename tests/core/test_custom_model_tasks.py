"""Your own architecture inside the tasks: a YAML layer list or a class path trains with the task's Lightning glue,
exports through the same ONNX path (torch and ONNX Runtime agree), saves and loads; the seed's small CNN on 28x28
gray images (10 classes) trains and evaluates from the CLI; loading a class-path model without its module is a
clear error."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.core.custom.layers import LayerStack
from shopfloor.core.errors import ConfigError
from shopfloor.core.registry import load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "custom_models"
FAST = {"epochs": 1, "batch_size": 32, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """A tiny 28x28 gray 10-class folder set: class k has a bright bar at row 2k on noise."""
    root = tmp_path_factory.mktemp("digits")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for k in range(10):
            folder = root / split / f"class_{k}"
            folder.mkdir(parents=True)
            for i in range(n):
                img = (rng.random((28, 28)) * 60).astype(np.uint8)
                img[2 + 2 * k: 5 + 2 * k, 4:24] = 255
                Image.fromarray(img, "L").save(folder / f"{i}.png")
    return root


@pytest.fixture
def examples_importable(monkeypatch):
    """``examples.custom_models.my_nets`` importable, as with PYTHONPATH=. in the project root."""
    monkeypatch.syspath_prepend(str(ROOT))
    yield
    for name in [n for n in sys.modules if n == "examples" or n.startswith("examples.")]:
        sys.modules.pop(name)


def test_seed_small_cnn_yaml_trains_and_evaluates_from_the_cli(digits, tmp_path):
    runner = CliRunner()
    out = tmp_path / "model"
    result = runner.invoke(app, ["train", "defect-classification", "--data", str(digits / "train"), "--out",
                                 str(out), "--model", str(EXAMPLES / "small_cnn_28px.yaml"), "--image-size", "28",
                                 "--epochs", "2", "--batch-size", "16", "--device", "cpu", "--progress", "false"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(out), "--data", str(digits / "test"),
                                 "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n_test"] == 20 and len(metrics["per_class"]) == 10
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["model"] == "layers"  # the layers live in the artifact: no file needed to load
    assert manifest["config"]["model_options"]["layers"][0] == "grayscale"

    task = load(out, device="cpu")
    net = task.require_model().net
    assert isinstance(net, LayerStack) and net[1].in_channels == 1  # grayscale, then conv 1 -> 32
    x = torch.rand(4, 3, 28, 28) * 255
    with torch.no_grad():
        eager = task.export_module().eval()(x)[0].numpy()
    np.testing.assert_allclose(task.runtime.run(image=x.numpy())["probabilities"], eager, atol=1e-5)


def test_bad_layer_list_from_the_cli_is_one_error_line(digits, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers:\n  - conv: 8\n  - dense: outputs\n")
    result = CliRunner().invoke(app, ["train", "defect-classification", "--data", str(digits / "train"), "--out",
                                      str(tmp_path / "m"), "--model", str(bad), "--image-size", "28"])
    assert result.exit_code == 2
    assert "layer 2 (dense) gets (N, 8, 26, 26)" in result.output and "Traceback" not in result.output


def test_class_path_model_saves_and_needs_its_module_to_load(digits, tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "cm_saved_nets.py").write_text(textwrap.dedent("""
        from torch import nn

        class Small(nn.Module):
            def __init__(self, num_outputs, width=4):
                super().__init__()
                self.conv = nn.Conv2d(3, width, 3)
                self.fc = nn.Linear(width, num_outputs)
            def forward(self, x):
                return self.fc(self.conv(x).relu().mean(dim=(2, 3)))
        """))
    sys.path.insert(0, str(package))
    try:
        result = CliRunner().invoke(app, [
            "train", "defect-classification", "--data", str(digits / "train"), "--out", str(tmp_path / "m"),
            "--model", "cm_saved_nets:Small", "--model-options", "{width: 6}", "--image-size", "28",
            "--epochs", "1", "--device", "cpu", "--progress", "false"])
        assert result.exit_code == 0, result.output
        task = load(tmp_path / "m", device="cpu")
        assert task.require_model().net.conv.out_channels == 6
        x = torch.rand(3, 3, 28, 28) * 255
        with torch.no_grad():
            eager = task.export_module().eval()(x)[0].numpy()
        np.testing.assert_allclose(task.runtime.run(image=x.numpy())["probabilities"], eager, atol=1e-5)
    finally:
        sys.path.remove(str(package))
        sys.modules.pop("cm_saved_nets", None)
    with pytest.raises(ConfigError, match="cannot import the model class cm_saved_nets:Small: no module named "
                                          "'cm_saved_nets'.*PYTHONPATH"):
        load(tmp_path / "m", device="cpu")


def test_fault_diagnosis_with_a_recurrent_layer_list(tmp_path):
    from shopfloor.maintenance.fault_diagnosis.simulator import write_bearing_dataset
    from shopfloor.maintenance.fault_diagnosis.task import FaultDiagnosis

    data = write_bearing_dataset(tmp_path / "data", recordings_per_class=1, duration_s=1.5, seed=0)
    task = FaultDiagnosis(model=str(EXAMPLES / "sensor_lstm.yaml"), sampling_rate=12_000, segment_length=512,
                          frame=32, train_stride=128, augment=False, training=FAST)
    task.fit(data, out_dir=tmp_path / "model")
    x = torch.randn(5, 1, 512)
    with torch.no_grad():
        eager = task.export_module().eval()(x).numpy()
    np.testing.assert_allclose(task.runtime.run(signal=x.numpy())["probabilities"], eager, atol=1e-5)
    loaded = load(tmp_path / "model", device="cpu")
    np.testing.assert_allclose(loaded.runtime.run(signal=x.numpy())["probabilities"], eager, atol=1e-5)


def test_rul_members_from_a_class_path(tmp_path, examples_importable):
    from shopfloor.maintenance.rul.simulator import write_degradation_dataset
    from shopfloor.maintenance.rul.task import RemainingUsefulLife

    paths = write_degradation_dataset(tmp_path / "data", n_train=8, n_test=3, seed=3, life_range=(40, 60))
    task = RemainingUsefulLife(model="examples.custom_models.my_nets:TemporalConvNet", model_options={"width": 8},
                               window=12, ensemble=2, explain_units=0,
                               data={"setting_columns": ["setting_1", "setting_2"]}, training=FAST)
    task.fit(paths["train"], tmp_path / "model")
    assert type(task.require_model().members[0]).__name__ == "TemporalConvNet"
    x = torch.randn(3, *task.onnx_signature().example_inputs[0].shape[1:])
    with torch.no_grad():
        eager = task.export_module().eval()(x)
    got = task.runtime.run(window=x.numpy())
    for name, value in zip(got, eager if isinstance(eager, tuple) else (eager,)):
        np.testing.assert_allclose(got[name], value.numpy(), atol=1e-4, rtol=1e-5)
    assert set(task.evaluate(paths["test"])) >= {"rmse", "mae"}


def test_failure_prediction_with_a_user_network(tmp_path, examples_importable):
    from shopfloor.maintenance.failure_prediction.simulator import make_process_records
    from shopfloor.maintenance.failure_prediction.task import FailurePrediction

    make_process_records(600, seed=0).to_csv(tmp_path / "train.csv", index=False)
    task = FailurePrediction(model="examples.custom_models.my_nets:TabularResNet", model_options={"hidden": 16},
                             folds=1, training=FAST)
    task.fit(tmp_path / "train.csv", out_dir=tmp_path / "model")
    assert type(task.require_model().members[0].mlp).__name__ == "TabularResNet"
    loaded = load(tmp_path / "model", device="cpu")
    rows = __import__("pandas").read_csv(tmp_path / "train.csv").head(20)
    numeric, categorical = loaded._inputs(rows)
    with torch.no_grad():
        eager = loaded.require_model().eval()(torch.from_numpy(numeric), torch.from_numpy(categorical))
    got = loaded.runtime.run(numeric=numeric, categorical=categorical)
    np.testing.assert_allclose(got["failure_probability"], eager[0].numpy(), atol=1e-5)

"""The CLI end to end on small synthetic data, plus its error handling and a 2-process DDP fit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.inspection.synthetic import make_defect_classes

runner = CliRunner()
SHOPFLOOR = str(Path(sys.executable).parent / "shopfloor")


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    make_defect_classes(root / "train", n_per_class=10, size=64, seed=0)
    make_defect_classes(root / "test", n_per_class=4, size=64, seed=1)
    cfg = root / "config.yaml"
    cfg.write_text("feature_views: 1\naugment:\n  rotation_range: 5\ntraining:\n  batch_size: 16\n  progress: false\n")
    result = invoke("train", "defect-classification", "--data", root / "train", "--out", root / "model",
                    "--config", cfg, "--epochs", 2, "--image-size", 64, "--seed", 1, "--device", "cpu")
    assert result.exit_code == 0, result.output
    return root


def test_train_writes_model_and_config_is_applied(workspace):
    manifest = json.loads((workspace / "model" / "manifest.json").read_text())
    assert manifest["config"]["augment"]["rotation_range"] == 5
    assert manifest["config"]["training"]["epochs"] == 2 and manifest["config"]["training"]["seed"] == 1


def test_evaluate_json_and_report(workspace):
    out = workspace / "eval.json"
    result = invoke("evaluate", workspace / "model", "--data", workspace / "test", "--json", out,
                    "--report", workspace / "report")
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    for key in ("accuracy", "macro_f1", "macro_precision", "macro_recall", "per_class", "n_test"):
        assert key in metrics
    assert metrics["n_test"] == 16
    html = (workspace / "report" / "report.html").read_text()
    assert "confusion_matrix.png" in html and "roc_curves.png" in html


def test_predict_with_explain(workspace):
    out = workspace / "pred.json"
    result = invoke("predict", workspace / "model", workspace / "test" / "crack", "--json", out, "--explain",
                    "--out", workspace / "expl")
    assert result.exit_code == 0, result.output
    preds = json.loads(out.read_text())
    assert len(preds) == 4 and all(Path(p["explanation"]).is_file() for p in preds)


def test_export_and_info(workspace):
    result = invoke("export", workspace / "model", "--format", "onnx")
    assert result.exit_code == 0, result.output
    assert (workspace / "model" / "export" / "model.onnx").is_file()
    result = invoke("info", workspace / "model")
    assert result.exit_code == 0 and "defect-classification" in result.output and "verified" in result.output


def test_unknown_export_format(workspace):
    result = invoke("export", workspace / "model", "--format", "tflite")
    assert result.exit_code == 2 and "unknown export format" in result.output


@pytest.mark.parametrize("args, message", [
    (["train", "defect-classification", "--data", "/nonexistent", "--out", "x"], "does not exist"),
    (["train", "no-such-task", "--data", ".", "--out", "x"], "unknown task"),
    (["train", "defect-classification", "--data", ".", "--out", "x", "--bogus-knob", "1"], "unknown option"),
    (["train", "defect-classification", "--data", ".", "--out", "x", "--image-size", "100"], "multiple of 32"),
    (["evaluate", "/nonexistent", "--data", "."], "does not exist"),
    (["info", "."], "manifest.json"),
])
def test_bad_input_gives_clear_error(args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_tampered_model_is_refused_by_cli(workspace, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(workspace / "model", copy)
    with open(copy / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    result = invoke("predict", copy, workspace / "test" / "crack")
    assert result.exit_code == 2 and "SHA-256" in result.output


def test_ddp_two_processes_on_cpu(workspace, tmp_path):
    """A real 2-process DDP fit (gloo) through the console script."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [SHOPFLOOR, "train", "defect-classification", "--data", str(workspace / "train"), "--out",
           str(tmp_path / "ddp"), "--model", "simple-cnn", "--image-size", "32", "--epochs", "2",
           "--device", "cpu", "--devices", "2", "--strategy", "ddp", "--progress", "false", "--verbose"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Starting with 2 processes" in proc.stdout + proc.stderr  # Lightning's own line: --verbose shows it
    manifest = json.loads((tmp_path / "ddp" / "manifest.json").read_text())
    assert manifest["metrics"]["epochs_run"] == 2


LIBRARY_CHATTER = ("GPU available", "TPU available", "litlogger", "Tip:", "Loading `train_dataloader`",
                   "deprecated", "DeprecationWarning", "LeafSpec")


def test_training_output_is_quiet_unless_verbose(workspace, tmp_path):
    """By default: the task's summary and no library banners, tips or deprecation warnings."""
    cmd = [SHOPFLOOR, "train", "defect-classification", "--data", str(workspace / "train"), "--out",
           str(tmp_path / "quiet"), "--model", "simple-cnn", "--image-size", "32", "--epochs", "1",
           "--device", "cpu", "--progress", "false"]
    env = {k: v for k, v in os.environ.items() if k != "SHOPFLOOR_VERBOSE"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "validation" in output and "model written to" in output
    assert not [line for line in output.splitlines() if any(c in line for c in LIBRARY_CHATTER)], output

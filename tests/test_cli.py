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


def test_export_and_info(workspace, tmp_path, monkeypatch):
    before = sorted(p.name for p in (workspace / "model").rglob("*"))
    result = invoke("export", workspace / "model", "--format", "onnx", "--output", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.onnx").is_file()
    monkeypatch.chdir(tmp_path)
    result = invoke("export", workspace / "model")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model.onnx").is_file()  # default: ./<model dir name>.onnx, never inside the model dir
    assert sorted(p.name for p in (workspace / "model").rglob("*")) == before
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


def run_cli(*args, **kwargs) -> subprocess.CompletedProcess:
    """The console script in a subprocess: stdout and stderr kept apart, as a shell pipeline sees them."""
    return subprocess.run([SHOPFLOOR, *map(str, args)], capture_output=True, text=True, timeout=600, **kwargs)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_predict_stdout_is_only_results(workspace, tmp_path, fmt):
    import csv
    import io

    before = sorted(p.name for p in (workspace / "model").rglob("*"))
    proc = run_cli("predict", workspace / "model", workspace / "test" / "crack", "--format", fmt, "--device", "cpu",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    if fmt == "json":
        rows = json.loads(proc.stdout)
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in proc.stdout.splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 4 and all(r["label"] for r in rows)
    assert "predictions" in proc.stderr  # the table and summary go to stderr
    assert sorted(p.name for p in (workspace / "model").rglob("*")) == before  # nothing written into the model
    assert not list(tmp_path.iterdir())  # nor anywhere else without --out


def test_quiet_predict_prints_results_and_nothing_else(workspace):
    proc = run_cli("--quiet", "predict", workspace / "model", workspace / "test" / "crack", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 4
    assert proc.stderr.strip() == ""


def test_version_info_json_and_task_help(workspace):
    from shopfloor import __version__

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"shopfloor {__version__}"
    proc = run_cli("info", workspace / "model", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["task"] == "defect-classification" and info["verified"] and "weights.safetensors" in info["files"]
    proc = run_cli("train", "rul", "--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--window", "--rul-cap", "--ensemble", "--epochs", "--patience"):
        assert option in proc.stdout
    assert "cnn1d|lstm|gru|transformer" in proc.stdout  # types are shown, with choices
    assert "[training]" in proc.stdout  # nested groups are labelled, not eaten as rich markup


@pytest.mark.parametrize("args, message", [
    (["train", "defect-classification", "--data", ".", "--out", "x", "--devices", "two"], "--devices takes"),
    (["evaluate", "MODEL", "--data", "TEST", "--json", "{tmp}"], "is a folder"),
    (["train", "defect-classification", "--data", "TRAIN", "--out", "{file}"], "is a file"),
    (["predict", "MODEL", "TEST", "--json", "{file}/x.json"], "is a file, not a folder"),
    (["predict", "MODEL", "TEST", "--format", "xml"], "unknown --format"),
    (["train", "defect-classification", "--out", "x"], "train needs --data"),
])
def test_output_paths_and_options_are_checked_before_work(workspace, tmp_path, args, message):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    subst = {"MODEL": str(workspace / "model"), "TEST": str(workspace / "test"), "TRAIN": str(workspace / "train")}
    args = [subst.get(a, a).format(tmp=tmp_path, file=blocker) for a in args]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_error_messages_are_printed_as_written(tmp_path):
    odd = tmp_path / "[left] [bold]cam"
    result = invoke("info", odd)
    assert result.exit_code == 2
    assert "[left] [bold]cam" in result.output


def test_internal_errors_are_one_message_not_a_traceback(tmp_path):
    """A bug (not a user error) still ends in a message from the console script; --verbose shows the traceback."""
    bad = tmp_path / "config.yaml"
    bad.write_text("training: {epochs: 1}\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    (tmp_path / "sitecustomize.py").write_text(
        "import shopfloor.core.config as c\n"
        "def boom(*a, **k):\n    raise RuntimeError('simulated bug')\n"
        "c.load_yaml = boom\n")
    proc = subprocess.run([SHOPFLOOR, "train", "rul", "--data", str(tmp_path), "--out", str(tmp_path / "m"),
                           "--config", str(bad)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "internal error: RuntimeError: simulated bug" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([SHOPFLOOR, "--verbose", "train", "rul", "--data", str(tmp_path), "--out",
                           str(tmp_path / "m"), "--config", str(bad)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert "Traceback" in proc.stderr


def test_sign_and_verify_from_the_command_line(workspace, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(workspace / "model", model)
    key = tmp_path / "model.key"
    key.write_bytes(os.urandom(32))
    assert invoke("sign", model, "--key-file", key).exit_code == 0
    result = invoke("info", model, "--key-file", key)
    assert result.exit_code == 0 and "verified" in result.output
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    result = invoke("predict", model, workspace / "test" / "crack", "--key-file", other)
    assert result.exit_code == 2 and "signature" in result.output


def test_quiet_does_not_outlive_its_command_line(workspace):
    """A --quiet invocation in the same process (a script, a notebook, a test run) leaves the next one talkative."""
    assert "verified" not in invoke("--quiet", "info", workspace / "model").output
    assert "verified" in invoke("info", workspace / "model").output

"""machine-sound end to end on tiny synthetic machines: layouts, fit / evaluate / predict / save / load, the
exported graph against torch, the score timeline of a long recording, CLI and server (WAV/FLAC upload)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import soundfile
import torch
from typer.testing import CliRunner

import shopfloor
from shopfloor.acoustics.machine_sound.data import describe, list_clips, parse_attributes
from shopfloor.acoustics.machine_sound.metrics import detection_metrics
from shopfloor.acoustics.machine_sound.synthetic import machine_recording, machine_sound, write_machine_dataset
from shopfloor.acoustics.machine_sound.task import MachineSound
from shopfloor.core.errors import DataError, NotFittedError

QUIET = {"progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_machine_dataset(tmp_path_factory.mktemp("machines") / "data", n_train=16, n_test_normal=6,
                                 n_test_fault=3, seconds=1.0, n_target=2)


@pytest.fixture(scope="module")
def fitted(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = MachineSound(training=QUIET).fit(dataset, out_dir=out)
    return task, out


def test_layouts_are_parsed(tmp_path):
    info = describe(tmp_path / "section_01_target_train_normal_0007_pat_02_vel_6.wav", tmp_path)
    assert (info.label, info.section, info.domain) == ("normal", "01", "target")
    assert info.attributes == {"pat": "02", "vel": "6"} and parse_attributes("a_1_b") == {"a": "1", "extra": "b"}
    (tmp_path / "anomaly").mkdir()
    (tmp_path / "normal").mkdir()
    (tmp_path / "empty").mkdir()
    soundfile.write(tmp_path / "anomaly" / "x.wav", machine_sound(0.5), 16000)
    soundfile.write(tmp_path / "normal" / "y.flac", machine_sound(0.5), 16000)
    _, infos = list_clips(tmp_path, "test")
    assert sorted(i.label for i in infos) == ["anomaly", "normal"]
    with pytest.raises(DataError, match="holds no .wav/.flac"):
        list_clips(tmp_path / "empty", "train")
    with pytest.raises(DataError, match="does not exist"):
        list_clips(tmp_path / "missing", "train")


def test_metrics_per_domain_and_harmonic_mean():
    anomalous = np.array([0, 0, 0, 0, 1, 1, 1, 1], bool)
    scores = np.array([0.1, 0.2, 0.9, 0.3, 0.8, 0.7, 0.95, 0.6])
    domains = ["source", "source", "target", "target", "source", "target", "source", "target"]
    m = detection_metrics(anomalous, scores, domains)
    assert m["auc_source"] == 1.0 and m["auc_target"] == 0.625  # target normals vs every anomaly: (1 + 4) / 8 pairs
    assert m["false_alarm_rate"] == 0.25 and m["detection_rate"] == 1.0
    assert min(m["auc_source"], m["auc_target"], m["pauc"]) <= m["hmean"] <= 1.0


def test_fit_evaluate_predict_and_reload(fitted, dataset, tmp_path):
    task, out = fitted
    assert task.state["n_train_clips"] == 16 and task.state["domains"] == ["source", "target"]
    metrics = task.evaluate(dataset, report_dir=tmp_path / "report")
    assert metrics["auc"] >= 0.9 and metrics["n_anomaly"] == 9 and metrics["n_normal"] == 6
    assert (tmp_path / "report" / "report.html").is_file() and (tmp_path / "report" / "worst_clips.png").is_file()
    test_files = sorted((dataset / "test").glob("*.wav"))
    rows = task.predict(test_files)
    loaded = shopfloor.load(out)
    again = loaded.predict(test_files)
    assert [r["score"] for r in rows] == pytest.approx([r["score"] for r in again], abs=1e-6)
    assert {r["label"] for r in rows} <= {"normal", "anomaly"} and all(0 <= r["score"] <= 1 for r in rows)


def test_exported_graph_agrees_with_torch(fitted):
    task, _ = fitted
    x = np.stack([machine_sound(1.0, seed=s, fault=f) for s, f in ((50, None), (51, "click"))])
    onnx_out = task.score_windows(x)
    with torch.no_grad():
        score, raw, cells = task.require_model()(torch.from_numpy(x))
    np.testing.assert_allclose(onnx_out["raw_score"], raw.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(onnx_out["score"], score.numpy(), atol=1e-4)
    assert onnx_out["anomaly_map"].shape == cells.shape == (2, 128, 32)
    assert onnx_out["score"][1] > 0.5 > onnx_out["score"][0]


def test_long_recording_gives_a_timeline_that_finds_the_fault(fitted):
    task, _ = fitted
    long = machine_recording(7.0, "rattle", 3.0, 4.0, seed=71)
    row = task.predict([long])[0]
    timeline = row["timeline"]
    assert len(timeline) == 13 and timeline[-1]["end_s"] == pytest.approx(7.0)
    assert 2.0 <= row["worst_window_start_s"] <= 3.5 and row["label"] == "anomaly"
    quiet = [w["score"] for w in timeline if w["end_s"] <= 3.0 or w["start_s"] >= 4.0]
    assert max(quiet) < 0.5


def test_bad_data_is_refused_with_the_reason(fitted, dataset, tmp_path):
    task, _ = fitted
    with pytest.raises(DataError, match="used in training"):
        task.evaluate(_relabelled_train(dataset, tmp_path))
    with pytest.raises(DataError, match="learns from normal clips only"):
        MachineSound(training=QUIET).fit(dataset / "test")
    with pytest.raises(DataError, match="shorter than this model's window"):
        task.predict([machine_sound(0.5)])
    bad = tmp_path / "bad"
    bad.mkdir()
    soundfile.write(bad / "silent.wav", np.zeros(16000, np.float32), 16000)
    (bad / "broken.wav").write_bytes(b"RIFF????")
    soundfile.write(bad / "fine.wav", machine_sound(1.0), 16000)
    with pytest.raises(DataError, match="2 of 3 input") as info:
        MachineSound(training=QUIET).fit(bad)
    assert "silent.wav" in str(info.value) and "broken.wav" in str(info.value)
    single = tmp_path / "single"
    single.mkdir()
    soundfile.write(single / "long.wav", machine_sound(6.0, seed=3), 16000)
    with pytest.raises(DataError, match="--window-seconds"):
        MachineSound(training=QUIET).fit(single)
    with pytest.warns(UserWarning, match="one training recording"):
        one = MachineSound(window_seconds=1.0, training=QUIET).fit(single)
    assert one.state["n_bank"] == 6
    with pytest.raises(NotFittedError):
        MachineSound().predict([machine_sound(1.0)])


def _relabelled_train(dataset, tmp_path):
    """The training clips put back as an evaluation set (normal) plus one anomaly."""
    root = tmp_path / "leak"
    (root / "normal").mkdir(parents=True)
    (root / "anomaly").mkdir()
    for path in sorted((dataset / "train").glob("*.wav"))[:3]:
        (root / "normal" / path.name.replace("section_00", "clip")).write_bytes(path.read_bytes())
    soundfile.write(root / "anomaly" / "a.wav", machine_sound(1.0, seed=5, fault="click"), 16000)
    return root


def test_resampled_input_and_the_baseline_model(dataset, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ae = MachineSound(model="dcase-ae", calibration_folds=2, training={**QUIET, "epochs": 2}).fit(dataset)
    metrics = ae.evaluate(dataset)
    assert 0 <= metrics["auc"] <= 1 and metrics["model"] == "dcase-ae"
    from scipy.signal import resample_poly

    clip = machine_sound(1.0, seed=80)
    soundfile.write(tmp_path / "at_48k.wav", resample_poly(clip, 3, 1).astype(np.float32), 48000)
    soundfile.write(tmp_path / "at_16k.wav", clip, 16000)
    a, b = ae.predict([tmp_path / "at_48k.wav", tmp_path / "at_16k.wav"])
    assert a["score"] == pytest.approx(b["score"], abs=0.05)


def test_cli_train_evaluate_predict(dataset, tmp_path):
    from shopfloor.cli import app

    runner = CliRunner()
    model = tmp_path / "cli_model"
    result = runner.invoke(app, ["train", "machine-sound", "--data", str(dataset), "--out", str(model), "--quiet",
                                 "--statistics", "mean,max", "--channel", "0"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(model), "--data", str(dataset), "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert '"auc"' in (tmp_path / "m.json").read_text()
    result = runner.invoke(app, ["predict", str(model), str(dataset / "test"), "--json", str(tmp_path / "p.json"),
                                 "--explain", "--out", str(tmp_path / "maps")])
    assert result.exit_code == 0, result.output
    assert '"timeline"' in (tmp_path / "p.json").read_text()
    assert len(list((tmp_path / "maps").glob("*.png"))) == len(list((dataset / "test").glob("*.wav")))
    result = runner.invoke(app, ["train", "machine-sound", "--data", str(tmp_path / "nothing"), "--out",
                                 str(tmp_path / "m2")])
    assert result.exit_code != 0 and "does not exist" in result.output


def test_server_takes_wav_and_flac_uploads(fitted, tmp_path):
    from fastapi.testclient import TestClient

    from shopfloor.plant.server import ServerSettings, create_app

    _, out = fitted
    app = create_app(ServerSettings(model_dirs=[out], model_names=["machine-sound"], db=f"sqlite:///{tmp_path / 'r.db'}", device="cpu"))
    clip = machine_sound(2.0, seed=90, fault="click")
    with TestClient(app) as client:
        for fmt, name in (("WAV", "clip.wav"), ("FLAC", None)):
            buffer = io.BytesIO()
            soundfile.write(buffer, clip, 16000, format=fmt)
            files = {"file": (name, buffer.getvalue())} if name else None
            r = (client.post("/v1/models/machine-sound/predict", files=files) if name else
                 client.post("/v1/models/machine-sound/predict", content=buffer.getvalue()))
            assert r.status_code == 200, r.text
            row = r.json()["predictions"][0]
            assert row["label"] == "anomaly" and len(row["timeline"]) == 3
        short = client.post("/v1/models/machine-sound/predict", json=[0.1, -0.1] * 100)
        assert short.status_code == 422 and "shorter than this model's window" in short.json()["detail"]

"""The anomaly-detection task end to end on small synthetic data: fit, evaluate, predict, save/load, rules."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shopfloor.core.errors import ConfigError, DataError
from shopfloor.core.registry import get_task, load
from shopfloor.inspection.anomaly.task import AnomalyDetection
from shopfloor.inspection.synthetic import make_anomaly_dataset

# the fixed pipeline (auto false): these tests pin its held-out split and rules; test_anomaly_auto covers auto
SMALL = {"image_size": 64, "auto": False, "training": {"progress": False, "batch_size": 8}}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_anomaly_dataset(tmp_path_factory.mktemp("ad"), n_train=16, n_test_good=4, n_test_per_defect=3,
                                size=64, seed=1)


@pytest.fixture(scope="module")
def fitted(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    task = AnomalyDetection(**SMALL).fit(data_root, out_dir=out)
    return task, out


def test_registered():
    assert get_task("anomaly-detection") is AnomalyDetection


def test_fit_records_rule_and_state(fitted):
    task, out = fitted
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"]["threshold_rule"] == "quantile"  # good images only
    cal = manifest["state"]["calibration"]
    assert cal["false_alarm_rate_target"] == 0.01 and cal["n_heldout_good"] == 3
    assert cal["image_rule"].startswith("normal fit")  # 3 held-out images cannot resolve a 1 % rate
    assert manifest["state"]["bank_size"] >= 1 and manifest["metrics"]["n_train"] == 13


def test_evaluate_keys_and_quality(fitted, data_root, tmp_path):
    task, _ = fitted
    result = task.evaluate(data_root, report_dir=tmp_path / "report")
    for key in ("image_auroc", "image_ap", "image_f1", "pixel_auroc", "aupro", "n_test", "per_type"):
        assert key in result
    assert result["n_test"] == 4 + 3 * 3
    assert set(result["per_type"]) == {"crack", "scratch", "spot"}
    assert result["image_auroc"] > 0.7 and result["pixel_auroc"] > 0.8
    assert result["false_alarm_rate"] < 0.5  # a good-only threshold does not flag every good part
    json.dumps(result)
    html = (tmp_path / "report" / "report.html").read_text()
    assert "roc.png" in html and "pro.png" in html and "worst_examples.png" in html


def test_saved_model_gives_same_scores(fitted, data_root):
    task, out = fitted
    paths = sorted((data_root / "test" / "scratch").glob("*.png"))
    loaded = load(out)
    a = task.predict(paths)
    b = loaded.predict(paths)
    assert [r["score"] for r in a] == pytest.approx([r["score"] for r in b], abs=1e-6)


def test_predict_outputs_mask_and_heatmap_at_original_size(fitted, data_root, tmp_path):
    task, _ = fitted
    src = data_root / "test" / "spot" / "000.png"
    wide = tmp_path / "wide.png"
    Image.open(src).resize((96, 48)).save(wide)
    array = np.asarray(Image.open(src))  # grayscale array input
    results = task.predict([wide, array], out_dir=tmp_path / "pred")
    assert len(results) == 2
    for r in results:
        assert r["label"] in ("good", "anomalous") and (r["score"] >= 0.5) == r["is_anomalous"]
    assert Image.open(results[0]["mask"]).size == (96, 48)
    assert Image.open(results[0]["heatmap"]).size == (96, 48)
    assert Image.open(results[1]["mask"]).size == (64, 64)


def test_keep_aspect_runs(data_root):
    task = AnomalyDetection(image_size=[64, 96], keep_aspect=True, training={"progress": False})
    task.fit(data_root)
    result = task.evaluate(data_root)
    assert result["pixel_auroc"] is not None and task.image_spec.width == 96


def test_f1_rule_with_defective_validation(data_root, tmp_path):
    root = tmp_path / "plain"
    shutil.copytree(data_root / "train" / "good", root / "good")
    shutil.copytree(data_root / "test" / "scratch", root / "defect")
    shutil.copytree(data_root / "ground_truth" / "scratch", root / "masks")
    task = AnomalyDetection(**SMALL).fit(root)
    assert task.state["threshold_rule"] == "f1"
    assert task.state["calibration"]["pixel_rule"] == "f1 on validation masks"
    assert task.metrics["n_validation_defective"] == 3


def test_f1_rule_without_defects_is_refused(data_root):
    with pytest.raises(ConfigError, match="defective validation images"):
        AnomalyDetection(threshold_rule="f1", **SMALL).fit(data_root)


def test_in_memory_training_images():
    rng = np.random.default_rng(0)
    images = (128 + 10 * rng.standard_normal((6, 50, 70))).clip(0, 255).astype(np.uint8)
    task = AnomalyDetection(model="padim", **SMALL).fit(images)
    assert task.data_fingerprint and len(task.predict(images[:2])) == 2


def test_bad_inputs():
    with pytest.raises(ConfigError, match="multiple of 32"):
        AnomalyDetection(image_size=100)
    with pytest.raises(ConfigError, match="smoothing_sigma"):
        AnomalyDetection(image_size=32, smoothing_sigma=8)
    with pytest.raises(DataError, match="at least 3 good"):
        AnomalyDetection(**SMALL).fit(np.zeros((2, 32, 32), np.uint8))

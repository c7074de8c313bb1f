"""No silent wrong answers from the inspection tasks: deep images score like their 8-bit twins, images far outside
the training intensities are flagged (refused when strict), bad inputs are refused together or skipped, masks stored
as 0/1 count, thresholds resting on too few images are training warnings."""

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from image_writers import write_png16, write_tiff
from PIL import Image

from shopfloor.core.errors import DataError, OutOfRangeWarning
from shopfloor.inspection.anomaly.task import AnomalyDetection
from shopfloor.inspection.classification.task import DefectClassification
from shopfloor.inspection.images import ImageSpec, read_image
from shopfloor.inspection.synthetic import make_anomaly_dataset, make_defect_classes

FAST = {"epochs": 3, "batch_size": 16, "progress": False}
# the fixed pipeline (auto false): the threshold-warning test pins its held-out split; auto is in test_anomaly_auto
SMALL = {"image_size": 64, "auto": False, "training": {"progress": False, "batch_size": 8}}


@pytest.fixture(scope="module")
def class_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("classes")
    return (make_defect_classes(root / "train", n_per_class=10, size=64, seed=0),
            make_defect_classes(root / "test", n_per_class=3, size=64, seed=1))


@pytest.fixture(scope="module")
def classifier(class_data) -> DefectClassification:
    return DefectClassification(image_size=64, feature_views=1, training=FAST).fit(class_data[0])


@pytest.fixture(scope="module")
def ad_root(tmp_path_factory) -> Path:
    return make_anomaly_dataset(tmp_path_factory.mktemp("ad"), n_train=16, n_test_good=4, n_test_per_defect=3,
                                size=64, seed=1)


@pytest.fixture(scope="module")
def detector(ad_root) -> AnomalyDetection:
    return AnomalyDetection(**SMALL).fit(ad_root)


def _twin16(src: Path, dst: Path, factor: int = 257) -> Path:
    """The same picture in a 16-bit PNG (gray or RGB), values * factor (257: full range; 16: 12 bits)."""
    return write_png16(dst, np.asarray(Image.open(src)).astype(np.uint16) * factor)


def _scores(rows):
    return [r["score"] for r in rows]


@pytest.fixture()
def odd_images(tmp_path, ad_root) -> dict[str, Path]:
    """An all-white part and a 10x-contrast part beside the mid-gray textured training images."""
    src = np.asarray(Image.open(ad_root / "test" / "good" / "000.png")).astype(float)
    files = {"white": tmp_path / "white.png", "contrast": tmp_path / "contrast.png"}
    Image.new("L", (64, 64), 255).save(files["white"])
    Image.fromarray(np.clip((src - src.mean()) * 10 + 128, 0, 255).astype(np.uint8)).save(files["contrast"])
    return files


# ------------------------------------------------------------------------------------------- deep images
def test_16bit_twins_score_like_8bit_classification(classifier, class_data, tmp_path):
    files = [sorted((class_data[1] / c).iterdir())[i] for c in ("crack", "scratch") for i in (0, 1)]  # gray + RGB
    twins = [_twin16(f, tmp_path / f"{f.stem}_16.png") for f in files]
    a, b = classifier.predict(files), classifier.predict(twins)
    for x, y in zip(a, b):
        assert x["probabilities"] == pytest.approx(y["probabilities"], abs=1e-5)
    pixels = np.asarray(Image.open(files[0]))
    arrays = classifier.predict([pixels.astype(np.uint16) * 257, pixels.astype(np.float32) / 255])
    for row in arrays:
        assert row["probabilities"] == pytest.approx(a[0]["probabilities"], abs=1e-5)


def test_16bit_and_float_twins_score_like_8bit_anomaly(detector, ad_root, tmp_path):
    files = sorted((ad_root / "test" / "scratch").glob("*.png"))[:2] + [ad_root / "test" / "good" / "000.png"]
    twins = [_twin16(f, tmp_path / f"{f.parent.name}{f.stem}_16.png") for f in files]
    floats = [write_tiff(tmp_path / f"{f.parent.name}{f.stem}.tif", np.asarray(Image.open(f)).astype(np.float32) / 255)
              for f in files]
    reference = _scores(detector.predict(files))
    assert _scores(detector.predict(twins)) == pytest.approx(reference, abs=1e-5)
    assert _scores(detector.predict(floats)) == pytest.approx(reference, abs=1e-5)


def test_12bit_training_images_are_detected_and_score_like_8bit(detector, ad_root, tmp_path):
    root = tmp_path / "deep"
    (root / "train" / "good").mkdir(parents=True)
    for f in sorted((ad_root / "train" / "good").glob("*.png")):
        _twin16(f, root / "train" / "good" / f.name, factor=16)
    deep = AnomalyDetection(**SMALL).fit(root)
    assert deep.image_spec.bit_depth == 12 and deep.state["image_spec"]["bit_depth"] == 12
    probes = sorted((ad_root / "test").rglob("*.png"))[::3]
    twins = [_twin16(f, tmp_path / f"{f.parent.name}{f.stem}_12.png", factor=16) for f in probes]
    assert read_image(twins[0], deep.image_spec).mean() > 80  # not black (a 16-bit reading would give ~8)
    deep_rows = deep.predict(twins)
    assert not any(r["out_of_range"] for r in deep_rows)
    # 12-bit values land where their 8-bit originals do (within one level): the same scores from the same model
    assert _scores(deep_rows) == pytest.approx(_scores(deep.predict(probes)), abs=0.02)
    raw = {k: t.state["calibration"]["image_threshold_raw"] for k, t in (("deep", deep), ("eight", detector))}
    assert raw["deep"] == pytest.approx(raw["eight"], rel=0.25)  # and training on them gives the 8-bit model
    # the 8-bit model reads the same 12-bit files by the full 16-bit range: dark frames, flagged, never silent
    with pytest.warns(OutOfRangeWarning, match="intensity_mean"):
        assert all(r["out_of_range"] for r in detector.predict(twins[:2]))
    brighter = _twin16(probes[0], tmp_path / "sixteen.png", factor=257)
    with pytest.raises(DataError, match=r"above the 12-bit range \(0..4095\)"):
        deep.predict([brighter])


def test_in_memory_deep_training_images(tmp_path):
    rng = np.random.default_rng(0)
    images = (2000 + 150 * rng.standard_normal((6, 50, 70))).clip(0, 4095).astype(np.uint16)
    task = AnomalyDetection(model="padim", **SMALL).fit(images)
    assert task.image_spec.bit_depth == 12 and set(task.state["input_ranges"]["columns"]) == {
        "intensity_mean", "intensity_std"}
    assert any("6 of 6 good training images were stretched" in w for w in task.state["warnings"])
    with pytest.raises(DataError, match="channels-first"):
        AnomalyDetection(**SMALL).fit(np.zeros((6, 3, 64, 64), np.uint8))


# ------------------------------------------------------------------------------------------- training ranges
def test_out_of_range_images_are_flagged_and_strict_refuses_anomaly(detector, ad_root, odd_images):
    normal = ad_root / "test" / "good" / "001.png"
    with pytest.warns(OutOfRangeWarning) as caught:
        rows = detector.predict([normal, odd_images["white"], odd_images["contrast"]])
    assert len([w for w in caught if issubclass(w.category, OutOfRangeWarning)]) == 1
    assert [r["out_of_range"] for r in rows] == [False, True, True]
    assert "intensity_mean" in rows[1]["out_of_range_columns"]
    assert "intensity_std" in rows[2]["out_of_range_columns"]
    assert detector.evaluate(ad_root)["n_out_of_range"] == 0
    detector.strict = True
    try:
        with pytest.raises(DataError, match="far outside the training range.*white.png"):
            detector.predict([normal, odd_images["white"]])
        assert detector.predict([normal])[0]["out_of_range"] is False
    finally:
        detector.strict = False


def test_out_of_range_images_are_flagged_and_strict_refuses_classification(classifier, class_data, odd_images):
    normal = sorted((class_data[1] / "good").iterdir())[0]
    with pytest.warns(OutOfRangeWarning, match="2 of 3 record"):
        rows = classifier.predict([normal, odd_images["white"], odd_images["contrast"]])
    assert [r["out_of_range"] for r in rows] == [False, True, True]
    assert classifier.evaluate(class_data[1])["n_out_of_range"] == 0
    classifier.strict = True
    try:
        with pytest.raises(DataError, match="strict"):
            classifier.predict([odd_images["contrast"]])
    finally:
        classifier.strict = False


def test_models_saved_before_the_ranges_flag_nothing(detector, classifier, ad_root, odd_images):
    old_spec = {"height": 64, "width": 64, "resample": "bilinear", "keep_aspect": False, "pad_value": 0}
    assert ImageSpec(**old_spec).bit_depth is None  # an older artifact's spec loads, with the 8-bit rules
    for task in (detector, classifier):
        ranges = task.state.pop("input_ranges")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", OutOfRangeWarning)
                row = task.predict([odd_images["white"]])[0]
            assert "out_of_range" not in row  # nothing was checked, so nothing is claimed
        finally:
            task.state["input_ranges"] = ranges
    detector.state.pop("input_ranges")
    try:
        assert detector.evaluate(ad_root)["n_out_of_range"] is None
    finally:
        detector.state["input_ranges"] = ranges


# ------------------------------------------------------------------------------------------- bad inputs
@pytest.fixture()
def batch(tmp_path, ad_root) -> list[Path]:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    tiny = tmp_path / "tiny.png"
    Image.new("L", (2, 2), 128).save(tiny)
    return [ad_root / "test" / "good" / "000.png", corrupt, tmp_path / "missing.png", tiny]


@pytest.mark.parametrize("which", ["detector", "classifier"])
def test_bad_inputs_refuse_the_batch_or_are_skipped(request, which, batch):
    task = request.getfixturevalue(which)
    with pytest.raises(DataError) as refused:
        task.predict(batch)
    message = str(refused.value)
    assert "3 of 4 input(s) could not be read" in message and "--skip-bad" in message
    assert "corrupt.png" in message and "missing.png does not exist" in message
    assert "tiny.png is 2x2 pixels, too small for this model's 64x64 input" in message
    with pytest.warns(UserWarning, match="skipped 3 of 4"):
        rows = task.predict(batch, skip_bad=True)
    assert len(rows) == 4 and "skipped" not in rows[0] and rows[0].get("label")
    key = "path" if which == "classifier" else "input"
    for row, path in zip(rows[1:], batch[1:]):
        assert row["skipped"] is True and row["input"] == row[key] == str(path) and str(path) in row["error"]


@pytest.mark.parametrize("which", ["detector", "classifier"])
def test_array_and_path_inputs_are_never_guessed(request, which, ad_root):
    task = request.getfixturevalue(which)
    path = ad_root / "test" / "good" / "000.png"
    assert len(task.predict(str(path))) == 1 and len(task.predict(path)) == 1
    pixels = np.asarray(Image.open(path))
    with pytest.raises(DataError, match="channels-last"):
        task.predict(np.stack([pixels] * 3))  # CxHxW
    rows = task.predict(np.stack([pixels] * 2))  # NxHxW: two gray images
    assert len(rows) == 2


def test_stretched_images_warn_once_per_batch(classifier, class_data, tmp_path):
    files = []
    for i, src in enumerate(sorted((class_data[1] / "good").iterdir())):
        files.append(tmp_path / f"wide{i}.png")
        Image.open(src).resize((128, 64)).save(files[-1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        classifier.predict(files)
    stretched = [str(w.message) for w in caught if "stretched" in str(w.message)]
    assert len(stretched) == 1 and stretched[0].startswith(f"{len(files)} of {len(files)} images were stretched")
    assert "--keep-aspect true" in stretched[0]


# ------------------------------------------------------------------------------------------- masks, thresholds
def test_masks_stored_as_0_1_give_the_same_pixel_metrics(detector, ad_root, tmp_path):
    root = Path(shutil.copytree(ad_root, tmp_path / "copy"))
    for mask in (root / "ground_truth").rglob("*.png"):
        Image.fromarray((np.asarray(Image.open(mask)) > 0).astype(np.uint8)).save(mask)  # 0/1
    assert np.asarray(Image.open(next((root / "ground_truth").rglob("*.png")))).max() == 1
    a, b = detector.evaluate(ad_root), detector.evaluate(root)
    assert a["pixel_auroc"] is not None and a["aupro"] > 0
    for key in ("pixel_auroc", "aupro", "pixel_f1"):
        assert b[key] == pytest.approx(a[key], abs=1e-12)


def test_thresholds_on_too_few_images_are_training_warnings(detector):
    notes = [w for w in detector.state["warnings"] if w.startswith("anomaly threshold")]
    assert len(notes) == 1
    note = notes[0]
    assert "only 3 held-out good image(s)" in note and "--false-alarm-rate 0.01 needs at least 100" in note
    assert "--val-fraction 0.2" in note and "--threshold-rule f1" in note
    assert detector.manifest()["state"]["warnings"] == detector.state["warnings"]  # saved with the model

    task = AnomalyDetection(false_alarm_rate=0.05, **SMALL)
    task.state = {}
    task._warn_weak_threshold("quantile", "empirical quantile", np.linspace(0, 1, 20), 0.95, 0, 100)
    assert "warnings" not in task.state  # 20 held-out images resolve a 5 % rate
    with pytest.warns(UserWarning, match="the F1 rule chose it on only 2 defective validation image"):
        task._warn_weak_threshold("f1", "f1", np.linspace(0, 1, 20), 0.5, 2, 100)

"""Anomaly data layouts (MVTec AD, plain folders) and their validation errors."""

from pathlib import Path

import pytest
from PIL import Image

from shopfloor.core.errors import DataError
from shopfloor.inspection.images import ImageSpec
from shopfloor.inspection.layouts import content_box, has_masks, read_anomaly_data, read_masks
from shopfloor.inspection.synthetic import make_anomaly_dataset


def _img(path: Path, size=(40, 30), value=120, mode="L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value,) * 3).save(path)
    return path


@pytest.fixture(scope="module")
def mvtec(tmp_path_factory) -> Path:
    return make_anomaly_dataset(tmp_path_factory.mktemp("mvtec"), n_train=6, n_test_good=3, n_test_per_defect=2,
                                size=64)


def test_mvtec_layout(mvtec):
    train = read_anomaly_data(mvtec, need="train")
    assert train.layout == "mvtec" and len(train.train) == 6 and train.validation == []
    test = read_anomaly_data(mvtec, need="test")
    assert len(test.test) == 3 + 3 * 2
    assert test.defect_types == ["crack", "scratch", "spot"]
    assert has_masks(test.test)
    assert all(s.mask.name == f"{s.path.stem}_mask.png" for s in test.test if s.label)
    masks = read_masks(test.test, ImageSpec(height=32, width=32))
    assert masks.shape == (9, 32, 32) and masks.dtype == bool
    assert not masks[[s.label == 0 for s in test.test]].any() and masks[[s.label == 1 for s in test.test]].any()


def test_mvtec_validation_folder(mvtec, tmp_path):
    import shutil

    root = Path(shutil.copytree(mvtec, tmp_path / "copy"))
    _img(root / "validation" / "good" / "v0.png")
    _img(root / "validation" / "dent" / "v1.png")
    data = read_anomaly_data(root)
    assert [(s.label, s.defect_type) for s in data.validation] == [(1, "dent"), (0, "good")]


def test_plain_folder_of_good_images(tmp_path):
    for i in range(3):
        _img(tmp_path / f"part_{i}.jpg", mode="RGB")
    data = read_anomaly_data(tmp_path)
    assert data.layout == "folder" and len(data.train) == 3 and data.test == []


def test_plain_folder_with_defects_and_masks(tmp_path):
    for i in range(4):
        _img(tmp_path / "good" / f"g{i}.png")
    _img(tmp_path / "defect" / "d0.png")
    _img(tmp_path / "defect" / "dent" / "d1.png")
    _img(tmp_path / "masks" / "d0_mask.png", value=255)
    _img(tmp_path / "masks" / "dent" / "d1.png", value=255)
    data = read_anomaly_data(tmp_path)
    assert len(data.train) == 4
    assert sorted(s.defect_type for s in data.validation) == ["defect", "dent"]
    assert has_masks(data.validation)
    test = read_anomaly_data(tmp_path, need="test")
    assert len(test.test) == 6 and test.defect_types == ["defect", "dent"]


def test_missing_train_good_is_explained(tmp_path):
    _img(tmp_path / "test" / "good" / "a.png")
    with pytest.raises(DataError, match=r"train[/\\]good does not exist"):
        read_anomaly_data(tmp_path)


def test_missing_data_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_anomaly_data(tmp_path / "nope")


def test_missing_mask_names_the_image(mvtec, tmp_path):
    import shutil

    root = Path(shutil.copytree(mvtec, tmp_path / "copy"))
    (root / "ground_truth" / "spot" / "001_mask.png").unlink()
    read_anomaly_data(root, need="train")  # training does not need the test masks
    with pytest.raises(DataError, match=r"test[/\\]spot[/\\]001.png"):
        read_anomaly_data(root, need="test")


def test_mask_of_other_size_names_both_files(tmp_path):
    for i in range(3):
        _img(tmp_path / "good" / f"g{i}.png")
    _img(tmp_path / "defect" / "d0.png", size=(40, 30))
    _img(tmp_path / "masks" / "d0_mask.png", size=(20, 30), value=255)
    with pytest.raises(DataError, match=r"d0_mask.png is 20x30 but its image .*d0.png is 40x30"):
        read_anomaly_data(tmp_path)


def test_unreadable_image_is_named(tmp_path):
    for i in range(3):
        _img(tmp_path / "train" / "good" / f"g{i}.png")
    (tmp_path / "train" / "good" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png"):
        read_anomaly_data(tmp_path)


def test_test_split_needs_good_and_defective(tmp_path):
    for i in range(3):
        _img(tmp_path / "train" / "good" / f"g{i}.png")
        _img(tmp_path / "test" / "good" / f"g{i}.png")
    with pytest.raises(DataError, match="both good and defective"):
        read_anomaly_data(tmp_path, need="test")


def test_content_box_letterbox():
    spec = ImageSpec(height=64, width=64, keep_aspect=True)
    assert content_box((200, 100), spec) == (0, 16, 64, 48)
    assert content_box((200, 100), ImageSpec(height=64, width=64)) == (0, 0, 64, 64)

import numpy as np
import pytest
from PIL import Image

from shopfloor.core.errors import DataError
from shopfloor.inspection.images import ImageSpec, read_image, read_images, scan_class_folders


def _img(path, size=(40, 30), mode="RGB", value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, value // 2, 10)).save(path)
    return path


def _classes(root, n=3, classes=("a", "b")):
    for c in classes:
        for i in range(n):
            _img(root / c / f"{i}.png")
    return root


def test_reads_mixed_formats_sizes_and_grayscale(tmp_path):
    files = [_img(tmp_path / "x.png", (50, 20)), _img(tmp_path / "y.jpg", (20, 50), "L"),
             _img(tmp_path / "z.bmp"), _img(tmp_path / "w.tif", mode="L")]
    arr = read_images(files, ImageSpec(height=32, width=48))
    assert arr.shape == (4, 32, 48, 3) and arr.dtype == np.uint8
    gray = arr[1]
    assert np.all(gray[..., 0] == gray[..., 1])


def test_keep_aspect_letterboxes(tmp_path):
    f = _img(tmp_path / "wide.png", (100, 25), value=200)
    arr = read_image(f, ImageSpec(height=64, width=64, keep_aspect=True, pad_value=0))
    assert arr[0, 32].sum() == 0 and arr[32, 32].sum() > 0
    stretched = read_image(f, ImageSpec(height=64, width=64))
    assert stretched[0, 32].sum() > 0


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_class_folders(tmp_path / "nope")


def test_not_a_folder(tmp_path):
    f = _img(tmp_path / "a.png")
    with pytest.raises(DataError, match="not a folder"):
        scan_class_folders(f)


def test_loose_images_without_class_folders(tmp_path):
    _img(tmp_path / "a.png")
    with pytest.raises(DataError, match="one sub-folder per class"):
        scan_class_folders(tmp_path)


def test_empty_class_folder_is_named(tmp_path):
    _classes(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty holds no images"):
        scan_class_folders(tmp_path)


def test_single_class(tmp_path):
    _classes(tmp_path, classes=("only",))
    with pytest.raises(DataError, match="single class"):
        scan_class_folders(tmp_path)


def test_too_few_images_per_class(tmp_path):
    _classes(tmp_path, n=5)
    _img(tmp_path / "rare" / "0.png")
    with pytest.raises(DataError, match="'rare' has 1 image"):
        scan_class_folders(tmp_path, min_per_class=5)


def test_corrupt_and_truncated_images_are_named(tmp_path):
    good = _img(tmp_path / "good.png", (64, 64))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"this is not an image")
    big = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(big)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(big.read_bytes()[: len(big.read_bytes()) // 2])
    with pytest.raises(DataError) as err:
        read_images([good, corrupt, truncated], ImageSpec(height=32, width=32))
    msg = str(err.value)
    assert "2 image(s) could not be read" in msg and "corrupt.png" in msg and "truncated.jpg" in msg
    assert "good.png" not in msg


def test_scan_returns_sorted_classes_and_labels(tmp_path):
    _classes(tmp_path, n=2, classes=("b", "a"))
    paths, labels, classes = scan_class_folders(tmp_path)
    assert classes == ["a", "b"] and labels == [0, 0, 1, 1] and len(paths) == 4

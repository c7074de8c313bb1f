"""The one decode path decodes faithfully or refuses: 16-bit and float images by their real range, EXIF orientation,
too-small images, array layouts, masks stored as 0/1 (random inputs: test_image_fuzz.py)."""

from pathlib import Path

import numpy as np
import pytest
from image_writers import write_png16, write_tiff
from PIL import Image

from shopfloor.core.errors import DataError
from shopfloor.inspection.images import (
    ImageSpec,
    decode_frame,
    detect_bit_depth,
    expand_image_inputs,
    oriented_size,
    read_frames,
    read_image,
    read_image_source,
    stretch_message,
)
from shopfloor.inspection.layouts import AnomalySample, mask_pixels, read_masks

SPEC = ImageSpec(height=32, width=32)


def _picture(h=32, w=32, seed=0) -> np.ndarray:
    """A known 8-bit gray picture: a gradient with texture (every level used)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, w)[None, :] * np.ones((h, 1))
    return np.clip(ramp + rng.normal(0, 20, (h, w)), 0, 255).astype(np.uint8)


@pytest.fixture()
def picture(tmp_path) -> tuple[np.ndarray, Path]:
    pixels = _picture()
    path = tmp_path / "p8.png"
    Image.fromarray(pixels).save(path)
    return pixels, path


# ------------------------------------------------------------------------------------------- bit depth
def test_16bit_png_and_tiff_equal_their_8bit_twin(picture, tmp_path):
    pixels, path = picture
    eight = read_image(path, SPEC)
    deep = pixels.astype(np.uint16) * 257  # the same picture in 16 bits
    rgb = np.stack([deep] * 3, axis=-1)
    files = [write_png16(tmp_path / "g16.png", deep), write_png16(tmp_path / "rgb16.png", rgb),
             write_png16(tmp_path / "rgba16.png", np.dstack([rgb, np.full_like(deep, 65535)])),
             write_png16(tmp_path / "la16.png", np.stack([deep, np.full_like(deep, 65535)], -1)),
             write_tiff(tmp_path / "g16.tif", deep), write_tiff(tmp_path / "g16be.tif", deep, ">"),
             write_tiff(tmp_path / "rgb16.tif", rgb), write_tiff(tmp_path / "rgb16be.tif", rgb, ">")]
    for f in files:
        assert np.array_equal(read_image(f, SPEC), eight), f.name
    assert np.array_equal(read_image_source(deep, SPEC), eight)  # an in-memory uint16 array, same rule
    # today's convert("RGB") clipped these to white: the frame must not be saturated
    assert (read_image(files[0], SPEC) == 255).mean() < 0.2


def test_12bit_in_16_is_detected_and_not_black(picture, tmp_path):
    pixels, path = picture
    twelve = pixels.astype(np.uint16) * 16  # a 12-bit camera frame stored in a 16-bit file (max 4080)
    files = [write_png16(tmp_path / "g12.png", twelve), write_png16(tmp_path / "rgb12.png", np.stack([twelve] * 3, -1)),
             write_tiff(tmp_path / "rgb12.tif", np.stack([twelve] * 3, -1))]
    assert detect_bit_depth(files) == 12
    assert detect_bit_depth([path]) is None  # 8-bit only: nothing deeper to scale
    assert detect_bit_depth([write_png16(tmp_path / "g10.png", pixels.astype(np.uint16) * 4)]) == 10
    spec12 = SPEC.model_copy(update={"bit_depth": 12})
    eight = read_image(path, SPEC).astype(int)
    for f in files:
        frame = read_image(f, spec12)
        assert np.abs(frame.astype(int) - eight).max() <= 1, f.name  # 4080 * 255 / 4095 vs 255
        assert frame.mean() > 50
    brighter = write_png16(tmp_path / "g16.png", pixels.astype(np.uint16) * 257)
    with pytest.raises(DataError, match=r"g16.png has pixel values up to \d+, above the 12-bit range \(0..4095\)"):
        read_image(brighter, spec12)


def test_float_tiff_and_arrays_map_0_to_1(picture, tmp_path):
    pixels, path = picture
    eight = read_image(path, SPEC)
    as_float = pixels.astype(np.float32) / 255
    assert np.array_equal(read_image(write_tiff(tmp_path / "f.tif", as_float), SPEC), eight)
    assert np.array_equal(read_image_source(as_float.astype(np.float64), SPEC), eight)
    with pytest.raises(DataError, match=r"floating-point image with values 0..255; float images must hold 0..1"):
        read_image(write_tiff(tmp_path / "f255.tif", pixels.astype(np.float32)), SPEC)
    with pytest.raises(DataError, match="NaN or infinite"):
        read_image_source(np.full((32, 32), np.nan, np.float32), SPEC)


def test_32bit_integer_tiff_is_read_like_16_bit(picture, tmp_path):
    pixels, path = picture
    deep = pixels.astype(np.int32) * 257
    assert np.array_equal(read_image(write_tiff(tmp_path / "i32.tif", deep), SPEC), read_image(path, SPEC))
    with pytest.raises(DataError, match=r"values -1..65534; integer images must hold 0..65535"):
        read_image(write_tiff(tmp_path / "neg.tif", deep - 1), SPEC)


# ------------------------------------------------------------------------------------------- geometry
def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def test_exif_rotated_jpeg_decodes_upright(tmp_path):
    upright = np.zeros((24, 40), np.uint8)
    upright[:, 20:] = 220  # dark left half, bright right half: wider than high
    (tmp_path / "upright.jpg").write_bytes(b"")
    Image.fromarray(upright).save(tmp_path / "upright.jpg", quality=95)
    # a camera held sideways stores the pixels rotated and says so in EXIF (6: rotate 90 degrees clockwise)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    stored.save(tmp_path / "rotated.jpg", quality=95, exif=_exif(6))
    spec = ImageSpec(height=24, width=40)
    frame, info = decode_frame(tmp_path / "rotated.jpg", spec)
    assert info.size == (40, 24) and not info.stretched
    assert oriented_size(tmp_path / "rotated.jpg") == (40, 24)
    assert frame[:, :18].mean() < 30 and frame[:, 22:].mean() > 190
    assert np.abs(frame.astype(int) - read_image(tmp_path / "upright.jpg", spec)).mean() < 4


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_the_same_for_8_and_16_bit(tmp_path, orientation):
    pixels = _picture(24, 40)
    Image.fromarray(pixels).save(tmp_path / "o8.png", exif=_exif(orientation))
    Image.fromarray(pixels.astype(np.uint16) * 257).save(tmp_path / "o16.png", exif=_exif(orientation))
    spec = ImageSpec(height=40, width=40)
    a, info = decode_frame(tmp_path / "o8.png", spec)
    b, _ = decode_frame(tmp_path / "o16.png", spec)
    assert np.array_equal(a, b)
    assert info.size == ((24, 40) if orientation >= 5 else (40, 24))


def test_too_small_images_are_refused_with_their_size(tmp_path):
    Image.new("L", (2, 2), 128).save(tmp_path / "tiny.png")
    with pytest.raises(DataError, match=r"tiny.png is 2x2 pixels, too small for this model's 32x32 input: it would be "
                                        r"enlarged 16x \(at most 4x"):
        read_image(tmp_path / "tiny.png", SPEC)
    assert read_image_source(np.zeros((8, 8), np.uint8), SPEC).shape == (32, 32, 3)  # 4x: accepted
    with pytest.raises(DataError, match="too small"):
        read_image_source(np.zeros((7, 64), np.uint8), SPEC)  # stretching would enlarge the height 4.6x
    letterbox = SPEC.model_copy(update={"keep_aspect": True})
    assert read_image_source(np.zeros((7, 64), np.uint8), letterbox).shape == (32, 32, 3)  # letterbox: shrunk


def test_stretched_images_are_counted_in_one_message(tmp_path):
    files = []
    for i, size in enumerate([(32, 32), (64, 32), (96, 32), (33, 32)]):
        files.append(tmp_path / f"{i}.png")
        Image.new("L", size, 100).save(files[-1])
    _, infos = read_frames(files, SPEC)
    assert [info.stretched for info in infos] == [False, True, True, False]
    message = stretch_message(infos, [str(f) for f in files], SPEC)
    assert message.startswith("2 of 4 images were stretched") and "1.png (64x32)" in message
    assert "--keep-aspect true" in message
    letterbox = SPEC.model_copy(update={"keep_aspect": True})
    assert stretch_message(read_frames(files, letterbox)[1], [str(f) for f in files], letterbox) is None


# ------------------------------------------------------------------------------------------- arrays
def test_array_layouts(picture):
    pixels, _ = picture
    frame = read_image_source(pixels, SPEC)
    for same in (pixels[..., None], np.stack([pixels] * 3, -1), np.dstack([pixels] * 3 + [pixels * 0])):
        assert np.array_equal(read_image_source(same, SPEC), frame)  # HxWx1, HxWx3, HxWx4 (alpha dropped)
    assert np.array_equal(read_image_source(pixels > 127, SPEC), read_image_source((pixels > 127) * np.uint8(255),
                                                                                   SPEC))
    chw = np.stack([pixels] * 3)
    with pytest.raises(DataError, match=r"shape \(3, 32, 32\), which looks channels-first \(CxHxW\); pass images "
                                        "channels-last"):
        read_image_source(chw, SPEC)
    with pytest.raises(DataError, match="channels-first"):
        expand_image_inputs(chw)
    with pytest.raises(DataError, match=r"NxCxHxW"):
        expand_image_inputs(np.stack([chw, chw]))
    with pytest.raises(DataError, match="pixel type int64; pass uint8"):
        read_image_source(pixels.astype(np.int64), SPEC)
    assert len(expand_image_inputs(np.stack([pixels] * 5))) == 5  # NxHxW with N not 3/4: a stack of gray images
    assert len(expand_image_inputs(np.stack([np.stack([pixels] * 3, -1)] * 2))) == 2  # NxHxWx3


def test_single_path_is_one_input_not_its_characters(picture):
    _, path = picture
    assert expand_image_inputs(str(path)) == [path] and expand_image_inputs(path) == [path]


# ------------------------------------------------------------------------------------------- masks
def _mask_files(tmp_path) -> dict[str, Path]:
    m = np.zeros((32, 32), np.uint8)
    m[8:16, 4:20] = 1
    files = {"01": tmp_path / "m01.png", "255": tmp_path / "m255.png", "rgb": tmp_path / "mrgb.png",
             "rgba": tmp_path / "mrgba.png", "palette": tmp_path / "mp.png", "labels": tmp_path / "mlab.png",
             "jpeg": tmp_path / "mjpg.jpg"}
    Image.fromarray(m).save(files["01"])
    Image.fromarray(m * 255).save(files["255"])
    Image.fromarray(np.dstack([m * 200, m * 0, m * 0])).save(files["rgb"])
    Image.fromarray(np.dstack([m * 255] * 3 + [np.full_like(m, 255)])).save(files["rgba"])
    Image.fromarray(m * 255).convert("P").save(files["palette"])
    Image.fromarray(m * np.uint8(2)).save(files["labels"])
    Image.fromarray(m * 255).save(files["jpeg"], quality=70)
    files["16"] = write_png16(tmp_path / "m16.png", m.astype(np.uint16) * 65535)
    files["16_01"] = write_png16(tmp_path / "m16_01.png", m.astype(np.uint16))
    return files


def test_masks_stored_as_0_1_0_255_rgb_or_16_bit_mark_the_same_pixels(tmp_path):
    files = _mask_files(tmp_path)
    truth = mask_pixels(files["255"])
    assert truth.sum() == 8 * 16
    for kind, f in files.items():
        assert np.array_equal(mask_pixels(f), truth), kind
    image = tmp_path / "img.png"
    Image.new("L", (32, 32), 100).save(image)
    spec = ImageSpec(height=64, width=64)
    masks = read_masks([AnomalySample(image, 1, "x", f) for f in files.values()], spec)
    assert all(np.array_equal(m, masks[0]) for m in masks) and masks[0].sum() == 4 * 8 * 16


def test_mask_of_another_size_is_refused_when_read(tmp_path):
    image, mask = tmp_path / "img.png", tmp_path / "img_mask.png"
    Image.new("L", (40, 30), 100).save(image)
    Image.new("L", (30, 40), 255).save(mask)
    with pytest.raises(DataError, match=r"img_mask.png is 30x40 but its image .*img.png is 40x30"):
        read_masks([AnomalySample(image, 1, "x", mask)], SPEC)

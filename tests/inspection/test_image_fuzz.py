"""Random bytes, damaged image files and random arrays (shapes, dtypes) fed to the one decode path and the mask
reader: they may be refused with a DataError, never raise anything else (hypothesis; skipped when not installed)."""

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from image_writers import write_png16, write_tiff  # noqa: E402
from PIL import Image  # noqa: E402

from shopfloor.core.errors import DataError  # noqa: E402
from shopfloor.inspection.images import (  # noqa: E402
    ImageSpec,
    detect_bit_depth,
    expand_image_inputs,
    read_image,
    read_image_source,
)
from shopfloor.inspection.layouts import read_mask  # noqa: E402

SPEC = ImageSpec(height=32, width=32)


def _picture(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(np.linspace(0, 255, w)[None, :] + rng.normal(0, 20, (h, w)), 0, 255).astype(np.uint8)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


_SEEDS = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff\xe0", ".tif": b"II*\x00", ".bmp": b"BM"}
_FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid_files(tmp: Path) -> list[bytes]:
    """Valid image files of several kinds, whose bytes are then damaged."""
    pixels = _picture(20, 24)
    out = []
    for name, save in [("a.png", lambda p: Image.fromarray(pixels).save(p)),
                       ("b.jpg", lambda p: Image.fromarray(pixels).save(p, exif=_exif(6))),
                       ("c.png", lambda p: write_png16(p, np.stack([pixels.astype(np.uint16) * 16] * 3, -1))),
                       ("d.tif", lambda p: write_tiff(p, pixels.astype(np.float32) / 255)),
                       ("e.tif", lambda p: write_tiff(p, np.stack([pixels.astype(np.uint16)] * 3, -1)))]:
        save(tmp / name)
        out.append((tmp / name).read_bytes())
    return out


def _read_all_ways(path: Path) -> None:
    spec = ImageSpec(height=16, width=16, bit_depth=12)
    for reader in (lambda: read_image(path, spec), lambda: read_image_source(path, SPEC),
                   lambda: read_mask(path, spec), lambda: detect_bit_depth([path])):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # PIL's notes on the damaged headers
                reader()
        except DataError:
            pass


@_FUZZ
@given(suffix=st.sampled_from(sorted(_SEEDS)), body=st.binary(max_size=300))
def test_random_bytes_raise_only_data_errors(tmp_path, suffix, body):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(_SEEDS[suffix] + body)
    _read_all_ways(path)


@_FUZZ
@given(which=st.integers(0, 4), cuts=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
       truncate=st.one_of(st.none(), st.integers(0, 10**6)))
def test_damaged_image_files_raise_only_data_errors(tmp_path, which, cuts, truncate):
    data = bytearray(_valid_files(tmp_path)[which])
    for position, value in cuts:
        data[position % len(data)] = value
    if truncate is not None:
        data = data[: truncate % (len(data) + 1)]
    path = tmp_path / ("fuzz" + [".png", ".jpg", ".png", ".tif", ".tif"][which])
    path.write_bytes(bytes(data))
    _read_all_ways(path)


_DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64,
                           np.bool_, np.complex64, np.uint32])


@_FUZZ
@given(array=hnp.arrays(_DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=24)))
def test_random_arrays_raise_only_data_errors(array):
    for spec in (SPEC, ImageSpec(height=16, width=24, keep_aspect=True, bit_depth=10)):
        try:
            frame = read_image_source(array, spec)
            assert frame.shape == (spec.height, spec.width, 3) and frame.dtype == np.uint8
        except DataError:
            pass
    try:
        expand_image_inputs(array)
    except DataError:
        pass

"""Decoding image files: full decode (truncation caught), EXIF orientation, every bit of 16-bit colour images, and
what the header alone tells (size, deepest value); any failure is a :class:`DataError` naming the file."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

from shopfloor.core.errors import DataError

from .image_spec import BIT_DEPTHS, IMAGE_EXTENSIONS, ImageSource

_DEEP_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}  # decoded as 16/32-bit integers by PIL
_COLOR16 = re.compile(r"^(RGB|RGBA|RGBX|LA);16[BLN]?$")  # 16-bit colour PNG/TIFF, which PIL cuts to 8 bits
_EXACT_COLOR16_CODECS = ("zip", "raw")  # whose rawmode unpacks raw bytes: both bytes can be recovered
# EXIF orientation -> the PIL transpose that makes the image upright (the table of PIL.ImageOps.exif_transpose)
_ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


def _unreadable(path: Path, exc: BaseException) -> DataError:
    detail = str(exc) or type(exc).__name__
    return DataError(f"cannot read image {path}: {detail}. Remove or replace the file and try again")


def _open(path: Path) -> Image.Image:
    """Open (header only), with a clear error when the file is missing, not an image or too large."""
    if not path.is_file():
        raise DataError(f"image {path} does not exist")
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(f"{path} is not an image file (expected png, jpg, jpeg, bmp or tif)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except Exception as exc:  # PIL raises many types on malformed files; every one means "unreadable"
        raise _unreadable(path, exc) from exc


def _load(img: Image.Image, path: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except Exception as exc:  # truncated, corrupt or hostile data: PIL's error types vary by plugin
        raise _unreadable(path, exc) from exc
    return img


def _orientation(img: Image.Image, path: Path) -> int:
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception as exc:  # a malformed EXIF block: the orientation cannot be trusted
        raise DataError(f"cannot read the EXIF orientation of {path}: {exc}. Re-save the image without EXIF "
                        "or with a valid orientation tag") from exc
    return value if isinstance(value, int) and value in _ORIENT else 1


def _orient_array(arr: np.ndarray, orientation: int) -> np.ndarray:
    """The numpy twin of PIL's transpose for :data:`_ORIENT` (rows = y, columns = x)."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(arr, -1)
    if orientation == 7:
        return arr[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(arr, 1)
    return arr


def _rawmode(tile: Any) -> str | None:
    args = tile[3] if len(tile) > 3 else None
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _with_rawmode(tile: Any, rawmode: str) -> Any:
    args = tile[3]
    new_args = rawmode if isinstance(args, str) else (rawmode,) + tuple(args[1:])
    return tile._replace(args=new_args) if hasattr(tile, "_replace") else (*tile[:3], new_args, *tile[4:])


def _color16_rawmode(img: Image.Image) -> str | None:
    """The rawmode when ``img`` holds 16 bits per colour channel (which PIL decodes to their high bytes)."""
    modes = {_rawmode(t) for t in (img.tile or [])}
    if len(modes) == 1:
        (mode,) = modes
        if mode and _COLOR16.match(mode):
            return mode
    return None


def _decode_color16(path: Path, img: Image.Image, rawmode: str) -> tuple[np.ndarray, bool]:
    """All 16 bits of a 16-bit-per-channel colour image: uint16 HxWxC (C = 3, 4, or 1 for gray+alpha) and whether
    the low bytes were recovered. PIL's unpackers keep the high byte; decoding the same data again with the
    opposite byte order (same bits per pixel, so PNG filtering is unchanged) gives the low byte. Where that is not
    possible (compressed TIFF, gray+alpha without a suitable unpacker) only the high bytes are kept (value*257):
    the full 16-bit range, within one 8-bit level."""
    codec = img.tile[0][0]
    base, _, order = rawmode.partition(";16")
    high = np.asarray(_load(img, path))
    if img.mode == "RGBA" and base == "LA":
        high = high[..., :1]  # PIL expands gray+alpha to RGBA; keep the gray channel
    exact = False
    low = np.zeros_like(high)
    if codec in _EXACT_COLOR16_CODECS:
        other = None
        if base == "LA" and order == "B":
            other = "RGBA"  # 4 bytes per pixel: gray high, gray low, alpha high, alpha low
        elif base != "LA" and order in ("B", "L"):
            other = f"{base};16{'L' if order == 'B' else 'B'}"
        if other is not None:
            try:
                twin = Image.open(path)
                twin.tile = [_with_rawmode(t, other) for t in twin.tile]
                decoded = np.asarray(_load(twin, path))
                low = decoded[..., 1:2] if other == "RGBA" else decoded
                if other == "RGBA":
                    high = decoded[..., :1]
                exact = low.shape == high.shape
            except (DataError, ValueError, OSError):
                exact = False
            if not exact:
                low = np.zeros_like(high)
    values = (high.astype(np.uint16) << 8) | (low.astype(np.uint16) if exact else high.astype(np.uint16))
    return values, exact


def _decode_file(path: Path) -> tuple[Image.Image | np.ndarray, bool, str | None]:
    """A file decoded fully with its EXIF orientation applied: a PIL image for 8-bit modes, a numpy array for deep
    ones (uint16, int32, float32, HxW or HxWxC); whether every bit was recovered (False only for 16-bit colour kept
    as high bytes); and the file format (PNG, JPEG...)."""
    img = _open(path)
    fmt = img.format
    rawmode = _color16_rawmode(img)
    exact = True
    pixels: Image.Image | np.ndarray
    try:
        if rawmode is not None:
            pixels, exact = _decode_color16(path, img, rawmode)
        else:
            pixels = _load(img, path)
        orientation = _orientation(img, path)
    except DataError:
        img.close()
        raise
    if isinstance(pixels, Image.Image) and pixels.mode in _DEEP_MODES | {"F"}:
        try:
            pixels = np.asarray(pixels)
        except Exception as exc:
            raise _unreadable(path, exc) from exc
    if orientation != 1:
        if isinstance(pixels, np.ndarray):
            pixels = np.ascontiguousarray(_orient_array(pixels, orientation))
        else:
            try:
                pixels = pixels.transpose(_ORIENT[orientation])
            except Exception as exc:
                raise _unreadable(path, exc) from exc
    return pixels, exact, fmt


def decode_pixels(path: str | Path) -> tuple[Image.Image | np.ndarray, str | None]:
    """A file's decoded pixels before any value mapping (EXIF orientation applied) and its format: a PIL image for
    8-bit modes, a numpy array for deeper ones. For readers with their own value rules (masks)."""
    pixels, _, fmt = _decode_file(Path(path))
    return pixels, fmt


def oriented_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file as decoded: from its header, swapped when EXIF rotates it 90 degrees."""
    path = Path(path)
    with _open(path) as img:
        w, h = img.size
        try:
            orientation = img.getexif().get(0x0112, 1)
        except Exception:
            orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _deep_maximum(item: ImageSource) -> int | None:
    """The largest value of a deep integer image (16-bit files, uint16 arrays); None for 8-bit, float or unreadable
    ones (those are reported when read). Compressed 16-bit colour kept as high bytes counts as full 16 bits."""
    if isinstance(item, np.ndarray):
        if item.dtype.kind in "ui" and item.dtype != np.uint8 and item.size:
            return int(item.max())
        return None
    if not isinstance(item, (str, Path)):
        return None
    path = Path(item)
    try:
        with _open(path) as img:
            deep = img.mode in _DEEP_MODES or _color16_rawmode(img) is not None
        if not deep:
            return None
        pixels, exact, _ = _decode_file(path)
    except DataError:
        return None
    if not isinstance(pixels, np.ndarray) or pixels.dtype.kind not in "ui" or not pixels.size:
        return None
    return 65535 if not exact else int(pixels.max())


def detect_bit_depth(items: Iterable[ImageSource]) -> int | None:
    """The significant bits of the deep integer images among ``items``: the smallest of :data:`BIT_DEPTHS` that
    holds their maximum; None when none is deeper than 8 bits (see :class:`ImageSpec`)."""
    top = None
    for item in items:
        value = _deep_maximum(item)
        if value is not None:
            top = value if top is None else max(top, value)
    if top is None:
        return None
    for bits in BIT_DEPTHS:
        if top <= 2 ** bits - 1:
            return bits
    return 16  # values above 65535 are refused when the image is read

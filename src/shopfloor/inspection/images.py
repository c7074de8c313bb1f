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

The work is split by job (this module keeps the decode path and re-exports the rest, so ``from
shopfloor.inspection.images import ...`` keeps working): :mod:`.image_spec` (the spec and limits),
:mod:`.image_files` (decoding files), :mod:`.image_values` (pixel values to 8-bit RGB), :mod:`.image_geometry`
(size checks and resize), :mod:`.image_folders` (which images an input names).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from shopfloor.core.errors import DataError

from .image_files import decode_pixels, detect_bit_depth, oriented_size
from .image_folders import expand_image_inputs, input_names, is_image_file, list_images, scan_class_folders, \
    split_image_stack
from .image_geometry import _resize, check_size, content_box, gray_intensity, is_stretched, resize_array, \
    upscale_factor
from .image_spec import (
    BIT_DEPTHS,
    FLOAT_TOLERANCE,
    IMAGE_EXTENSIONS,
    INTENSITY_COLUMNS,
    MAX_UPSCALE,
    STRETCH_TOLERANCE,
    FrameInfo,
    ImageSource,
    ImageSpec,
)
from .image_values import _source_name, decode_rgb, open_image


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


def array_to_model_frame(array: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """An in-memory image (HxW / HxWxC, uint8, uint16, bool or float 0..1) resized exactly as files are."""
    return decode_frame(np.asarray(array), spec, "in-memory image")[0]


def read_image_source(item: ImageSource, spec: ImageSpec) -> np.ndarray:
    """A file or an in-memory image through the same decode/resize step: uint8 HxWx3."""
    return decode_frame(item, spec)[0]


__all__ = [
    "BIT_DEPTHS", "FLOAT_TOLERANCE", "IMAGE_EXTENSIONS", "INTENSITY_COLUMNS", "MAX_UPSCALE", "STRETCH_TOLERANCE",
    "FrameInfo", "ImageSource", "ImageSpec", "array_to_model_frame", "check_size", "content_box", "decode_frame",
    "decode_pixels", "decode_rgb", "detect_bit_depth", "expand_image_inputs", "gray_intensity", "input_names",
    "intensity_stats", "is_image_file", "is_stretched", "list_images", "open_image", "oriented_size", "read_frames",
    "read_image", "read_image_source", "read_images", "resize_array", "scan_class_folders", "split_image_stack",
    "stretch_message", "to_model_input", "upscale_factor", "warn_stretched",
]

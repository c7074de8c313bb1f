"""How raw images become model input: :class:`ImageSpec` (recorded in every image model's artifact), the limits
the decode path enforces, and :class:`FrameInfo` (what decoding found besides the pixels)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from shopfloor.core.config import StrictModel

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ImageSource = str | Path | np.ndarray  # a file, or an in-memory image (uint8, uint16, bool or float 0..1)

MAX_UPSCALE = 4.0  # an image the resize would enlarge more than this (along a side) is refused
STRETCH_TOLERANCE = 1.10  # aspect ratio changed by more than 10 % counts as stretched
BIT_DEPTHS = (8, 10, 12, 14, 16)  # candidate significant bits of deep integer images, detected at fit
FLOAT_TOLERANCE = 1e-3  # float images may stray this far outside 0..1 (rounding) before they are refused
INTENSITY_COLUMNS = ("intensity_mean", "intensity_std")  # per-image statistics checked against training ranges


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


@dataclass(frozen=True)
class FrameInfo:
    """What decoding one image found besides its pixels."""

    size: tuple[int, int]  # (width, height) of the decoded image, EXIF orientation applied
    stretched: bool  # its aspect ratio was changed by more than 10 % to fit the model's input
    intensity: tuple[float, float]  # mean and std of the gray level (0..255) of the image's content in the frame

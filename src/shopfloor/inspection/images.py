"""Image reading, validation and the one shared decode-and-resize function.

Every image that reaches a model, in training, evaluation, prediction or serving, goes through
:func:`read_image`, which decodes, converts to RGB (grayscale is replicated) and resizes to the
size recorded in the artifact. Normalisation happens inside the exported graph.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import Field

from shopfloor.core.config import StrictModel
from shopfloor.core.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ImageSource = str | Path | np.ndarray  # a file, or an in-memory uint8 image


class ImageSpec(StrictModel):
    """How raw images become model input: recorded in the artifact and applied by :func:`read_image`."""

    height: int = Field(224, ge=16)
    width: int = Field(224, ge=16)
    resample: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    keep_aspect: bool = Field(False, description="letterbox instead of stretching to height x width")
    pad_value: int = Field(0, ge=0, le=255)


_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def open_image(path: str | Path) -> Image.Image:
    """Decode an image fully (so truncation is caught here), with a clear error when it cannot be."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"cannot read image {path}: {exc}. Remove or replace the file and try again") from exc
    return img


def resize_array(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """Resize a decoded RGB image to the spec; uint8 HxWx3."""
    target = (spec.width, spec.height)
    if not spec.keep_aspect:
        return np.asarray(img.resize(target, _RESAMPLE[spec.resample]), dtype=np.uint8)
    scale = min(spec.width / img.width, spec.height / img.height)
    new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    canvas = Image.new("RGB", target, (spec.pad_value,) * 3)
    canvas.paste(img.resize(new, _RESAMPLE[spec.resample]), ((spec.width - new[0]) // 2, (spec.height - new[1]) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def read_image(path: str | Path, spec: ImageSpec) -> np.ndarray:
    """The shared decode -> RGB -> resize step: uint8 array HxWx3."""
    img = open_image(path)
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGBA").convert("RGB") if "A" in img.mode or img.mode == "P" else img.convert("RGB")
    if img.mode == "L":
        img = img.convert("RGB")
    return resize_array(img, spec)


def read_images(paths: Sequence[str | Path], spec: ImageSpec, progress: bool = False,
                desc: str = "reading images") -> np.ndarray:
    """Read many images into one uint8 array NxHxWx3; all unreadable files are reported together."""
    from tqdm.auto import tqdm

    out = np.empty((len(paths), spec.height, spec.width, 3), dtype=np.uint8)
    bad: list[str] = []
    for i, p in enumerate(tqdm(paths, desc=desc, disable=not progress, leave=False)):
        try:
            out[i] = read_image(p, spec)
        except DataError as exc:
            bad.append(str(exc))
    if bad:
        shown = "\n  ".join(bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(f"{len(bad)} image(s) could not be read:\n  {shown}{more}")
    return out


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 NxHxWx3 -> float32 Nx3xHxW in 0..255, the input contract of every exported image graph."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


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


def expand_image_inputs(inputs: Sequence[ImageSource] | ImageSource) -> list[ImageSource]:
    """Files, folders (their images) and in-memory uint8 arrays (one HxW / HxWx3 image, or a stack of them
    NxHxW / NxHxWx3) as one flat list."""
    if isinstance(inputs, np.ndarray):
        single = inputs.ndim == 2 or (inputs.ndim == 3 and inputs.shape[2] in (1, 3))
        inputs = [inputs] if single else list(inputs)
    elif isinstance(inputs, (str, Path)):
        inputs = [inputs]
    out: list[ImageSource] = []
    for item in inputs:
        if isinstance(item, np.ndarray):
            out.append(item)
            continue
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise DataError(f"folder {p} holds no images to predict on")
            out.extend(found)
        elif not p.exists():
            raise DataError(f"input {p} does not exist")
        elif not is_image_file(p):
            raise DataError(f"{p} is not an image file (expected png, jpg, jpeg, bmp or tif)")
        else:
            out.append(p)
    return out


def array_to_model_frame(array: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """An in-memory HxW / HxWx3 uint8 image resized exactly as :func:`read_image` resizes files."""
    from PIL import Image

    arr = np.asarray(array)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3)):
        raise DataError(f"in-memory images must be uint8 HxW or HxWx3 arrays; got {arr.dtype} {arr.shape}")
    img = Image.fromarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[2] == 1 else arr).convert("RGB")
    return resize_array(img, spec)


def read_image_source(item: ImageSource, spec: ImageSpec) -> np.ndarray:
    """A file or an in-memory image through the same decode/resize step: uint8 HxWx3."""
    return array_to_model_frame(item, spec) if isinstance(item, np.ndarray) else read_image(item, spec)

"""Which images an input names: class folders for training, and files / folders / arrays for prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from shopfloor.core.errors import DataError

from .image_spec import IMAGE_EXTENSIONS, ImageSource

def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


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

"""Anomaly-detection data layouts: MVTec AD and a plain folder of good (and optionally defective) images.

MVTec AD layout (``root/train`` or ``root/test`` present)::

    train/good/*.png                       good images for fitting (required for training)
    validation/good, validation/<type>/    optional labelled validation images (threshold choice)
    test/good/*.png, test/<type>/*.png     evaluation images
    ground_truth/<type>/<stem>_mask.png    optional masks of the test defects (or <stem>.png)

Plain-folder layout::

    root/*.png                             only good images, or
    root/good/  root/defect/  root/masks/  good images, optional defective images (files or one
                                           sub-folder per defect type), optional masks named
                                           <stem>_mask.png or <stem>.png (optionally under <type>/)

For training, the plain layout's defective images (with their masks) serve as validation data; for
evaluation, good and defective images together are the test set.

Every problem is reported with the offending file: a missing ``train/good``, unreadable images,
defective images without a mask when masks are given, masks of another size than their image.

Masks are binarised by ``> 0`` on any colour channel (alpha ignored; palette masks by their colours), so 0/1,
0/255, 0/65535, label (0, 1, 2...) and RGB masks all mark the same pixels; JPEG masks, whose compression noise
would mark pixels around every edge, are binarised at ``> 127`` instead. Masks get the EXIF orientation, size
check and letterbox of their image (nearest-neighbour resize).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from shopfloor.core.errors import DataError

from .images import (
    IMAGE_EXTENSIONS,
    ImageSpec,
    check_size,
    content_box,
    decode_pixels,
    is_image_file,
    list_images,
    oriented_size,
)

GOOD_NAMES = ("good", "ok", "normal")
DEFECT_NAMES = ("defect", "defective", "bad", "anomaly", "ng")
MASK_NAMES = ("masks", "mask", "ground_truth")


@dataclass
class AnomalySample:
    """One labelled image: ``label`` 0 good / 1 defective, its defect type and optional mask file."""

    path: Path
    label: int
    defect_type: str = "good"
    mask: Path | None = None


@dataclass
class AnomalyData:
    """The images of one data root, split by role."""

    root: Path
    layout: str
    train: list[Path] = field(default_factory=list)
    validation: list[AnomalySample] = field(default_factory=list)
    test: list[AnomalySample] = field(default_factory=list)

    @property
    def defect_types(self) -> list[str]:
        return sorted({s.defect_type for s in self.test if s.label == 1})


def has_masks(samples: Iterable[AnomalySample]) -> bool:
    """True when every defective sample has a mask (and there is at least one defective sample)."""
    defects = [s for s in samples if s.label == 1]
    return bool(defects) and all(s.mask is not None for s in defects)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _find_child(root: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def _find_mask(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (f"{stem}_mask", stem):
            for ext in IMAGE_EXTENSIONS:
                for candidate in (folder / f"{name}{ext}", folder / f"{name}{ext.upper()}"):
                    if candidate.is_file():
                        return candidate
    return None


def _attach_masks(samples: list[AnomalySample], mask_folders: dict[str, list[Path]], where: str) -> None:
    """Fill ``mask`` of defective samples; every defective image needs one when masks are given."""
    missing = []
    for s in samples:
        if s.label != 1:
            continue
        s.mask = _find_mask(mask_folders.get(s.defect_type, []), s.path.stem)
        if s.mask is None:
            missing.append(str(s.path))
    if missing:
        shown = "\n  ".join(missing[:10]) + (f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise DataError(f"{len(missing)} defective image(s) have no mask in {where} (expected <stem>_mask.png "
                        f"or <stem>.png):\n  {shown}\nAdd the masks, or remove {where} to evaluate without "
                        "pixel-level metrics.")


def _defect_samples(folder: Path, default_type: str) -> list[AnomalySample]:
    """Defective images directly in ``folder`` (type ``default_type``) or in one sub-folder per type."""
    samples = [AnomalySample(p, 1, default_type) for p in list_images(folder)]
    for sub in _subdirs(folder):
        samples += [AnomalySample(p, 1, sub.name) for p in list_images(sub)]
    return samples


def _labelled_split(folder: Path) -> list[AnomalySample]:
    """``folder/good`` as label 0 and every other sub-folder as a defect type."""
    samples: list[AnomalySample] = []
    for sub in _subdirs(folder):
        label = 0 if sub.name in GOOD_NAMES else 1
        samples += [AnomalySample(p, label, "good" if label == 0 else sub.name) for p in list_images(sub)]
    return samples


def _read_mvtec(root: Path, with_masks: bool) -> AnomalyData:
    data = AnomalyData(root, "mvtec")
    good = root / "train" / "good"
    if good.is_dir():
        data.train = list_images(good)
    if (root / "validation").is_dir():
        data.validation = _labelled_split(root / "validation")
    if (root / "test").is_dir():
        data.test = _labelled_split(root / "test")
    gt = root / "ground_truth"
    if with_masks and gt.is_dir():
        folders = {d.name: [d] for d in _subdirs(gt)}
        _attach_masks(data.test, folders, str(gt))
    return data


def _read_folder(root: Path) -> AnomalyData:
    data = AnomalyData(root, "folder")
    good = _find_child(root, GOOD_NAMES)
    if good is None:
        data.train = list_images(root)
        return data
    data.train = list_images(good)
    defect = _find_child(root, DEFECT_NAMES)
    defects = _defect_samples(defect, defect.name) if defect else []
    masks = _find_child(root, MASK_NAMES)
    if masks is not None and defects:
        folders = {t: [masks / t, masks] for t in {s.defect_type for s in defects}}
        _attach_masks(defects, folders, str(masks))
    data.validation = defects
    data.test = [AnomalySample(p, 0) for p in data.train] + defects
    return data


def _check_headers(samples: list[AnomalySample], train: list[Path]) -> None:
    """Every image must open; every mask must open and match its image's size. All problems together."""
    problems: list[str] = []

    def size_of(path: Path) -> tuple[int, int] | None:
        try:
            return oriented_size(path)
        except DataError as exc:
            problems.append(str(exc))
            return None

    for p in train:
        size_of(p)
    for s in samples:
        img_size = size_of(s.path)
        if s.mask is None:
            continue
        mask_size = size_of(s.mask)
        if img_size and mask_size and img_size != mask_size:
            problems.append(_size_mismatch(s, mask_size, img_size))
    _raise_problems(problems, "the anomaly data")


def _size_mismatch(sample: AnomalySample, mask_size: tuple[int, int], img_size: tuple[int, int]) -> str:
    return (f"mask {sample.mask} is {mask_size[0]}x{mask_size[1]} but its image {sample.path} is "
            f"{img_size[0]}x{img_size[1]}; masks must have the size of their image")


def _raise_problems(problems: list[str], what: str) -> None:
    if problems:
        shown = "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise DataError(f"{len(problems)} problem(s) with {what}:\n  {shown}\n"
                        "Replace or remove these files and try again.")


LAYOUT_HELP = ("Use the MVTec AD layout (train/good, test/good, test/<type>, ground_truth/<type>/<stem>_mask.png) "
               "or a plain folder: good images directly inside it, or good/ with optional defect/ and masks/.")


def read_anomaly_data(root: str | Path, need: str = "train") -> AnomalyData:
    """Scan and validate an anomaly data root; ``need`` is ``"train"`` or ``"test"`` (what must be present)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist. {LAYOUT_HELP}")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder. {LAYOUT_HELP}")
    mvtec = any((root / n).is_dir() for n in ("train", "test", "ground_truth"))
    data = _read_mvtec(root, with_masks=need == "test") if mvtec else _read_folder(root)
    if need == "train" and not data.train:
        where = root / "train" / "good" if mvtec else root
        exists = "holds no images" if where.is_dir() else "does not exist"
        raise DataError(f"{where} {exists}: anomaly detection trains on good images only. {LAYOUT_HELP}")
    if need == "test":
        if not data.test:
            raise DataError(f"{root} has no test images (test/good, test/<type>). {LAYOUT_HELP}")
        if not any(s.label == 0 for s in data.test) or not any(s.label == 1 for s in data.test):
            raise DataError(f"the test images in {root} must include both good and defective images to be scored; "
                            f"found labels {sorted({s.defect_type for s in data.test})}")
    checked = data.test + data.validation if need == "test" else data.validation
    _check_headers(checked, data.train if need == "train" else [])
    return data


def mask_pixels(path: str | Path) -> np.ndarray:
    """A mask file as booleans ``[H, W]`` at its own size (EXIF orientation applied): ``> 0`` on any colour channel,
    ``> 127`` for lossy JPEG masks (see the module docstring)."""
    path = Path(path)
    pixels, fmt = decode_pixels(path)
    if isinstance(pixels, Image.Image):
        img = pixels.convert("RGBA") if pixels.mode in ("P", "PA") else pixels
        try:
            arr = np.asarray(img)
        except Exception as exc:  # exotic modes numpy cannot view
            raise DataError(f"cannot read mask {path} (mode {img.mode}): {exc}. Save it as a gray PNG") from exc
        bands = img.getbands()
        if arr.ndim == 3 and len(bands) == arr.shape[2] and "A" in bands and len(bands) > 1:
            arr = arr[..., [i for i, band in enumerate(bands) if band != "A"]]
    else:
        arr = pixels
        if arr.ndim == 3 and arr.shape[2] in (2, 4):
            arr = arr[..., : arr.shape[2] - 1]  # drop alpha
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"mask {path} holds NaN or infinite values; masks mark defect pixels with values > 0")
    binary = arr > (127 if fmt == "JPEG" else 0)
    return binary.any(axis=2) if binary.ndim == 3 else binary


def read_mask(path: str | Path, spec: ImageSpec) -> np.ndarray:
    """One mask file as booleans ``[H, W]`` in the model frame (placed like its image, nearest neighbour)."""
    binary = mask_pixels(path)
    size = (binary.shape[1], binary.shape[0])
    check_size(size, spec, f"mask {path}")
    left, top, right, bottom = content_box(size, spec)
    img = Image.fromarray(binary.astype(np.uint8) * 255)
    out = np.zeros((spec.height, spec.width), dtype=bool)
    out[top:bottom, left:right] = np.asarray(img.resize((right - left, bottom - top), Image.NEAREST)) > 0
    return out


def read_masks(samples: list[AnomalySample], spec: ImageSpec) -> np.ndarray:
    """Boolean masks ``[N, H, W]`` in the model frame (all False for good images / no mask). Unreadable masks and
    masks of another size than their image are refused, all together."""
    out = np.zeros((len(samples), spec.height, spec.width), dtype=bool)
    problems: list[str] = []
    for i, s in enumerate(samples):
        if s.mask is None:
            continue
        try:
            mask_size, img_size = oriented_size(s.mask), oriented_size(s.path)
            if mask_size != img_size:
                problems.append(_size_mismatch(s, mask_size, img_size))
                continue
            out[i] = read_mask(s.mask, spec)
        except DataError as exc:
            problems.append(str(exc))
    _raise_problems(problems, "the masks")
    return out


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as decoded (EXIF orientation applied), from its header."""
    return oriented_size(path)


__all__ = ["AnomalyData", "AnomalySample", "content_box", "has_masks", "image_size", "is_image_file",
           "mask_pixels", "read_anomaly_data", "read_mask", "read_masks"]

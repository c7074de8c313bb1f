"""What `shopfloor check` and `shopfloor suggest` need from images: embeddings from the pretrained backbone, content
hashes, and per-image facts (size, bit depth, colour, blur, exposure), handed to the generic machinery in
:mod:`shopfloor.core.quality`.

Every image is decoded once, through the same decode path as training (:func:`~.images.decode_rgb`, value rules of
:class:`~.images.ImageSpec`), then resized to the backbone's input exactly like a model frame. Embeddings are the
average+max pooled features of the ImageNet-pretrained EfficientNet-Lite0 (the features the classifier's head is
trained on), run through ONNX Runtime; with ``cache_dir`` they are kept per file content (SHA-1) so a second check
or a suggest over the same images does not recompute them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from shopfloor.core.errors import DataError
from shopfloor.core.quality import ImageFacts, QualityData, read_embedding_cache, write_embedding_cache
from shopfloor.core.task import batched

from .images import (
    ImageSpec,
    check_size,
    decode_rgb,
    expand_image_inputs,
    list_images,
    resize_array,
    scan_class_folders,
    to_model_input,
)

log = logging.getLogger(__name__)

BACKBONE = "efficientnet-lite0"
SPLIT_NAMES = ("train", "validation", "val", "test")  # sub-folders of a data root that hold one split each
STATS_SIDE = 256  # blur and exposure are measured on the gray image resized to this side (size independent)
BITS_OF_MODE = {"1": 1, "L": 8, "P": 8, "LA": 8, "RGB": 8, "RGBA": 8, "CMYK": 8, "YCbCr": 8, "I;16": 16,
                "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}


@dataclass
class ImageItems:
    """The images of a check: paths, the split each belongs to, labels (indices into ``classes``; -1 unknown)."""

    paths: list[Path]
    splits: list[str]
    labels: np.ndarray
    classes: list[str]


def scan_check_data(root: str | Path) -> ImageItems:
    """A class-folder root, or a root with ``train/`` and ``test/`` (and optionally ``validation/``) each holding
    class folders (a train/test split whose leakage the check looks for)."""
    root = Path(root)
    parts = [root / name for name in SPLIT_NAMES if (root / name).is_dir()]
    if not parts:
        paths, labels, classes = scan_class_folders(root, min_per_class=1, min_classes=1)
        return ImageItems(paths, ["all"] * len(paths), np.asarray(labels), classes)
    found = [(part.name, *scan_class_folders(part, min_per_class=1, min_classes=1)) for part in parts]
    classes = sorted({c for _, _, _, names in found for c in names})
    paths, splits, labels = [], [], []
    for split, part_paths, part_labels, names in found:
        paths += part_paths
        splits += [split] * len(part_paths)
        labels += [classes.index(names[i]) for i in part_labels]
    return ImageItems(paths, splits, np.asarray(labels), classes)


def file_digest(path: Path) -> str:
    """SHA-1 of a file's bytes (exact duplicates, embedding cache key)."""
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def header_facts(path: Path) -> tuple[str, int, str]:
    """(format, bits per channel, colour kind from the header: gray / colour / palette) of an image file."""
    try:
        with Image.open(path) as img:
            mode, fmt = img.mode, img.format or path.suffix.lstrip(".").upper()
    except Exception as exc:
        raise DataError(f"cannot open image {path}: {exc}; replace or remove the file") from exc
    kind = "gray" if mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F") else (
        "palette" if mode == "P" else "colour")
    return fmt, BITS_OF_MODE.get(mode, 8), kind


def pixel_signature(rgb: np.ndarray, side: int = 16) -> np.ndarray:
    """The gray image shrunk to ``side`` x ``side`` (box filter), zero mean, unit length: what near duplicates are
    compared by besides the embeddings (see :mod:`shopfloor.core.quality.duplicates`)."""
    gray = np.asarray(Image.fromarray(rgb).convert("L").resize((side, side), Image.BOX), dtype=np.float32).ravel()
    gray -= gray.mean()
    return gray / max(float(np.linalg.norm(gray)), 1e-9)


def pixel_facts(rgb: np.ndarray) -> dict[str, float]:
    """Sharpness and exposure of one 8-bit RGB image: variance of the Laplacian and mean/clipped fractions of the
    gray level, measured at :data:`STATS_SIDE` pixels, and whether the three channels differ (real colour)."""
    gray_img = Image.fromarray(rgb).convert("L").resize((STATS_SIDE, STATS_SIDE), Image.BILINEAR)
    gray = np.asarray(gray_img, dtype=np.float32)
    lap = (-4 * gray[1:-1, 1:-1] + gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:])
    channels_differ = float(np.abs(rgb[..., 0].astype(np.int16) - rgb[..., 1]).mean()
                            + np.abs(rgb[..., 1].astype(np.int16) - rgb[..., 2]).mean())
    return {"sharpness": float(lap.var()), "brightness": float(gray.mean()), "contrast": float(gray.std()),
            "dark_fraction": float((gray <= 3).mean()), "bright_fraction": float((gray >= 252).mean()),
            "colourfulness": channels_differ}


class PooledFeatures:
    """Average and max pooled last feature map of an EfficientNet-Lite (what the classifier's head is trained on)
    as a torch module for export: the pretrained backbone by default, or any fitted network with a ``features``
    method (a defect classifier's own)."""

    @staticmethod
    def pretrained(image_size: int) -> Any:
        import torch
        from torch import nn

        from .backbones import PixelNormalize, efficientnet_lite

        class Pooled(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.normalize = PixelNormalize()
                self.backbone = efficientnet_lite(BACKBONE, image_size, pretrained=True)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                fmap = self.backbone.extract_features(self.normalize(x))
                return torch.cat([fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))], dim=1)

        return Pooled().eval()

    @staticmethod
    def of(network: Any) -> Any:
        from torch import nn

        class Features(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.network = network

            def forward(self, x: Any) -> Any:
                return self.network.features(x)

        return Features().eval()


class BackboneEmbedder:
    """Pooled features of the pretrained EfficientNet-Lite0 (2 x 1280: average and max), or of a fitted network
    with a ``features`` method (``network``), through ONNX Runtime."""

    def __init__(self, image_size: int = 224, device: str = "cpu", network: Any = None):
        import torch

        from shopfloor.core.runtime import OnnxModel, export_onnx

        self.spec = ImageSpec(height=image_size, width=image_size)
        module = PooledFeatures.pretrained(image_size) if network is None else PooledFeatures.of(network)
        self.name = f"{BACKBONE}-{image_size}" if network is None else None  # a fitted model's: not cached
        example = torch.rand(1, 3, image_size, image_size) * 255
        self.runtime = OnnxModel(export_onnx(module, (example,), ["image"], ["features"]), device=device)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 NxHxWx3 frames -> float32 N x 2560 features."""
        return self.runtime.run(image=to_model_input(frames))["features"]


def read_image_facts(paths: Sequence[Path], image_size: int = 224, cache_dir: str | Path | None = None,
                     embed: bool = True, progress: bool = False, batch_size: int = 32, network: Any = None
                     ) -> tuple[np.ndarray | None, np.ndarray, ImageFacts]:
    """Decode every image once: embeddings (None without ``embed``), pixel signatures (:func:`pixel_signature`)
    and :class:`ImageFacts`. Unreadable images are listed together in one :class:`DataError`."""
    from tqdm.auto import tqdm

    spec = ImageSpec(height=image_size, width=image_size)
    facts = ImageFacts.empty(len(paths))
    embedder = BackboneEmbedder(image_size, network=network) if embed else None
    cache_dir = cache_dir if embedder is not None and embedder.name else None
    cache = read_embedding_cache(cache_dir, embedder.name) if cache_dir else {}
    vectors: list[np.ndarray | None] = [None] * len(paths)
    signatures = np.zeros((len(paths), 256), dtype=np.float32)
    bad: list[str] = []
    for sl in tqdm(list(batched(len(paths), batch_size)), desc="reading images", disable=not progress, leave=False):
        todo, frames = [], []
        for i in range(sl.start, sl.stop):
            path = Path(paths[i])
            try:
                digest = file_digest(path)
                fmt, bits, kind = header_facts(path)
                rgb = decode_rgb(path, spec, str(path))
                check_size(rgb.size, spec, str(path))
                pixels = np.asarray(rgb)
            except (DataError, OSError) as exc:
                bad.append(str(exc))
                continue
            values = pixel_facts(pixels)
            if kind == "colour" and values["colourfulness"] < 1.0:
                kind = "gray stored as colour"
            facts.set(i, digest=digest, pixel_hash=hashlib.sha1(pixels.tobytes()).hexdigest(),
                      size=f"{rgb.size[0]}x{rgb.size[1]}", bit_depth=f"{bits}-bit {fmt}", colour=kind, **values)
            signatures[i] = pixel_signature(pixels)
            if embedder is None:
                continue
            if digest in cache:
                vectors[i] = cache[digest]
            else:
                todo.append(i)
                frames.append(resize_array(rgb, spec))
        if todo:
            for i, vector in zip(todo, embedder(np.stack(frames))):
                vectors[i] = vector
                cache[facts.digest[i]] = vector
    if bad:
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(f"{len(bad)} of {len(paths)} image(s) could not be read:\n  " + "\n  ".join(bad[:10]) + more
                        + "\nReplace or remove them and run the check again")
    if embedder is None:
        return None, signatures, facts
    if cache_dir and embedder.name:
        write_embedding_cache(cache_dir, embedder.name, cache)
    return np.stack(vectors).astype(np.float32), signatures, facts


def thumbnail(path: str | Path, side: int = 160) -> np.ndarray:
    """A small 8-bit RGB picture of an image for the report (deep images by their own range)."""
    rgb = decode_rgb(Path(path), ImageSpec(height=side, width=side), str(path))
    rgb.thumbnail((side, side))
    return np.asarray(rgb)


def image_quality_data(data: Any, model: Any = None, image_size: int = 224, cache_dir: str | Path | None = None,
                       progress: bool = False) -> QualityData:
    """Everything the generic check needs about a class-folder data root (or a :class:`LabelledImages`). With a
    fitted ``model`` whose network has a ``features`` method (the EfficientNet defect classifiers), its own trained
    features at its input size are the embeddings; otherwise the pretrained backbone's at ``image_size``."""
    if isinstance(data, ImageItems):
        items = data
    elif hasattr(data, "paths") and hasattr(data, "labels") and hasattr(data, "classes"):
        items = ImageItems(list(data.paths), ["all"] * len(data.paths), np.asarray(data.labels), list(data.classes))
    else:
        items = scan_check_data(data)
    network, how = None, f"the ImageNet-pretrained {BACKBONE} at {image_size} px"
    if model is not None:
        if callable(getattr(model.torch_model, "features", None)):
            network, image_size = model.torch_model, model.image_spec.height
            how = f"the model's own trained {model.config.model} at {image_size} px"
        else:
            how += f" (the model's {model.config.model} has no pooled-feature layer to use)"
    embeddings, signatures, facts = read_image_facts(items.paths, image_size, cache_dir, progress=progress,
                                                     network=network)
    return QualityData(kind="image", names=[str(p) for p in items.paths], splits=items.splits, labels=items.labels,
                       classes=items.classes, embeddings=embeddings, signatures=signatures, image_facts=facts,
                       picture=thumbnail, notes=[f"embeddings: pooled features of {how}"])


def image_labelling_candidates(task: Any, pool: Any, image_size: int = 224, cache_dir: str | Path | None = None,
                               progress: bool = False) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, class probabilities of the deployed graph, pretrained-backbone embeddings) of the pool's images."""
    paths = pool_images(pool)
    rows = task.predict(paths)
    probs = np.asarray([[row["probabilities"][c] for c in task.classes] for row in rows], dtype=np.float64)
    embeddings, _, _ = read_image_facts(paths, image_size, cache_dir, progress=progress)
    return [str(p) for p in paths], probs, embeddings


def add_image_labels(dataset: Any, labels: Sequence[Any]) -> Any:
    """``dataset`` (a :class:`LabelledImages`) with the labelled images folded in. A label must be one of the
    data's classes; an image already in the data takes the new label (a correction), with a warning."""
    import warnings

    index = {Path(p).resolve(): i for i, p in enumerate(dataset.paths)}
    unknown = sorted({row.label for row in labels if row.label not in dataset.classes})
    if unknown:
        raise DataError(f"labels {unknown} are not classes of the data ({', '.join(dataset.classes)}); fix the "
                        "spelling in the CSV, or create a folder per new class under the data root first")
    paths, targets = list(dataset.paths), list(dataset.labels)
    corrected = []
    for row in labels:
        k = dataset.classes.index(row.label)
        i = index.get(Path(row.path).resolve())
        if i is None:
            paths.append(Path(row.path))
            targets.append(k)
        elif targets[i] != k:
            corrected.append(f"{row.path}: {dataset.classes[targets[i]]} -> {row.label}")
            targets[i] = k
    if corrected:
        warnings.warn(f"{len(corrected)} image(s) of the data were relabelled by the CSV: " + "; ".join(corrected[:5])
                      + (" ..." if len(corrected) > 5 else ""), UserWarning, stacklevel=2)
    root = dataset.root
    if root is not None and any(not Path(p).resolve().is_relative_to(Path(root).resolve()) for p in paths):
        root = None  # items from outside the data root: the data fingerprint goes by file names and contents
    return type(dataset)(paths, targets, list(dataset.classes), root)


def pool_images(pool: str | Path | Sequence[Any]) -> list[Path]:
    """The image files of an unlabelled pool: a folder (searched recursively), files, or folders."""
    if isinstance(pool, (str, Path)) and Path(pool).is_dir():
        root = Path(pool)
        paths = list_images(root) + [p for d in sorted(root.rglob("*")) if d.is_dir() for p in list_images(d)]
    else:
        paths = [Path(p) for p in expand_image_inputs(pool) if isinstance(p, (str, Path))]
    if not paths:
        raise DataError(f"the pool {pool} holds no images ({', '.join(sorted({'.png', '.jpg', '.bmp', '.tif'}))}); "
                        "pass the folder of unlabelled images")
    return paths

"""Seeded procedural surface images with scratches, spots and cracks, for demos and tests.

``make_defect_classes`` writes a classification folder (one sub-folder per class);
``make_anomaly_dataset`` writes an MVTec-AD layout with good-only training images and
defects with masks in the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

DEFECT_KINDS = ("scratch", "spot", "crack")


def surface_texture(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """A brushed-metal-like grayscale texture, float in 0..255."""
    noise = rng.normal(0, 1, (size, size))
    grain = gaussian_filter(noise, sigma=(0.6, rng.uniform(4, 10)))
    blotch = gaussian_filter(rng.normal(0, 1, (size, size)), sigma=size / 8)
    img = 128 + rng.uniform(-20, 20) + 18 * grain / (grain.std() + 1e-6) + 10 * blotch / (blotch.std() + 1e-6)
    return np.clip(img, 0, 255)


def _mask_canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.new("L", (size, size), 0)
    return canvas, ImageDraw.Draw(canvas)


def scratch_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A long thin straight-ish line."""
    canvas, draw = _mask_canvas(size)
    x0, y0 = rng.uniform(0.1, 0.9, 2) * size
    angle = rng.uniform(0, np.pi)
    length = rng.uniform(0.35, 0.7) * size
    x1, y1 = x0 + np.cos(angle) * length, y0 + np.sin(angle) * length
    draw.line([(x0, y0), (x1, y1)], fill=255, width=max(1, int(size / 64)))
    return np.asarray(canvas) > 0


def spot_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """One to three round blobs."""
    canvas, draw = _mask_canvas(size)
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        r = rng.uniform(0.03, 0.08) * size
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    return np.asarray(canvas) > 0


def crack_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A jagged random-walk polyline."""
    canvas, draw = _mask_canvas(size)
    x, y = rng.uniform(0.2, 0.8, 2) * size
    heading = rng.uniform(0, 2 * np.pi)
    points = [(x, y)]
    for _ in range(rng.integers(8, 14)):
        heading += rng.normal(0, 0.7)
        step = size * rng.uniform(0.03, 0.06)
        x, y = np.clip(x + np.cos(heading) * step, 0, size - 1), np.clip(y + np.sin(heading) * step, 0, size - 1)
        points.append((x, y))
    draw.line(points, fill=255, width=max(1, int(size / 90)))
    return np.asarray(canvas) > 0


MASK_MAKERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "scratch": scratch_mask, "spot": spot_mask, "crack": crack_mask,
}
_DEFECT_SHIFT = {"scratch": 70.0, "spot": -60.0, "crack": -80.0}


def render_defect(img: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paint a defect of ``kind`` onto ``img``; returns (uint8 image, boolean mask)."""
    mask = MASK_MAKERS[kind](rng, img.shape[0])
    soft = gaussian_filter(mask.astype(float), 0.8)
    out = img + _DEFECT_SHIFT[kind] * rng.uniform(0.7, 1.0) * soft / max(soft.max(), 1e-6)
    return np.clip(out, 0, 255).astype(np.uint8), mask


def _save(arr: np.ndarray, path: Path, rgb: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    (img.convert("RGB") if rgb else img).save(path)


def make_defect_classes(root: str | Path, n_per_class: int = 60, size: int = 128, seed: int = 0,
                        include_good: bool = True) -> Path:
    """Write ``root/<class>/<class>_NNN.png`` for classes good (optional), scratch, spot, crack."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    classes = (("good",) if include_good else ()) + DEFECT_KINDS
    for cls in classes:
        for i in range(n_per_class):
            base = surface_texture(rng, size)
            img = base.astype(np.uint8) if cls == "good" else render_defect(base, cls, rng)[0]
            _save(img, root / cls / f"{cls}_{i:03d}.png", rgb=bool(i % 2))
    return root


def make_anomaly_dataset(root: str | Path, n_train: int = 40, n_test_good: int = 10, n_test_per_defect: int = 8,
                         size: int = 128, seed: int = 0) -> Path:
    """Write an MVTec-AD layout: train/good, test/good, test/<kind>, ground_truth/<kind>/<stem>_mask.png."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for i in range(n_train):
        _save(surface_texture(rng, size).astype(np.uint8), root / "train" / "good" / f"{i:03d}.png", rgb=False)
    for i in range(n_test_good):
        _save(surface_texture(rng, size).astype(np.uint8), root / "test" / "good" / f"{i:03d}.png", rgb=False)
    for kind in DEFECT_KINDS:
        for i in range(n_test_per_defect):
            img, mask = render_defect(surface_texture(rng, size), kind, rng)
            _save(img, root / "test" / kind / f"{i:03d}.png", rgb=False)
            _save((mask * 255).astype(np.uint8), root / "ground_truth" / kind / f"{i:03d}_mask.png", rgb=False)
    return root

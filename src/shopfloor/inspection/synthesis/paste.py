"""Synthetic defects pasted on good parts, with their masks: defective validation images where no real defect
exists yet (to check or set an anomaly model's threshold).

A defect is a random blob (a union of a few ellipses, feathered at its edge) filled with a texture patch (for
example a defect-synthesis sample) whose contrast is matched to the part: the patch's deviation from its own mean is
scaled to ``contrast`` times the part's local standard deviation (at least ``min_contrast`` grey levels) and added
to the part under the blob. Kept simple on purpose: no lighting or geometry model, so what it validates is "a
textured blob of this size and contrast is flagged", not every real defect.

>>> rng = np.random.default_rng(0)
>>> good = np.full((2, 64, 64, 3), 128, np.uint8)
>>> images, masks = paste_defects(good, np.random.default_rng(1).integers(0, 255, (4, 32, 32)), rng)
>>> images.shape, masks.shape, bool(masks.any(axis=(1, 2)).all()), bool((images[~masks] == 128).all())
((2, 64, 64, 3), (2, 64, 64), True, True)
"""

from __future__ import annotations

import numpy as np

from shopfloor.core.errors import DataError


def blob_mask(height: int, width: int, size: float, rng: np.random.Generator, parts: int = 3) -> np.ndarray:
    """Soft mask (float 0..1, H x W) of a blob about ``size`` x the shorter side across: ``parts`` random
    ellipses near one centre, with a one-pixel feathered edge."""
    side = min(height, width)
    radius = max(size * side / 2, 2.0)
    cy = rng.uniform(radius, height - radius)
    cx = rng.uniform(radius, width - radius)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    inside = np.full((height, width), -np.inf, np.float32)
    for _ in range(parts):
        oy, ox = rng.normal(0, radius / 3, 2)
        ry, rx = radius * rng.uniform(0.3, 1.0, 2)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy - oy, xx - cx - ox
        u = (dy * np.cos(angle) + dx * np.sin(angle)) / ry
        v = (-dy * np.sin(angle) + dx * np.cos(angle)) / rx
        # signed distance-like value in pixels: > 0 inside the ellipse
        inside = np.maximum(inside, (1.0 - np.sqrt(u * u + v * v)) * min(ry, rx))
    return np.clip(inside + 0.5, 0.0, 1.0)


def paste_defects(images: np.ndarray, textures: np.ndarray, rng: np.random.Generator,
                  size: tuple[float, float] = (0.05, 0.2), contrast: float = 3.0,
                  min_contrast: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Paste one synthetic defect on each of ``images`` (uint8 N x H x W x 3): a blob mask (:func:`blob_mask`,
    size drawn from ``size`` as a share of the shorter side) filled with a random one of ``textures`` (N_t x h x w
    gray, any range; resized to the blob's box). Returns (uint8 images, bool masks N x H x W: every pixel the blob
    touched)."""
    from PIL import Image

    images = np.asarray(images)
    textures = np.asarray(textures, np.float32)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise DataError(f"paste_defects needs uint8 images N x H x W x 3, got {images.dtype} {images.shape}")
    if textures.ndim != 3 or not len(textures):
        raise DataError(f"paste_defects needs gray textures N x h x w, got shape {textures.shape}")
    out = images.astype(np.float32)
    masks = np.zeros(images.shape[:3], bool)
    for i in range(len(images)):
        h, w = images.shape[1:3]
        soft = blob_mask(h, w, rng.uniform(*size), rng)
        ys, xs = np.nonzero(soft > 0)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        patch = textures[rng.integers(len(textures))]
        patch = np.asarray(Image.fromarray(patch).resize((x1 - x0, y1 - y0), Image.BILINEAR), np.float32)
        patch = (patch - patch.mean()) / max(float(patch.std()), 1e-6)
        region = out[i, y0:y1, x0:x1]
        scale = max(contrast * float(region.std()), min_contrast)
        alpha = soft[y0:y1, x0:x1, None]
        out[i, y0:y1, x0:x1] = region + alpha * scale * patch[..., None]
        masks[i] = soft > 0
    return np.clip(np.round(out), 0, 255).astype(np.uint8), masks

"""Pseudo-anomalies painted on good images, with their masks: the validation data of the auto-configuration.

No defective image is needed: each generator takes a good ``[H, W, 3]`` uint8 image at its own (original)
resolution and returns a changed copy and the boolean mask of the changed pixels. Defects are sized relative
to the image's shorter side from ``min_size`` (the smallest defect worth finding, a share of that side) up to
a few times it, so a 640 px board gets defects of a few pixels and a small patch does not.

Kinds (:data:`PSEUDO_KINDS`):

- ``scar``: CutPaste-scar, a thin rotated strip cut from elsewhere in the same image and pasted with a small
  brightness change (Li et al., CutPaste, CVPR 2021);
- ``texture``: a Perlin-noise region filled with a foreign texture, a shifted and contrast-changed copy of the
  image (DRAEM, Zavrtanik et al., ICCV 2021);
- ``crack``: a thin jagged polyline towards the image's darkest or brightest tone;
- ``blob``: a small ellipse in the image's opposite extreme tone (a spot of copper where none belongs, a
  pin-hole in a track).

>>> img = np.full((64, 96, 3), 128, np.uint8)
>>> out, mask = pseudo_anomaly(img, np.random.default_rng(0), kind="blob")
>>> out.shape, mask.shape, mask.dtype, bool(mask.any())
((64, 96, 3), (64, 96), dtype('bool'), True)
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from shopfloor.core.errors import DataError

PSEUDO_KINDS = ("scar", "texture", "crack", "blob")
MAX_TRIES = 6
MIN_CHANGE = 8  # gray levels: a pixel changed less than this is not part of the pseudo-defect


def perlin_noise(shape: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    """2-D gradient (Perlin) noise of ``shape`` with about ``cells`` lattice cells along the shorter side."""
    h, w = shape
    cy = max(1, int(round(cells * h / min(h, w))))
    cx = max(1, int(round(cells * w / min(h, w))))
    angles = rng.uniform(0, 2 * np.pi, (cy + 1, cx + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    ys, xs = np.linspace(0, cy, h, endpoint=False), np.linspace(0, cx, w, endpoint=False)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]

    def dot(dy: int, dx: int) -> np.ndarray:
        g = grads[(y0 + dy)[:, None], (x0 + dx)[None, :]]
        return g[..., 0] * (fx - dx) + g[..., 1] * (fy - dy)

    def fade(t: np.ndarray) -> np.ndarray:
        return t * t * t * (t * (t * 6 - 15) + 10)

    u, v = fade(fx), fade(fy)
    top = dot(0, 0) * (1 - u) + dot(0, 1) * u
    bottom = dot(1, 0) * (1 - u) + dot(1, 1) * u
    return top * (1 - v) + bottom * v


def _centre(rng: np.random.Generator, h: int, w: int, margin: float) -> tuple[float, float]:
    return rng.uniform(margin, max(margin + 1, w - margin)), rng.uniform(margin, max(margin + 1, h - margin))


def _tones(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image's dark and bright tones (2nd and 98th percentile per channel)."""
    flat = img.reshape(-1, 3).astype(np.float32)
    return np.percentile(flat, 2, axis=0), np.percentile(flat, 98, axis=0)


def _scar(img: np.ndarray, rng: np.random.Generator, size: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    length, width = size * rng.uniform(1.5, 3.0), max(2.0, size * rng.uniform(0.25, 0.5))
    angle = rng.uniform(0, 180)
    canvas = Image.new("L", (w, h), 0)
    cx, cy = _centre(rng, h, w, length / 2)
    dx, dy = np.cos(np.radians(angle)) * length / 2, np.sin(np.radians(angle)) * length / 2
    ImageDraw.Draw(canvas).line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=int(round(width)))
    mask = np.asarray(canvas) > 0
    sy, sx = int(rng.integers(-h // 2, h // 2 + 1)), int(rng.integers(-w // 2, w // 2 + 1))
    source = np.roll(img, (sy, sx), axis=(0, 1)).astype(np.float32) * rng.uniform(0.8, 1.2)
    out = img.astype(np.float32)
    out[mask] = source[mask]
    return np.clip(out, 0, 255).astype(np.uint8), mask


def _texture(img: np.ndarray, rng: np.random.Generator, size: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    side = int(min(h, w, max(8, round(size * rng.uniform(1.5, 3.0)))))
    noise = perlin_noise((side, side), cells=int(rng.integers(2, 5)), rng=rng)
    region = noise > np.quantile(noise, rng.uniform(0.4, 0.7))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    mask = np.zeros((h, w), bool)
    mask[top:top + side, left:left + side] = region
    foreign = np.roll(img[::-1, ::-1], (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1)).astype(np.float32)
    foreign = (foreign - foreign.mean()) * rng.uniform(1.3, 2.0) + foreign.mean() + rng.uniform(-40, 40)
    beta = rng.uniform(0.1, 0.5)  # share of the original kept under the foreign texture
    out = img.astype(np.float32)
    out[mask] = beta * out[mask] + (1 - beta) * foreign[mask]
    return np.clip(out, 0, 255).astype(np.uint8), mask


def _crack(img: np.ndarray, rng: np.random.Generator, size: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    canvas = Image.new("L", (w, h), 0)
    x, y = _centre(rng, h, w, size)
    heading, step = rng.uniform(0, 2 * np.pi), max(2.0, size / 2)
    points = [(x, y)]
    for _ in range(int(rng.integers(4, 9))):
        heading += rng.normal(0, 0.5)
        x = float(np.clip(x + np.cos(heading) * step, 0, w - 1))
        y = float(np.clip(y + np.sin(heading) * step, 0, h - 1))
        points.append((x, y))
    ImageDraw.Draw(canvas).line(points, fill=255, width=max(2, int(round(size * 0.2))))
    mask = np.asarray(canvas) > 0
    dark, bright = _tones(img)
    tone = dark if img[mask].mean() > (dark.mean() + bright.mean()) / 2 else bright
    out = img.copy()
    out[mask] = tone.astype(np.uint8)
    return out, mask


def _blob(img: np.ndarray, rng: np.random.Generator, size: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    ry, rx = size * rng.uniform(0.3, 0.6, 2)
    cx, cy = _centre(rng, h, w, max(ry, rx) + 1)
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    mask = np.asarray(canvas) > 0
    if not mask.any():
        mask[int(cy), int(cx)] = True
    dark, bright = _tones(img)
    tone = dark if img[mask].mean() > (dark.mean() + bright.mean()) / 2 else bright
    out = img.copy()
    out[mask] = tone.astype(np.uint8)
    return out, mask


_GENERATORS = {"scar": _scar, "texture": _texture, "crack": _crack, "blob": _blob}


def pseudo_anomaly(image: np.ndarray, rng: np.random.Generator, kind: str | None = None,
                   min_size: float = 0.02, max_size: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """A pseudo-anomalous copy of a good ``[H, W, 3]`` uint8 image and its boolean ``[H, W]`` mask.

    ``kind``: one of :data:`PSEUDO_KINDS` (random when None). The defect's characteristic size is drawn
    log-uniformly between ``min_size`` and ``max_size`` times the shorter side (at least 3 pixels)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"pseudo_anomaly needs an [H, W, 3] uint8 image, got {image.shape} {image.dtype}; decode it "
                        "with shopfloor.inspection.images.decode_rgb first")
    if kind is None:
        kind = PSEUDO_KINDS[int(rng.integers(len(PSEUDO_KINDS)))]
    if kind not in _GENERATORS:
        raise DataError(f"unknown pseudo-anomaly kind {kind!r}; expected one of {', '.join(PSEUDO_KINDS)}")
    if not 0 < min_size <= max_size:
        raise DataError(f"pseudo-anomaly sizes must satisfy 0 < min_size <= max_size, got {min_size}, {max_size}")
    short = min(image.shape[:2])
    for _ in range(MAX_TRIES):
        size = max(3.0, short * float(np.exp(rng.uniform(np.log(min_size), np.log(max_size)))))
        out, mask = _GENERATORS[kind](image, rng, size)
        # the mask is what really changed: a scar pasted from plain background onto plain background is no defect
        changed = mask & (np.abs(out.astype(np.int16) - image).max(axis=2) > MIN_CHANGE)
        if changed.sum() >= max(1, 0.3 * mask.sum()):
            return out, changed
    if not mask.any():  # a degenerate draw (tiny image): one pixel, so every pseudo-anomaly has a region
        mask = np.zeros(mask.shape, bool)
        mask[image.shape[0] // 2, image.shape[1] // 2] = True
    out = image.copy()
    out[mask] = np.where(out[mask] < 128, 255, 0)  # a flat image: the region to the opposite extreme
    return out, mask


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A boolean mask resized to ``height`` x ``width`` by area: a pixel is defective when defects cover at least a
    quarter of it, so thin defects survive downscaling."""
    if mask.shape == (height, width):
        return mask.copy()
    area = Image.fromarray(mask.astype(np.float32), mode="F").resize((width, height), Image.BOX)
    return np.asarray(area) >= 0.25

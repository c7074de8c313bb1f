"""A bounded sample of anomaly-map pixels, gathered batch by batch while calibrating.

The pixel threshold and scale are set from the held-out (or cross-fitted) good images' maps and, for the F1 rule,
the validation images' maps with their masks. Holding every map grows with the number of images (256 KB per image
at 256 px); :class:`MapSample` keeps all pixels while they fit under ``cap`` values and otherwise the same number of
random pixels from each image, so fitting stays flat in memory.
"""

from __future__ import annotations

import numpy as np

MAP_SAMPLE_CAP = 4_000_000  # pixel values kept for calibration (16 MB of float32, and as many mask flags)


class MapSample:
    """Pixels of the maps of ``n_images`` images of ``pixels_per_image`` each: all of them when
    ``n_images * pixels_per_image <= cap``, else ``cap // n_images`` random ones per image (seeded)."""

    def __init__(self, n_images: int, pixels_per_image: int, cap: int = MAP_SAMPLE_CAP, seed: int = 0):
        self.pixels_per_image = int(pixels_per_image)
        self.quota = min(self.pixels_per_image, max(1, cap // max(1, n_images)))
        self.rng = np.random.default_rng(seed)
        self._values: list[np.ndarray] = []
        self._truth: list[np.ndarray] = []

    @property
    def exact(self) -> bool:
        return self.quota == self.pixels_per_image

    def add(self, maps: np.ndarray, masks: np.ndarray | None = None) -> None:
        """Add a batch of maps ``[B, H, W]`` (and their boolean masks; None: all good)."""
        flat = np.asarray(maps, dtype=np.float32).reshape(len(maps), -1)
        truth = np.zeros(flat.shape, bool) if masks is None else np.asarray(masks, bool).reshape(len(maps), -1)
        if not self.exact:
            pick = np.stack([self.rng.choice(flat.shape[1], self.quota, replace=False) for _ in range(len(flat))])
            flat, truth = np.take_along_axis(flat, pick, 1), np.take_along_axis(truth, pick, 1)
        self._values.append(flat.ravel())
        self._truth.append(truth.ravel())

    @property
    def values(self) -> np.ndarray:
        return np.concatenate(self._values) if self._values else np.zeros(0, np.float32)

    @property
    def truth(self) -> np.ndarray:
        return np.concatenate(self._truth) if self._truth else np.zeros(0, bool)

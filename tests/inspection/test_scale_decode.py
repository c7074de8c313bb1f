"""The faster per-image intensity statistics give the figures of the float reference (decode path unchanged)."""

import numpy as np
import pytest

from shopfloor.inspection.images import ImageSpec, decode_frame, gray_intensity


def _reference(content: np.ndarray) -> tuple[float, float]:
    gray = content.astype(np.float64).mean(axis=2) if content.ndim == 3 else content.astype(np.float64)
    return float(gray.mean()), float(gray.std())


@pytest.mark.parametrize("shape", [(256, 256, 3), (64, 80, 3), (33, 17), (10, 10, 1), (5, 7, 4), (1, 1, 3)])
def test_gray_intensity_matches_the_float64_reference(shape):
    content = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    assert gray_intensity(content) == pytest.approx(_reference(content), rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("value", [0, 255])
def test_gray_intensity_of_flat_images_has_zero_spread(value):
    content = np.full((40, 30, 3), value, np.uint8)
    assert gray_intensity(content) == (float(value), 0.0)


def test_frame_info_carries_the_content_statistics(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (48, 96, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    spec = ImageSpec(height=64, width=64, keep_aspect=True)  # letterboxed: padding left out of the statistics
    frame, info = decode_frame(tmp_path / "a.png", spec)
    top, bottom = 16, 48  # 96x48 -> 64x32 content in the middle of the 64x64 frame
    assert info.intensity == pytest.approx(_reference(frame[top:bottom]), rel=1e-12)

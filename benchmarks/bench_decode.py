"""Decode + resize: our one shared path (Pillow, ``read_image``) against OpenCV, per file format.

On NEU (JPEG, 200 px) and MPDD (PNG, 512 px) images, plus the MPDD images re-encoded losslessly as BMP and TIFF:
single-thread CPU milliseconds per image (this process only, so other jobs do not inflate it) of

- ``pillow``: ``read_image(path, ImageSpec(256, 256))``, the path every model uses;
- ``opencv``: ``cv2.imread`` + BGR->RGB + ``cv2.resize`` (INTER_LINEAR, and INTER_AREA);
- ``opencv_decode_pillow_resize``: OpenCV's decoder with Pillow's resize (what a swap of the decoder alone gives);

and how far each OpenCV variant's pixels are from ours (max and mean |difference| in 0..255 levels). We switch only
if a variant is faster AND gives the same pixels. Writes benchmarks/results/decode.json.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_ms_per_item, require_dataset, write_result  # noqa: E402

N_PER_FORMAT = 40


def _sources(tmp: Path) -> dict[str, list[Path]]:
    from PIL import Image

    neu = sorted((require_dataset("neu_surface_defects") / "images").rglob("*.jpg"))[::45][:N_PER_FORMAT]
    mpdd = sorted(require_dataset("mpdd_metal_plate").rglob("*.png"))
    mpdd = [p for p in mpdd if "ground_truth" not in p.parts][:N_PER_FORMAT]
    out = {"jpeg (NEU 200 px)": neu, "png (MPDD 512 px)": mpdd, "bmp (MPDD 512 px)": [], "tiff (MPDD 512 px)": []}
    for i, p in enumerate(mpdd):
        img = Image.open(p).convert("RGB")
        for fmt, key in (("BMP", "bmp (MPDD 512 px)"), ("TIFF", "tiff (MPDD 512 px)")):
            path = tmp / f"{i:03d}.{fmt.lower()}"
            img.save(path, fmt)
            out[key].append(path)
    return out


def main() -> None:
    import cv2
    import numpy as np
    from PIL import Image

    from shopfloor.inspection.images import ImageSpec, read_image

    cv2.setNumThreads(1)
    spec = ImageSpec(height=256, width=256)
    size = (spec.width, spec.height)

    def pillow(p: Path) -> np.ndarray:
        return read_image(p, spec)

    def opencv(p: Path, interpolation: int) -> np.ndarray:
        return cv2.resize(cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), size,
                          interpolation=interpolation)

    def hybrid(p: Path) -> np.ndarray:
        rgb = cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))

    variants = {"pillow": pillow, "opencv_linear": lambda p: opencv(p, cv2.INTER_LINEAR),
                "opencv_area": lambda p: opencv(p, cv2.INTER_AREA), "opencv_decode_pillow_resize": hybrid}
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, paths in _sources(Path(tmp)).items():
            ours = [pillow(p) for p in paths]
            row: dict[str, dict] = {}
            for name, fn in variants.items():
                ms = cpu_ms_per_item(lambda: [fn(p) for p in paths], len(paths))
                diffs = [np.abs(fn(p).astype(int) - ref.astype(int)) for p, ref in zip(paths, ours)]
                row[name] = {"cpu_ms_per_image": round(ms, 3), "max_abs_diff": int(max(d.max() for d in diffs)),
                             "mean_abs_diff": round(float(np.mean([d.mean() for d in diffs])), 4)}
            for name in variants:
                row[name]["speed_vs_pillow"] = round(row["pillow"]["cpu_ms_per_image"] / row[name]["cpu_ms_per_image"],
                                                     2)
            figures[fmt] = row
            print(fmt, {k: (v["cpu_ms_per_image"], v["speed_vs_pillow"], v["max_abs_diff"]) for k, v in row.items()})
    write_result("decode", {"n_per_format": N_PER_FORMAT, "frame": list(size), "formats": figures,
                            "versions_decode": {"pillow": Image.__version__, "opencv": cv2.__version__}})


if __name__ == "__main__":
    main()

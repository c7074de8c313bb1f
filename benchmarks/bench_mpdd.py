"""Anomaly detection on MPDD metal_plate (MVTec AD layout): PatchCore-style and PaDiM-style.

Per model, in a fresh subprocess (so peak RSS is the model's own): fit time, peak RSS, image AUROC,
pixel AUROC, AUPRO (to 30 % FPR), and end-to-end images/s (decode + resize + ONNX Runtime score and
map) at batch 1 and 16. Because the CPU is shared, the same run also measures the backbone alone in
ONNX Runtime and a 2048x2048 matmul, so the throughput can be read as a ratio.

Writes benchmarks/results/mpdd.json. Dataset root: $SHOPFLOOR_DATASETS (default <repo>/../shared/datasets).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("SHOPFLOOR_DATASETS", REPO.parent / "shared" / "datasets"))
ROOT = DATASETS / "mpdd_metal_plate"
RESULTS = REPO / "benchmarks" / "results" / "mpdd.json"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def images_per_second(task, paths, batch_size: int, repeats: int = 1) -> float:
    """End to end: read (decode + resize) and score + map through ONNX Runtime."""
    from shopfloor.data.images import read_images

    spec = task.image_spec
    task._run(read_images(paths[:batch_size], spec))  # warm-up
    start = time.perf_counter()
    n = 0
    for _ in range(repeats):
        for i in range(0, len(paths) - batch_size + 1, batch_size):
            task._run(read_images(paths[i:i + batch_size], spec))
            n += batch_size
    return n / (time.perf_counter() - start)


def backbone_images_per_second(task, batch_size: int = 16, repeats: int = 4) -> float:
    """The feature extractor alone in ONNX Runtime on preloaded input (the reference for the ratio)."""
    import numpy as np
    import torch

    from shopfloor.runtime import OnnxModel, export_onnx

    spec = task.image_spec
    onnx = export_onnx(task.torch_model.extractor, (torch.zeros(1, 3, spec.height, spec.width),), ["images"],
                       ["features"])
    session = OnnxModel(onnx, device="cpu")
    x = np.random.default_rng(0).uniform(0, 255, (batch_size, 3, spec.height, spec.width)).astype(np.float32)
    session.run(images=x)
    start = time.perf_counter()
    for _ in range(repeats):
        session.run(images=x)
    return repeats * batch_size / (time.perf_counter() - start)


def matmul_gflops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9


def run_one(model: str, out: Path) -> None:
    """Fit, evaluate and time one model; write its figures as JSON to ``out``."""
    from shopfloor.data.mvtec import read_anomaly_data
    from shopfloor.tasks.anomaly_detection import AnomalyDetection

    base_rss = peak_rss_mb()
    task = AnomalyDetection(model=model, training={"progress": False})
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        task.fit(ROOT, out_dir=tmp)
    fit_s = time.perf_counter() - start
    fit_rss = peak_rss_mb()
    metrics = task.evaluate(ROOT)
    paths = [s.path for s in read_anomaly_data(ROOT, need="test").test]
    figures = {
        "model": model,
        "image_auroc": metrics["image_auroc"], "image_ap": metrics["image_ap"], "image_f1": metrics["image_f1"],
        "pixel_auroc": metrics["pixel_auroc"], "aupro": metrics["aupro"], "pixel_f1": metrics["pixel_f1"],
        "false_alarm_rate": metrics["false_alarm_rate"], "miss_rate": metrics["miss_rate"],
        "n_test": metrics["n_test"], "fit_seconds": round(fit_s, 2), "peak_rss_mb_after_fit": round(fit_rss, 1),
        "rss_mb_before_fit": round(base_rss, 1), "threshold_rule": task.state["threshold_rule"],
        "bank_size": task.state.get("bank_size"), "image_size": task.config.image_size,
        "images_per_second_batch1": images_per_second(task, paths, 1),
        "images_per_second_batch16": images_per_second(task, paths, 16, repeats=2),
        "backbone_only_images_per_second_batch16": backbone_images_per_second(task),
        "matmul_gflops_same_run": matmul_gflops(),
    }
    figures["end_to_end_vs_backbone_only_batch16"] = (figures["images_per_second_batch16"]
                                                      / figures["backbone_only_images_per_second_batch16"])
    out.write_text(json.dumps(figures, indent=2))


def main() -> None:
    if not ROOT.exists():
        print(f"skipped: {ROOT} not found (set SHOPFLOOR_DATASETS)")
        return
    import numpy
    import onnxruntime
    import torch

    results = {}
    for model in ("patchcore", "padim"):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
            tmp = Path(fh.name)
        subprocess.run([sys.executable, __file__, "--one", model, str(tmp)], check=True)
        results[model] = json.loads(tmp.read_text())
        tmp.unlink()
        print(json.dumps(results[model], indent=2))
    doc = {
        "benchmark": "MPDD metal_plate anomaly detection (train/good only; test good + defect with masks)",
        "dataset": str(ROOT), "results": results,
        "targets": {"image_auroc": 1.0, "pixel_auroc": 0.99, "aupro": 0.93, "fit_seconds": 30,
                    "images_per_second_batch16": 50},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
                    "load_average_at_end": os.getloadavg()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": "the CPU is shared with other jobs while this runs: read throughput against the backbone-only "
                "and matmul figures measured in the same run",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        run_one(sys.argv[2], Path(sys.argv[3]))
    else:
        main()

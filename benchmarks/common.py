"""Helpers shared by the benchmark scripts: dataset location, machine description, result writing."""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def datasets_dir() -> Path:
    """$SHOPFLOOR_DATASETS or ../shared/datasets beside the repository."""
    return Path(os.environ.get("SHOPFLOOR_DATASETS", ROOT.parent / "shared" / "datasets"))


def require_dataset(name: str) -> Path:
    """Path of a shared dataset, or exit 0 with a clear message when it is absent."""
    path = datasets_dir() / name
    if not path.exists():
        print(f"SKIP: dataset {name} not found at {path} (set SHOPFLOOR_DATASETS)")
        raise SystemExit(0)
    return path


def matmul_gflops(n: int = 2048, repeats: int = 3) -> float:
    """Best fp32 GFLOP/s of an n x n matmul right now: tells how much of the CPU this run really had."""
    import torch

    a, b = torch.rand(n, n), torch.rand(n, n)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def machine() -> dict[str, Any]:
    import torch

    from shopfloor.core.artifact import library_versions

    return {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(),
            "matmul_gflops_at_end": round(matmul_gflops(), 1), "versions": library_versions()}


def write_result(name: str, figures: dict[str, Any]) -> Path:
    """benchmarks/results/<name>.json with the figures, machine and date."""
    from shopfloor.core.task import to_jsonable

    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), **figures}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(to_jsonable(payload), indent=2))
    print(f"wrote {path}")
    return path


def throughput(fn: Callable[[], Any], items_per_call: int, min_seconds: float = 3.0, warmup: int = 2) -> float:
    """Items per second of ``fn`` (called repeatedly for at least ``min_seconds`` after warm-up)."""
    for _ in range(warmup):
        fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return calls * items_per_call / (time.perf_counter() - start)


def cpu_ms_per_item(fn: Callable[[], Any], items_per_call: int, repeats: int = 3) -> float:
    """Best CPU milliseconds (this process only) per item of ``fn``: far less sensitive to other jobs than
    wall time. Run the work on one thread so CPU time equals the work done."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, (time.process_time() - start) / items_per_call * 1000)
    return best


def fit_evaluate_classification(train: Any, test: Any, work_name: str, config: dict[str, Any] | None = None
                                ) -> tuple[Any, dict[str, Any], dict[str, float]]:
    """Fit ``DefectClassification`` with its defaults (seed 0; ``config`` overrides, e.g. ``{"auto": False}``) on
    ``train``, evaluate on ``test``.

    Both are :class:`LabelledImages`. The model and report go to ``benchmarks/work/<work_name>_{model,report}``.
    Returns (task, evaluate's metrics, {"train_seconds", "train_cpu_seconds"})."""
    from shopfloor.inspection.classification.task import DefectClassification

    work = ROOT / "benchmarks" / "work"
    task = DefectClassification({**(config or {}), "training": {"seed": 0, **(config or {}).get("training", {})}})
    start, cpu_start = time.perf_counter(), time.process_time()
    task.fit(train, out_dir=work / f"{work_name}_model")
    timing = {"train_seconds": time.perf_counter() - start, "train_cpu_seconds": time.process_time() - cpu_start}
    metrics = task.evaluate(test, report_dir=work / f"{work_name}_report")
    return task, metrics, timing

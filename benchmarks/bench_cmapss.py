"""NASA C-MAPSS FD001 and FD002, standard protocol: window 30, RUL cap 125, last window of each test unit.

Trains the default rul model (deep ensemble of 1D CNNs; each member holds out its own 20% block of the training
units for early stopping, and the interval is calibrated on those blocks) for 3 seeds per subset, scores the test units through the ONNX runtime,
and records RMSE, MAE and NASA score against true test RUL capped at 125 (the common protocol) and as given,
the prediction-interval coverage, and the training time, as mean ± std over the seeds, in
benchmarks/results/cmapss.json. Everything else is the task's defaults: FD002 test units shorter than the window
are padded with their first reading (the default at evaluate time; their interval is widened and noted).

Usage: python benchmarks/bench_cmapss.py [--subsets FD001,FD002] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import require_dataset, write_result  # noqa: E402

from shopfloor.maintenance.rul.task import RemainingUsefulLife  # noqa: E402

TARGETS = {"FD001": {"rmse": 11.5, "nasa_score": 230.0}, "FD002": {"rmse": 12.5, "nasa_score": 850.0}}
FIGURES = ["rmse", "mae", "nasa_score", "rmse_raw", "mae_raw", "nasa_score_raw", "interval_coverage",
           "interval_coverage_raw", "interval_width", "rmse_single_window", "nasa_score_single_window",
           "train_seconds"]


def run_one(root: Path, subset: str, seed: int, work: Path) -> dict:
    task = RemainingUsefulLife(data={"subset": subset}, window=30, rul_cap=125,
                               training={"seed": seed, "progress": False})
    shutil.rmtree(work / f"{subset}_seed{seed}", ignore_errors=True)  # no stale checkpoints from earlier runs
    start = time.perf_counter()
    task.fit(root, out_dir=work / f"{subset}_seed{seed}")
    train_seconds = time.perf_counter() - start
    metrics = task.evaluate(root, report_dir=work / f"{subset}_seed{seed}_report" if seed == 0 else None)
    metrics["train_seconds"] = train_seconds
    metrics["epochs_run"] = task.metrics["epochs_run"]
    metrics["val_rmse"] = task.metrics["val_rmse"]
    print(f"{subset} seed {seed}: RMSE {metrics['rmse']:.2f} (raw {metrics['rmse_raw']:.2f}), "
          f"score {metrics['nasa_score']:.0f} (raw {metrics['nasa_score_raw']:.0f}), "
          f"coverage {metrics['interval_coverage']:.2f}, training {train_seconds:.0f} s", flush=True)
    return metrics


def summarise(runs: list[dict]) -> dict:
    out = {}
    for key in FIGURES:
        values = np.array([r[key] for r in runs], dtype=float)
        out[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                    "runs": values.tolist()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subsets", default="FD001,FD002")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    root = require_dataset("cmapss")
    work = Path(__file__).parent / "work" / "cmapss"
    seeds = [int(s) for s in args.seeds.split(",")]
    results, config = {}, None
    for subset in args.subsets.split(","):
        runs = [run_one(root, subset, seed, work) for seed in seeds]
        summary = summarise(runs)
        summary["n_units"] = runs[0]["n_units"]
        summary["n_padded_units"] = runs[0]["n_padded_units"]
        summary["n_units_with_caveats"] = runs[0]["n_units_with_caveats"]
        summary["epochs_run"] = [r["epochs_run"] for r in runs]
        target = TARGETS.get(subset)
        if target:
            summary["targets"] = target
            summary["meets_targets"] = (summary["rmse"]["mean"] <= target["rmse"]
                                        and summary["nasa_score"]["mean"] <= target["nasa_score"])
        results[subset] = summary
        print(f"{subset}: RMSE {summary['rmse']['mean']:.2f} ± {summary['rmse']['std']:.2f}, "
              f"score {summary['nasa_score']['mean']:.0f} ± {summary['nasa_score']['std']:.0f}, "
              f"raw RMSE {summary['rmse_raw']['mean']:.2f}, coverage {summary['interval_coverage']['mean']:.2f}, "
              f"training {summary['train_seconds']['mean']:.0f} ± {summary['train_seconds']['std']:.0f} s", flush=True)
        config = RemainingUsefulLife(data={"subset": subset}, window=30, rul_cap=125).config.model_dump(mode="json")
    write_result("cmapss", {
        "dataset": str(root),
        "protocol": "train on all training units (each of the 3 members holds out its own 20% block of units "
                    "for early stopping; the interval is calibrated on each block's estimates by the member that "
                    "never trained on it); test = last window (30 cycles) of every test unit; cap 125; rmse/mae/nasa_score "
                    "use true test RUL capped at 125, *_raw use it as given; mean ± std (sample) over seeds "
                    f"{seeds}; training time includes the whole ensemble",
        "seeds": seeds,
        "config": config,
        "results": results,
    })


if __name__ == "__main__":
    main()

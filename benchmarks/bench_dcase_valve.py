"""Machine sound on DCASE 2023 Task 2 valve clips (../shared/datasets/dcase2023_valve, see its PROVENANCE.md):
train on ``train/`` (40 source + 10 target normal clips, 10 s, 16 kHz), score ``test/`` (10 source normals +
50 source anomalies) through the exported ONNX graph. The DCASE 2020 baseline autoencoder (``dcase-ae``, 100
epochs as published) and our default (``knn-stats``) run in the same process on the same clips.

Then the same comparison on synthetic machines (tones + harmonics + noise, 3 machines, faults: clicks, a shifted
harmonic, rattling, at two severities; 20 normal training clips of 2 s, 10 normal + 10 faulty test clips per
fault), so the default is not chosen on one data set.

Usage: python benchmarks/bench_dcase_valve.py [--ae-folds 2] [--skip-synthetic]
The baseline's threshold is cross-fitted with ``--ae-folds`` folds (default 2, to bound the run time; AUC and
pAUC do not depend on the threshold).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import require_dataset, write_result  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from shopfloor.acoustics.machine_sound.synthetic import FAULTS, write_machine_dataset  # noqa: E402
from shopfloor.acoustics.machine_sound.task import MachineSound  # noqa: E402

TARGETS = {"default_auc_min": 0.80, "default_auc_over_baseline": 0.10}
KEYS = ("auc", "pauc", "auc_source", "auc_target", "hmean", "false_alarm_rate", "detection_rate", "n_test")


def run(model: str, train: Path, test: Path, work: Path, ae_folds: int) -> dict:
    options = {"calibration_folds": ae_folds} if model == "dcase-ae" else {}
    task = MachineSound(model=model, training={"progress": False}, **options)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task.fit(train, out_dir=work / model)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = task.evaluate(test)
    eval_s = time.perf_counter() - start
    return {**{k: metrics.get(k) for k in KEYS}, "fit_seconds": round(fit_s, 1),
            "evaluate_ms_per_clip": round(1000 * eval_s / metrics["n_test"], 1)}


def synthetic(work: Path) -> dict:
    rows = []
    for machine_seed in (1, 2, 3):
        for severity in (0.3, 0.6):
            root = write_machine_dataset(work / f"m{machine_seed}_{severity}", n_train=20, n_test_normal=10,
                                         n_test_fault=10, seconds=2.0, seed=machine_seed,
                                         machine_seed=machine_seed, severity=severity)
            test = sorted((root / "test").glob("*.wav"))
            for model in ("knn-stats", "dcase-ae"):
                task = MachineSound(model=model, training={"progress": False})
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    task.fit(root / "train")
                scores = {Path(r["input"]).name: r["score"] for r in task.predict(test)}
                normal = [s for n, s in scores.items() if "_normal_" in n]
                row = {"machine": machine_seed, "severity": severity, "model": model}
                for fault in FAULTS:
                    faulty = [s for n, s in scores.items() if n.endswith(f"_{fault}.wav")]
                    row[f"auc_{fault}"] = float(roc_auc_score([0] * len(normal) + [1] * len(faulty),
                                                              normal + faulty))
                rows.append(row)
    means = {model: {f"mean_auc_{f}": float(np.mean([r[f"auc_{f}"] for r in rows if r["model"] == model]))
                     for f in FAULTS} for model in ("knn-stats", "dcase-ae")}
    return {"runs": rows, "means": means}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ae-folds", type=int, default=2)
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    root = require_dataset("dcase2023_valve")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {m: run(m, root / "train", root / "test", work, args.ae_folds) for m in ("dcase-ae", "knn-stats")}
        for model, figures in results.items():
            print(model, figures, flush=True)
        default, baseline = results["knn-stats"], results["dcase-ae"]
        figures = {"data": "dcase2023_valve: train/ 40 source + 10 target normal clips; test/ 10 source normal + "
                           "50 source anomalous clips (10 s, 16 kHz)",
                   "baseline": baseline, "default": default,
                   "targets": TARGETS,
                   "met": {"default_auc_min": default["auc"] >= TARGETS["default_auc_min"],
                           "default_auc_over_baseline": default["auc"] - baseline["auc"]
                           >= TARGETS["default_auc_over_baseline"]}}
        if not args.skip_synthetic:
            figures["synthetic"] = synthetic(work / "synthetic")
            print(figures["synthetic"]["means"], flush=True)
    write_result("dcase_valve", figures)


if __name__ == "__main__":
    main()

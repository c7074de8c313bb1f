"""CWRU bearing data, 12 kHz drive end, 0 hp, 10 classes: accuracy clean and under white noise, training time.

Protocol: each of the 10 recordings is cut in time — the first part for training (its last 20 % for
validation), a gap of one segment, the last 20 % for test — so no test segment shares a sample with a
training segment. Default fault-diagnosis model (WDCNN, 2048-sample segments, training windows every 128
samples with noise and scaling augmentation). Test segments every 256 samples inside the held-out tail,
scored through ONNX Runtime clean and with white noise added at SNR 0 and −4 dB (noise seeded).

Usage: python benchmarks/bench_cwru.py [--data SUBFOLDER] [--name cwru] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, require_dataset, write_result  # noqa: E402

from shopfloor.maintenance.fault_diagnosis.task import FaultDiagnosis  # noqa: E402

TARGETS = {"accuracy": 0.999, "accuracy_snr_0": 0.99, "accuracy_snr_-4": 0.97}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="12k_drive_end/0hp", help="folder under cwru_bearing")
    parser.add_argument("--name", default="cwru", help="results/<name>.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = require_dataset("cwru_bearing") / args.data
    work = ROOT / "benchmarks" / "work" / args.name

    task = FaultDiagnosis(training={"seed": args.seed, "progress": False})
    start = time.perf_counter()
    task.fit(root, out_dir=work / "model")
    train_seconds = time.perf_counter() - start
    metrics = task.evaluate(root, report_dir=work / "report", snr_db=[0, -4])
    figures = {k: metrics[k] for k in ("accuracy", "macro_f1", "accuracy_snr_0", "accuracy_snr_-4", "n_test")}
    figures["per_class_recall"] = {c: v["recall"] for c, v in metrics["per_class"].items()}
    figures["train_seconds"] = train_seconds
    figures["epochs_run"] = task.metrics["epochs_run"]
    figures["n_train_segments"] = task.metrics["n_train_segments"]
    verdict = {k: figures[k] >= v for k, v in TARGETS.items()}
    print(f"accuracy {figures['accuracy']:.4f}, SNR 0 dB {figures['accuracy_snr_0']:.4f}, "
          f"SNR -4 dB {figures['accuracy_snr_-4']:.4f}, {figures['n_test']} test segments, training {train_seconds:.0f} s")
    print(verdict)
    write_result(args.name, {
        "protocol": task.state["split"] + "; test segments every 256 samples; noise seed 0",
        "data": f"cwru_bearing/{args.data}", "classes": task.classes, "config": task.config.model_dump(mode="json"),
        **figures, "targets": TARGETS, "verdict": verdict,
    })


if __name__ == "__main__":
    main()

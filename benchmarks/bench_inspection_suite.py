"""The inspection validation suite: every image set in the shared datasets folder, defaults only, one command.

- Anomaly sets (MVTec AD layout: ``train/good`` + ``test/``): ``AnomalyDetection`` fitted twice, with today's fixed
  defaults (``auto=False``) and with the defaults (auto-configuration from good images only); image AUROC, pixel
  AUROC, AUPRO, fit time, test images/s end to end (decode -> score + map, ``score_images``, the better of two
  passes), and what the auto-configuration chose with the pseudo-anomaly figures and the latency budget it chose on.
  The test images (and their defects) are used only here, after fitting, never for any choice.
- Classification sets (class folders): ``DefectClassification`` fitted twice, ``auto=False`` (fixed) and the
  defaults (auto: size, depth and TTA chosen on the validation split); NEU with the stratified 80/20 split of
  ``bench_neu`` (seed 0), sets that ship ``train/`` and ``test/`` with their own split. Accuracy, macro F1, ECE
  before/after temperature scaling, fit time and what auto chose.

Writes benchmarks/results/inspection_suite.json. ``--only NAME[,NAME]`` runs a subset (the JSON then holds only
those). Dataset root: $SHOPFLOOR_DATASETS (default <repo>/../shared/datasets).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, datasets_dir, fit_evaluate_classification, write_result  # noqa: E402


def anomaly_sets(root: Path) -> list[Path]:
    """Folders in the MVTec AD layout (train/good and test/)."""
    return sorted(p for p in root.iterdir() if (p / "train" / "good").is_dir() and (p / "test").is_dir())


def classification_sets(root: Path) -> list[Path]:
    """Folders of class folders: ``images/<class>/`` (one pool) or ``train/<class>/`` + ``test/<class>/``."""
    found = []
    for p in sorted(root.iterdir()):
        if (p / "train" / "good").is_dir():
            continue
        if (p / "train").is_dir() and (p / "test").is_dir() and any((p / "train").iterdir()):
            found.append(p)
        elif (p / "images").is_dir() and sum(d.is_dir() for d in (p / "images").iterdir()) >= 2:
            found.append(p)
    return found


def run_anomaly(path: Path, mode: str) -> dict:
    """``mode``: fixed, auto, or auto@R (auto with a latency budget of R x the fixed defaults' cost)."""
    from shopfloor.inspection.anomaly.task import AnomalyDetection
    from shopfloor.inspection.layouts import read_anomaly_data

    auto = mode.startswith("auto")
    budget = {"latency_budget": float(mode.split("@")[1])} if "@" in mode else {}
    task = AnomalyDetection(auto=auto, training={"progress": False}, **budget)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    task.fit(path)
    fit_s = time.perf_counter() - start
    m = task.evaluate(path)
    paths = [s.path for s in read_anomaly_data(path, need="test").test]
    best = float("inf")
    for _ in range(2):  # end to end (decode -> score + map) through ONNX Runtime, the better of two passes
        begin = time.perf_counter()
        task.score_images(paths)
        best = min(best, time.perf_counter() - begin)
    out = {"auto": auto, "image_auroc": m["image_auroc"], "pixel_auroc": m["pixel_auroc"], "aupro": m["aupro"],
           "image_f1": m["image_f1"], "false_alarm_rate": m["false_alarm_rate"], "miss_rate": m["miss_rate"],
           "n_test": m["n_test"], "fit_seconds": round(fit_s, 1), "test_images_per_s": round(len(paths) / best, 1),
           "load_average_1min_before_fit": load_before,
           "load_average_1min_after": os.getloadavg()[0], "image_size": task.state["image_spec"],
           "bank_size": task.state.get("bank_size"), "warnings": task.state.get("warnings", []),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if "autoconfig" in task.state:
        out["autoconfig"] = task.state["autoconfig"]
    print(f"{path.name} {mode}: image AUROC {m['image_auroc']:.3f} pixel AUROC {m['pixel_auroc']:.3f} "
          f"fit {fit_s:.0f} s, {out['test_images_per_s']} test images/s (load {load_before:.2f})", flush=True)
    return out


def run_classification(path: Path, auto: bool) -> dict:
    from shopfloor.core.split import stratified_split
    from shopfloor.inspection.classification.task import LabelledImages

    if (path / "train").is_dir():
        train, test = LabelledImages.from_folder(path / "train"), LabelledImages.from_folder(path / "test")
        protocol = "the set's own train/test split"
    else:
        data = LabelledImages.from_folder(path / "images")
        train_idx, test_idx = stratified_split(data.labels, 0.2, seed=0)
        train, test = data.subset(train_idx), data.subset(test_idx)
        protocol = "stratified 80/20 split, seed 0"
    load_before = os.getloadavg()[0]
    task, m, timing = fit_evaluate_classification(train, test, f"suite_{path.name}_{'auto' if auto else 'fixed'}",
                                                  {"auto": auto})
    print(f"{path.name} auto={auto}: accuracy {m['accuracy']:.4f} macro F1 {m['macro_f1']:.4f} ECE "
          f"{m['ece_uncalibrated']:.4f} -> {m['ece']:.4f} train {timing['train_seconds']:.0f} s (load "
          f"{load_before:.2f}); {task.state['summary']}", flush=True)
    out = {"auto": auto, "protocol": protocol, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
           "ece_uncalibrated": m["ece_uncalibrated"], "ece": m["ece"], "nll_uncalibrated": m["nll_uncalibrated"],
           "nll": m["nll"], "temperature": m["temperature"], "tta_flips": m["tta_flips"],
           "n_train": len(train.paths), "n_test": m["n_test"], "train_seconds": round(timing["train_seconds"], 1),
           "image_size": task.config.image_size, "training_depth": task.state.get("training_depth"),
           "sampling": task.state.get("sampling"), "calibration": task.state.get("calibration"),
           "summary": task.state.get("summary"), "load_average_1min_before_fit": load_before,
           "load_average_1min_after": os.getloadavg()[0], "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if "autoconfig" in task.state:
        out["autoconfig"] = task.state["autoconfig"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated data set names (default: all)")
    parser.add_argument("--classification-modes", default="fixed,auto", help="fixed (--auto false), auto, or both")
    parser.add_argument("--anomaly-modes", default="fixed,auto", help="fixed (--auto false), auto, auto@R (latency "
                        "budget R x the fixed defaults' cost), comma-separated")
    args = parser.parse_args()
    root = datasets_dir()
    if not root.exists():
        print(f"SKIP: {root} not found (set SHOPFLOOR_DATASETS)")
        return
    only = {n for n in args.only.split(",") if n}
    modes = [m for m in args.anomaly_modes.split(",") if m]
    results: dict[str, dict] = {"anomaly": {}, "classification": {}}
    for path in anomaly_sets(root):
        if only and path.name not in only:
            continue
        results["anomaly"][path.name] = {mode: run_anomaly(path, mode) for mode in modes}
    for path in classification_sets(root):
        if only and path.name not in only:
            continue
        results["classification"][path.name] = {mode: run_classification(path, auto=(mode == "auto"))
                                                 for mode in args.classification_modes.split(",") if mode}
    if only:  # a partial run updates its sets in the last full file (each set keeps its own date and load)
        previous = RESULTS / "inspection_suite.json"
        if previous.exists():
            kept = json.loads(previous.read_text()).get("results", {})
            for set_name, modes_run in kept.get("classification", {}).items():
                if "accuracy" in modes_run:  # written before classification had modes: the fixed defaults
                    modes_run = {"fixed": modes_run}
                for mode, figures in modes_run.items():
                    results["classification"].setdefault(set_name, {}).setdefault(mode, figures)
            for set_name, modes_run in kept.get("anomaly", {}).items():
                for mode, figures in modes_run.items():
                    results["anomaly"].setdefault(set_name, {}).setdefault(mode, figures)
    write_result("inspection_suite", {
        "datasets": str(root), "results": results,
        "command": "flock /tmp/shopfloor-cpu.lock .venv/bin/python benchmarks/bench_inspection_suite.py",
        "note": "fixed = --auto false (the defaults before issue 12); auto = the defaults now. Test images are used "
                "only for these figures, never for a choice. Each set records its own date and load average."})


if __name__ == "__main__":
    main()

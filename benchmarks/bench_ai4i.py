"""AI4I 2020 predictive maintenance: machine-failure F1, PR-AUC and per-mode recall, DNN vs gradient boosting.

Protocol: stratified 80/20 split of the 10,000 records on "Machine failure" with seed 0. The default
failure-prediction model (cross-fitted MLP ensemble, derived features in the graph, thresholds chosen on
out-of-fold validation probabilities) is trained on the 80 % and scored on the 20 % through ONNX Runtime.
In the same run, scikit-learn's HistGradientBoostingClassifier with balanced class weights is trained on
the same 80 % and scored on the same 20 % at its default 0.5 decision threshold: on the raw features (the
baseline) and, for reference, on the raw plus the same three derived features.
Per-mode recall = share of the test records with that mode caught by the machine-failure alarm.

Usage: python benchmarks/bench_ai4i.py [--split-seed 0]   (other split seeds are for method development)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402
from common import ROOT, require_dataset, write_result  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from shopfloor.maintenance.failure_prediction.task import FailurePrediction, binary_metrics  # noqa: E402
from shopfloor.core.tables import read_table  # noqa: E402
from shopfloor.maintenance.tabular import AI4I_MODES  # noqa: E402

TARGET = "Machine failure"
RAW = ["Type", "Air temperature [K]", "Process temperature [K]", "Rotational speed [rpm]", "Torque [Nm]",
       "Tool wear [min]"]
TARGETS = {"f1": 0.88, "mode_recall": 0.95, "rule_modes": ["HDF", "PWF", "OSF"]}


def gradient_boosting(train: pd.DataFrame, test: pd.DataFrame, derived: bool, seed: int) -> dict:
    def features(frame: pd.DataFrame) -> pd.DataFrame:
        x = frame[RAW].copy()
        x["Type"] = x["Type"].map({"L": 0, "M": 1, "H": 2})
        if derived:
            x["power"] = frame["Torque [Nm]"] * frame["Rotational speed [rpm]"]
            x["temperature_difference"] = frame["Process temperature [K]"] - frame["Air temperature [K]"]
            x["strain"] = frame["Tool wear [min]"] * frame["Torque [Nm]"]
        return x

    start = time.perf_counter()
    model = HistGradientBoostingClassifier(class_weight="balanced", categorical_features=[0], random_state=seed)
    model.fit(features(train), train[TARGET])
    seconds = time.perf_counter() - start
    probability = model.predict_proba(features(test))[:, 1]
    alarm = (probability >= 0.5).astype(int)
    y = test[TARGET].to_numpy()
    out = binary_metrics(y, alarm, probability)
    out["mode_recall"] = {m: float(alarm[test[m].to_numpy() == 1].mean()) for m in AI4I_MODES}
    out["train_seconds"] = seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="override a task option (method development; results are written for defaults only)")
    args = parser.parse_args()
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    training = {"seed": 0, "progress": False, **overrides.pop("training", {})}
    frame = read_table(require_dataset("ai4i2020") / "ai4i2020.csv")
    train, test = train_test_split(frame, test_size=0.2, stratify=frame[TARGET], random_state=args.split_seed)
    work = ROOT / "benchmarks" / "work" / f"ai4i_split{args.split_seed}{'_dev' if args.set else ''}"

    task = FailurePrediction(training=training, **overrides)
    start = time.perf_counter()
    task.fit(train, out_dir=work / "model")
    train_seconds = time.perf_counter() - start
    metrics = task.evaluate(test, report_dir=work / "report")
    dnn = {k: metrics[k] for k in ("f1", "precision", "recall", "pr_auc", "roc_auc", "threshold", "modes_in_alarm",
                                   "true_positives", "false_positives", "false_negatives")}
    dnn["mode_recall"] = {m: e["alarm_recall"] for m, e in metrics["per_mode"].items()}
    dnn["per_mode"] = metrics["per_mode"]
    dnn["train_seconds"] = train_seconds
    dnn["validation"] = task.metrics
    baseline = gradient_boosting(train, test, derived=False, seed=0)
    reference = gradient_boosting(train, test, derived=True, seed=0)
    rule_recalls = [dnn["mode_recall"][m] for m in TARGETS["rule_modes"]]
    verdict = {"f1_target_met": dnn["f1"] >= TARGETS["f1"],
               "mode_recall_target_met": min(rule_recalls) >= TARGETS["mode_recall"],
               "beats_gradient_boosting": dnn["f1"] > baseline["f1"]}
    print(f"DNN: F1 {dnn['f1']:.4f} P {dnn['precision']:.3f} R {dnn['recall']:.3f} PR-AUC {dnn['pr_auc']:.4f} "
          f"mode recall {dnn['mode_recall']} ({train_seconds:.0f} s)")
    print(f"HGB raw: F1 {baseline['f1']:.4f} PR-AUC {baseline['pr_auc']:.4f}; HGB + derived: F1 {reference['f1']:.4f}")
    print(verdict)
    if args.split_seed == 0 and not args.set:
        write_result("ai4i", {
            "protocol": "stratified 80/20 split on Machine failure, seed 0; test scored through ONNX Runtime",
            "n_train": len(train), "n_test": len(test), "test_failures": int(test[TARGET].sum()),
            "shopfloor_failure_prediction": dnn,
            "hist_gradient_boosting_balanced_raw": baseline,
            "hist_gradient_boosting_balanced_with_derived_features": reference,
            "targets": TARGETS, "verdict": verdict,
        })


if __name__ == "__main__":
    main()

"""``process-monitoring``: catch faults in a running process and say which variables show them.

Data: process records in time order (see :mod:`shopfloor.process.records`): CSV/Parquet, or the Tennessee Eastman
``.dat`` files. Detection is trained on **normal operation only** (unlabelled data counts as normal; labelled data
gives its normal rows): every variable is standardised on normal data; PCA (components explaining
``pca_variance``) gives Hotelling T2 and SPE (Q) of each sample, the reference; a window autoencoder
(``--detector conv|dense|gru``) reconstructs the last ``window`` samples, and its statistic (``--statistic``) is by
default the largest standardised **residual feature**: per variable, the mean, log spread and log mean step of the
reconstruction residual over the window (a shift, a change of variance, a sticking or chattering signal).

Control limits are set on data the model did not fit (``--calibration``): ``crossfit`` (default) cuts each normal
stretch into ``folds`` time blocks, scores every block with models fitted on the others (out-of-fold statistics;
the residual features are standardised on them too), then refits the deployed model on all normal data for the
folds' epoch count; ``holdout`` uses a late share instead. The limit at ``false_alarm_rate`` follows
``limit_rule`` (default ``bootstrap``: an upper confidence bound of Box's g·χ²(h) quantile over a block bootstrap,
so a short or autocorrelated calibration set gets a cautious limit; see :mod:`.fitting`). When the data also holds
labelled faulty runs, a dilated 1D-CNN classifier over windows learns to name the fault.

The exported graph takes the raw window ``(batch, window, variables)`` and returns ``score`` (1.0 = control limit),
``alarm``, per-variable ``contributions`` (they sum to the score), PCA ``t2``/``spe`` (1.0 = limit) with their
contributions, and ``fault_probabilities`` when a classifier was trained. ``predict`` on a history scores its
latest sample (each run's), so a stream that appends samples scores point by point; :class:`OnlineMonitor`
keeps only the window as state.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from shopfloor.core.artifact import fingerprint_arrays
from shopfloor.core.config import StrictModel, TrainingConfig
from shopfloor.core.errors import DataError
from shopfloor.core.task import OnnxSignature, TableColumns, Task, batched, read_inputs, to_jsonable
from shopfloor.core.training import seed_everything

from ..records import LABEL, NORMAL, TIME, ProcessRecords, ProcessSpec, constant_variables, load_records
from .fitting import (
    LIMIT_RULES,
    Segment,
    control_limit,
    crossfit_folds,
    normal_segments,
    run_windows,
    split_normal,
)
from .metrics import detection_metrics
from .networks import CLASSIFIER_OUTPUT, DETECTORS, OUTPUTS, STATISTICS, MonitoringGraph
from .training import fit_classifier, fit_detectors, held_statistics

if TYPE_CHECKING:
    from .online import OnlineMonitor

log = logging.getLogger(__name__)
DETECTOR_KEYS = {"deep": "score", "pca_t2": "t2", "pca_spe": "spe"}  # metrics name -> graph output


class MonitoringTrainingConfig(TrainingConfig):
    """Training defaults for small normal-operation sets (hundreds to thousands of windows)."""

    epochs: int = Field(200, ge=1, description="maximum epochs (autoencoder; the classifier uses classifier_epochs)")
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    patience: int = Field(20, ge=1, description="early-stopping patience in epochs on the held-out loss")


class MonitoringConfig(StrictModel):
    """Settings of the process-monitoring task."""

    data: ProcessSpec = ProcessSpec()
    window: int = Field(20, ge=2, description="samples per window of the deep detector and the classifier")
    detector: Literal[DETECTORS] = Field(  # type: ignore[valid-type]
        "conv", description="window autoencoder: conv (1D-CNN), dense or gru")
    hidden: int = Field(32, ge=2, description="autoencoder width")
    latent: int = Field(8, ge=1, description="autoencoder bottleneck size")
    input_noise: float = Field(0.1, ge=0, description="std of noise added to standardised training windows")
    pca_variance: float = Field(0.9, gt=0, lt=1, description="PCA keeps the fewest components explaining this")
    false_alarm_rate: float = Field(0.01, gt=0, lt=0.5, description="control limits: expected share of normal "
                                    "samples above the limit")
    statistic: Literal[STATISTICS] = Field(  # type: ignore[valid-type]
        "residual_features", description="deep detector statistic: residual_features (largest standardised mean, "
        "spread or step of a variable's reconstruction residual over the window) or reconstruction (mean squared "
        "error)")
    calibration: Literal["crossfit", "holdout"] = Field(
        "crossfit", description="where the control limits come from: crossfit (every normal sample scored by a "
        "model fitted without its time block; the deployed model refits on all) or holdout (a late share)")
    folds: int = Field(4, ge=2, le=20, description="cross-fitting: contiguous time blocks per normal stretch")
    limit_rule: Literal[LIMIT_RULES] = Field(  # type: ignore[valid-type]
        "bootstrap", description="control limit from the held-out statistics: bootstrap (upper confidence bound "
        "of Box's quantile over a block bootstrap), box (Box's g·chi2 quantile) or empirical (conformal quantile)")
    limit_confidence: float = Field(0.9, gt=0, lt=1, description="bootstrap rule: confidence of the upper bound")
    holdout: float = Field(0.25, gt=0, lt=0.8, description="calibration=holdout: late share of each normal stretch "
                           "held out of the model fit, to set the control limits and stop training")
    consecutive_alarms: int = Field(3, ge=1, description="detection delay: the first of k consecutive alarms")
    classify: bool = Field(True, description="train a fault classifier when the training data holds labelled "
                           "faulty runs")
    classifier_epochs: int = Field(40, ge=1, description="maximum classifier epochs")
    explain_runs: int = Field(6, ge=0, description="faulty runs whose charts the report shows")
    training: MonitoringTrainingConfig = MonitoringTrainingConfig()


class PredictionOptions(StrictModel):
    """Which samples ``predict`` scores."""

    points: Literal["last", "all"] = Field("last", description="last: each run's latest sample (streaming); all: "
                                           "every sample")


class ProcessMonitoring(Task):
    """Fault detection, classification and contributions for multivariate processes (see module docstring)."""

    name = "process-monitoring"
    input_kind = "table"  # a run's history, rows in time order
    input_suffixes = (".csv", ".parquet", ".pq")
    Config = MonitoringConfig
    EvaluateOptions = PredictionOptions

    # ----------------------------------------------------------------- model
    @property
    def variables(self) -> list[str]:
        return list(self.state["variables"])

    @property
    def classes(self) -> list[str]:
        return list(self.state.get("classes") or [])

    def table_columns(self) -> TableColumns:
        """A row: the run and time columns (named as in training) and the process variables."""
        self.require_model()
        return TableColumns(values=tuple(self.variables), unit=self.config.data.run_column,
                            time=self.config.data.time_column)

    def build_model(self) -> nn.Module:
        s, c = self.state, self.config
        return MonitoringGraph(len(s["variables"]), s["n_components"], c.window, c.detector, c.hidden, c.latent,
                               len(s.get("classes") or []), c.statistic)

    def onnx_signature(self) -> OnnxSignature:
        example = torch.zeros(2, self.config.window, len(self.variables))
        outputs = OUTPUTS + ([CLASSIFIER_OUTPUT] if self.classes else [])
        return OnnxSignature(example_inputs=(example,), input_names=["window"], output_names=outputs)

    def _read(self, data: Any, split: Literal["train", "test"]) -> ProcessRecords:
        fitted = split == "test" and "variables" in self.state
        records = load_records(data, self.config.data, split, expected=self.variables if fitted else None)
        for note in records.notes:
            log.info("%s", note)
        return records

    # ----------------------------------------------------------------- fit
    def fit(self, data: Any, out_dir: str | Path | None = None) -> "ProcessMonitoring":
        cfg, train_cfg = self.config, self.config.training
        seed_everything(train_cfg.seed)
        records = self._read(data, "train")
        self.state = {"notes": list(records.notes)}
        normal = records.normal()
        constant = constant_variables(normal)
        if constant:
            self.note_warning(f"{records.source}: variable(s) {', '.join(constant)} do not vary in normal operation "
                              "and are not monitored (nothing to learn from them)")
        variables = [v for v in records.variables if v not in constant]
        if len(variables) < 2:
            raise DataError(f"{records.source}: {len(variables)} varying process variable(s); monitoring needs at "
                            "least 2 (give the measurements as numeric columns)")
        segments = normal_segments(records)
        folds = self._calibration_folds(segments, records.source, len(variables))
        n_normal = sum(len(s.rows) for s in segments)
        values = records.values(variables).astype(np.float64)
        raw = values.astype(np.float32)
        self.data_fingerprint = fingerprint_arrays(values)
        log_dir = Path(out_dir) / "training" if out_dir is not None else None
        held_stats: dict[str, list[np.ndarray]] = {"features": [], "reconstruction": [], "t2": [], "spe": []}
        best_epochs, losses = [], []
        for i, (fit_part, held) in enumerate(folds):
            graph, summary = fit_detectors(cfg, raw, fit_part, held,
                                                 log_dir / f"fold_{i}" if log_dir is not None else None)
            for key, value in held_statistics(graph, raw, held).items():
                held_stats[key].append(value)
            best_epochs.append(self._best_epoch(summary))
            losses.append(summary["best_score"])
        if len(folds) > 1:  # cross-fitting: the deployed model fits every normal sample, for the folds' epochs
            epochs = int(np.median(best_epochs))
            graph, _ = fit_detectors(cfg, raw, segments, [], log_dir, epochs=epochs)
        calibration = {key: np.concatenate(value) for key, value in held_stats.items()}
        features = calibration.pop("features")
        feature_mean, feature_std = features.mean(0), features.std(0)
        graph.features.mean.copy_(torch.as_tensor(feature_mean, dtype=torch.float32))
        graph.features.std.copy_(torch.as_tensor(np.where(feature_std > 1e-6, feature_std, 1e-6),
                                                 dtype=torch.float32))
        with torch.no_grad():
            standardised = graph.features.standardise(torch.as_tensor(features, dtype=torch.float32))
        calibration["score"] = (standardised.abs().amax((1, 2)).numpy() if cfg.statistic == "residual_features"
                                else calibration["reconstruction"])
        self.calibration_statistics = calibration  # score, t2, spe, reconstruction: for benchmarks
        graph.limits.copy_(torch.as_tensor([control_limit(calibration[k], cfg.false_alarm_rate, cfg.limit_rule,
                                                          cfg.limit_confidence) for k in ("score", "t2", "spe")],
                                           dtype=torch.float32))
        graph.eval()
        classes = [NORMAL, *records.faults] if cfg.classify and records.faults else []
        n_limit = len(calibration["t2"])
        self.state.update({
            "variables": variables, "constant_variables": constant, "n_components": int(graph.pca.loadings.shape[1]),
            "classes": classes, "unobservable": list(records.unobservable),
            "n_fit_samples": int(n_normal), "n_limit_samples": int(n_limit), "training_runs": len(records.runs),
            "calibration": {"method": cfg.calibration, "folds": len(folds), "rule": cfg.limit_rule,
                            "confidence": cfg.limit_confidence},
            "input": {"name": "window", "shape": ["batch", cfg.window, len(variables)], "dtype": "float32",
                      "columns": variables, "values": "raw readings, oldest first; standardisation is in the graph"},
        })
        if classes:  # the deployed graph gains its classifier head
            full = self.build_model()
            full.load_state_dict(graph.state_dict(), strict=False)
            graph = full
        self.metrics = {"n_components": self.state["n_components"], "autoencoder_val_loss": float(np.mean(losses)),
                        "autoencoder_epochs": best_epochs, "n_limit_windows": int(len(calibration["score"])),
                        "calibration": cfg.calibration, "limit_rule": cfg.limit_rule}
        if classes:
            self.metrics.update(fit_classifier(cfg, graph, records, raw, classes, log_dir))
        self.state["limits"] = dict(zip(("score", "t2", "spe"), graph.limits.tolist()))
        self.torch_model = graph.eval()
        self.export()
        if out_dir is not None:
            self.save(out_dir)
        return self

    def _calibration_folds(self, segments: list[Segment], source: str,
                           n_variables: int) -> list[tuple[list[Segment], list[Segment]]]:
        """(fit, held) pairs: ``folds`` time blocks (cross-fitting) or one late hold-out; checks there is enough."""
        cfg = self.config
        n_normal = sum(len(s.rows) for s in segments if len(s.rows) >= cfg.window)
        need = max(2 * n_variables, 5 * cfg.window, 50)
        if cfg.calibration == "crossfit":
            folds = crossfit_folds(segments, cfg.folds, cfg.window)
            if all(sum(len(s.rows) for s in held) > cfg.window for _, held in folds):
                if n_normal * (cfg.folds - 1) / cfg.folds < need:
                    raise DataError(f"{source}: {n_normal} normal samples in stretches of at least {cfg.window}; "
                                    f"expected at least {int(np.ceil(need * cfg.folds / (cfg.folds - 1)))} to fit "
                                    f"on {cfg.folds - 1} of {cfg.folds} folds. Give more normal operation, or a "
                                    "shorter --window")
                return folds
            self.note_warning(f"{source}: normal stretches too short for {cfg.folds} cross-fitting blocks of "
                              f"{cfg.window + 1} samples; the limits come from a late hold-out of {cfg.holdout:g}")
        fit_part, held = split_normal(segments, cfg.holdout, cfg.window)
        n_fit, n_held = sum(len(s.rows) for s in fit_part), sum(len(s.rows) for s in held)
        if n_fit < need or n_held <= cfg.window:
            raise DataError(f"{source}: {n_fit + n_held} normal samples in stretches long enough for a "
                            f"window of {cfg.window}; expected at least {need} to fit on plus {cfg.window + 1} to set "
                            f"the limits on (holdout {cfg.holdout:g}). Give more normal operation, or a shorter "
                            "--window")
        return [(fit_part, held)]

    def _best_epoch(self, summary: dict[str, Any]) -> int:
        """The epoch count to refit with: the run's length less the patience when it stopped early."""
        train_cfg = self.config.training
        ran = int(summary["epochs_run"])
        return max(1, ran - train_cfg.patience if ran < train_cfg.epochs - 1 else ran)

    # ----------------------------------------------------------------- inference (always ONNX Runtime)
    def run_windows(self, windows: np.ndarray, batch_size: int = 1024) -> dict[str, np.ndarray]:
        """Graph outputs for raw windows (n, window, variables), through ONNX Runtime."""
        return self.runtime.run_batches({"window": windows[sl]} for sl in batched(len(windows), batch_size))

    def score_runs(self, records: ProcessRecords, points: str = "all") -> list[dict[str, Any]]:
        """Per run: its rows (``frame``), the graph outputs for the window ending at each scored row, and which
        windows were padded (fewer than ``window`` samples before them). ``points="last"``: the last row only."""
        w = self.config.window
        out = []
        for run, rows in records.run_frames():
            values = rows[self.variables].to_numpy(dtype=np.float32)
            if points == "last":
                values = values[-w:]
                windows, padded = run_windows(values, w)
                windows, padded, rows = windows[-1:], padded[-1:] | (len(rows) < w), rows.iloc[-1:]
            else:
                windows, padded = run_windows(values, w)
            out.append({"run": run, "frame": rows, "outputs": self.run_windows(windows), "padded": padded})
        return out

    def _row(self, source: str, run: Any, time: float, outputs: dict[str, np.ndarray], i: int, padded: bool,
             explain: bool) -> dict[str, Any]:
        parts = outputs["contributions"][i]
        row = {"input": source, "run": run, "time": time, "score": float(outputs["score"][i]),
               "alarm": bool(outputs["alarm"][i]), "label": "alarm" if outputs["alarm"][i] else "normal",
               "t2": float(outputs["t2"][i]), "spe": float(outputs["spe"][i]), "padded": bool(padded),
               "top_variables": _top(parts, self.variables, 5)}
        if self.classes:
            probabilities = outputs[CLASSIFIER_OUTPUT][i]
            best = int(np.argmax(probabilities))
            row["fault"], row["fault_probability"] = self.classes[best], float(probabilities[best])
        if explain:
            row["contributions"] = dict(zip(self.variables, map(float, parts)))
            row["t2_contributions"] = dict(zip(self.variables, map(float, outputs["t2_contributions"][i])))
            row["spe_contributions"] = dict(zip(self.variables, map(float, outputs["spe_contributions"][i])))
        return row

    def predict(self, inputs: Sequence[Any], out_dir: str | Path | None = None, explain: bool = False,
                skip_bad: bool = False, **options: Any) -> list[dict[str, Any]]:
        """Score each input (a CSV/Parquet/TEP file or DataFrame of recent samples, one or several runs): by
        default each run's latest sample (``points="all"``: every sample). A row holds ``score`` (1.0 = control
        limit), ``alarm``, ``t2``/``spe`` (1.0 = their limits), the ``top_variables`` of the score, and with a
        classifier ``fault`` and ``fault_probability``; ``explain`` adds every variable's contributions. ``padded``:
        fewer than ``window`` samples were given (the first one repeated). Unreadable inputs refuse the batch,
        or with ``skip_bad`` become rows ``{"input", "skipped": True, "error"}``."""
        opts = PredictionOptions(**options)
        if isinstance(inputs, (str, Path, pd.DataFrame, ProcessRecords)):
            inputs = [inputs]
        items = list(enumerate(inputs))
        kept, skipped = read_inputs(items, lambda pair: self._read(pair[1], "test"), skip_bad,
                                    name=lambda pair: f"<DataFrame {pair[0]}>" if isinstance(pair[1], pd.DataFrame)
                                    else str(pair[1]))
        rows_of: dict[int, list[dict[str, Any]]] = {}
        for index, records in kept:
            rows_of[index] = [to_jsonable(self._row(records.source, scored["run"], float(t), scored["outputs"], i,
                                                    scored["padded"][i], explain))
                              for scored in self.score_runs(records, opts.points)
                              for i, t in enumerate(scored["frame"][TIME])]
        results: list[dict[str, Any]] = []
        bad = iter(skipped)
        for index, _ in items:
            results.extend(rows_of[index] if index in rows_of else [next(bad)])
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, (dict, list))} for r in results]).to_csv(
                out / "monitoring_predictions.csv", index=False)
        return results

    def evaluate(self, data: Any, report_dir: str | Path | None = None, **options: Any) -> dict[str, Any]:
        """Detection metrics of the deep detector and of PCA T2 and SPE side by side (:func:`detection_metrics`),
        and with a classifier its accuracy per fault and confusion matrix, on labelled runs; samples without a full
        window before them are not scored."""
        records = self._read(data, "test")
        if not records.has_labels:
            raise DataError(f"{records.source} has no {self.config.data.label_column!r} column: evaluate needs each "
                            f"sample's label ({self.config.data.normal_label!r} for normal operation, else the fault)")
        scored = self.score_runs(records, "all")
        unobservable = sorted(set(self.state.get("unobservable", [])))
        k = self.config.consecutive_alarms
        result: dict[str, Any] = {}
        for name, key in DETECTOR_KEYS.items():
            runs = [(s["frame"][LABEL].to_numpy()[~s["padded"]], s["outputs"][key][~s["padded"]] > 1.0)
                    for s in scored]
            result[name] = detection_metrics(runs, k, unobservable)
        result["mean_detection_rate"] = result["deep"]["mean_detection_rate"]
        result["false_alarm_rate"] = result["deep"]["false_alarm_rate"]
        result["nominal_false_alarm_rate"] = self.config.false_alarm_rate
        for name in ("pca_t2", "pca_spe"):
            result[f"{name}_mean_detection_rate"] = result[name]["mean_detection_rate"]
            result[f"{name}_false_alarm_rate"] = result[name]["false_alarm_rate"]
        result["per_fault"] = {  # the detectors side by side (the CLI prints it as a table)
            fault: {**{f"{name} rate": result[name][group][fault]["detection_rate"] for name in DETECTOR_KEYS},
                    **{f"{name} delay": result[name][group][fault]["delay"] for name in DETECTOR_KEYS},
                    "observable": group == "per_fault"}
            for group in ("per_fault", "unobservable") for fault in result["deep"][group]}
        if self.classes:
            result["classification"] = self._classification(scored, unobservable)
        result["n_runs"] = len(scored)
        if report_dir is not None:
            from .report import write_monitoring_report

            result["report"] = str(write_monitoring_report(self, records.source, scored, result, report_dir))
        return to_jsonable(result)

    def _classification(self, scored: list[dict[str, Any]], unobservable: Sequence[str]) -> dict[str, Any]:
        from shopfloor.core.metrics import classification_metrics

        truth, predicted = [], []
        for s in scored:
            keep = ~s["padded"]
            labels = s["frame"][LABEL].to_numpy()[keep]
            known = np.isin(labels, self.classes)
            truth.append(np.array([self.classes.index(v) for v in labels[known]], dtype=int))
            predicted.append(s["outputs"][CLASSIFIER_OUTPUT][keep][known].argmax(1))
        y, p = np.concatenate(truth), np.concatenate(predicted)
        metrics = classification_metrics(y, p, None, self.classes)
        per_class = {c: float((p[y == i] == i).mean()) for i, c in enumerate(self.classes) if (y == i).any()}
        observable = [v for c, v in per_class.items() if c != NORMAL and c not in set(unobservable)]
        return {"accuracy": metrics["accuracy"], "per_class_accuracy": per_class,
                "mean_fault_accuracy": float(np.mean(observable)) if observable else None,
                "unobservable": {c: per_class[c] for c in unobservable if c in per_class},
                "confusion_matrix": metrics["confusion_matrix"], "classes": self.classes}

    def monitor(self) -> "OnlineMonitor":
        """A point-by-point scorer that keeps each run's last ``window`` samples as its state."""
        from .online import OnlineMonitor

        return OnlineMonitor(self)

    # ----------------------------------------------------------------- demo
    @classmethod
    def demo(cls, out_dir: Path) -> dict[str, Any]:
        """Simulate the built-in process (normal runs and four fault kinds), train, evaluate, predict."""
        from ..synthetic import write_process_dataset

        out = Path(out_dir)
        paths = write_process_dataset(out / "data", seed=0)
        task = cls(training={"progress": False})
        task.fit(paths["train"], out / "model")
        metrics = task.evaluate(paths["test"], report_dir=out / "report")
        predictions = task.predict([paths["recent"]], explain=True)
        return {"task": cls.name, "mean_detection_rate": metrics["mean_detection_rate"],
                "false_alarm_rate": metrics["false_alarm_rate"],
                "pca_t2_detection_rate": metrics["pca_t2"]["mean_detection_rate"],
                "pca_spe_detection_rate": metrics["pca_spe"]["mean_detection_rate"],
                "fault_accuracy": metrics.get("classification", {}).get("mean_fault_accuracy"),
                "first_prediction": predictions[0], "sample_inputs": [str(paths["recent"])],
                "model": str(out / "model"), "report": metrics["report"]}


def _top(values: np.ndarray, names: Sequence[str], k: int) -> list[dict[str, Any]]:
    order = np.argsort(-np.asarray(values))[:k]
    return [{"variable": str(names[i]), "contribution": float(values[i])} for i in order]


__all__ = ["MonitoringConfig", "ProcessMonitoring"]

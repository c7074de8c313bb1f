"""``process-monitoring``: catch faults in a running process and say which variables show them.

Data: process records in time order (see :mod:`shopfloor.process.records`): CSV/Parquet, or the Tennessee Eastman
``.dat`` files. Detection is trained on **normal operation only** (unlabelled data counts as normal; labelled data
gives its normal rows): every variable is standardised on normal data; PCA (components explaining
``pca_variance``) gives Hotelling T2 and SPE (Q) of each sample, the reference; a window autoencoder
(``--detector conv|dense|gru``) scores the last ``window`` samples by their mean squared reconstruction error.
Each contiguous stretch of normal data is cut in time: the early part fits the models, the late part sets the
control limits at ``false_alarm_rate`` (Box's g·χ²(h) fit, see :mod:`.fitting`). When the data also holds
labelled faulty runs, a 1D-CNN classifier over windows learns to name the fault.

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
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from shopfloor.core.artifact import fingerprint_arrays
from shopfloor.core.config import StrictModel, TrainingConfig
from shopfloor.core.errors import DataError
from shopfloor.core.task import OnnxSignature, TableColumns, Task, batched, read_inputs, to_jsonable
from shopfloor.core.training import SupervisedModule, fit_supervised, seed_everything

from ..records import LABEL, NORMAL, RUN, TIME, ProcessRecords, ProcessSpec, constant_variables, load_records
from .fitting import (
    Segment,
    control_limit,
    fit_pca,
    normal_segments,
    run_windows,
    segment_windows,
    split_normal,
)
from .metrics import detection_metrics
from .networks import CLASSIFIER_OUTPUT, DETECTORS, OUTPUTS, MonitoringGraph

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
    holdout: float = Field(0.25, gt=0, lt=0.8, description="late share of each normal stretch held out of the "
                           "model fit, to set the control limits and stop training")
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


def _loader(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """Whole-batch indexing of in-memory tensors."""
    dataset = TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)) if shuffle \
        else SequentialSampler(dataset)
    return DataLoader(dataset, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None)


class _Standardized(nn.Module):
    """Trains a sub-network of the graph on standardised windows (the graph standardises inside itself)."""

    def __init__(self, graph: MonitoringGraph, part: str):
        super().__init__()
        self.graph, self.part = graph, part

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        z = self.graph.standardize(window)
        return self.graph.autoencoder(z) if self.part == "autoencoder" else self.graph.classifier(z)


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
                               len(s.get("classes") or []))

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
        fit_part, held = split_normal(segments, cfg.holdout, cfg.window)
        n_fit = sum(len(s.rows) for s in fit_part)
        n_held = sum(len(s.rows) for s in held)
        need = max(2 * len(variables), 5 * cfg.window, 50)
        if n_fit < need or n_held <= cfg.window:
            raise DataError(f"{records.source}: {n_fit + n_held} normal samples in stretches long enough for a "
                            f"window of {cfg.window}; expected at least {need} to fit on plus {cfg.window + 1} to set "
                            f"the limits on (holdout {cfg.holdout:g}). Give more normal operation, or a shorter "
                            "--window")
        values = records.values(variables).astype(np.float64)
        fit_rows = np.concatenate([s.rows for s in fit_part])
        mean, std = values[fit_rows].mean(0), values[fit_rows].std(0)
        std = np.where(std > 0, std, 1.0)
        z = ((values - mean) / std).astype(np.float32)
        loadings, eigenvalues = fit_pca(z[fit_rows], cfg.pca_variance)
        classes = [NORMAL, *records.faults] if cfg.classify and records.faults else []
        self.state.update({
            "variables": variables, "constant_variables": constant, "n_components": int(loadings.shape[1]),
            "classes": classes, "unobservable": list(records.unobservable),
            "n_fit_samples": int(n_fit), "n_limit_samples": int(n_held), "training_runs": len(records.runs),
            "input": {"name": "window", "shape": ["batch", cfg.window, len(variables)], "dtype": "float32",
                      "columns": variables, "values": "raw readings, oldest first; standardisation is in the graph"},
        })
        graph = self.build_model()
        graph.standardize.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        graph.standardize.std.copy_(torch.as_tensor(std, dtype=torch.float32))
        graph.pca.loadings.copy_(torch.as_tensor(loadings))
        graph.pca.eigenvalues.copy_(torch.as_tensor(eigenvalues))
        self.data_fingerprint = fingerprint_arrays(values)
        log_dir = Path(out_dir) / "training" if out_dir is not None else None
        raw = values.astype(np.float32)
        train_w, held_w = segment_windows(raw, fit_part, cfg.window), segment_windows(raw, held, cfg.window)
        summary = self._fit_autoencoder(graph, train_w, held_w, log_dir)
        graph.eval()
        held_scores = self._torch_statistics(graph, raw, held, held_w)
        graph.limits.copy_(torch.as_tensor([control_limit(held_scores[k], cfg.false_alarm_rate)
                                            for k in ("score", "t2", "spe")], dtype=torch.float32))
        self.metrics = {"n_components": int(loadings.shape[1]), "autoencoder_val_loss": summary["best_score"],
                        "autoencoder_epochs": summary["epochs_run"], "n_train_windows": int(len(train_w)),
                        "n_limit_windows": int(len(held_w))}
        if classes:
            self.metrics.update(self._fit_classifier(graph, records, raw, classes, log_dir))
        self.state["limits"] = dict(zip(("score", "t2", "spe"), graph.limits.tolist()))
        self.torch_model = graph.eval()
        self.export()
        if out_dir is not None:
            self.save(out_dir)
        return self

    def _fit_autoencoder(self, graph: MonitoringGraph, train_w: np.ndarray, held_w: np.ndarray,
                         log_dir: Path | None) -> dict[str, Any]:
        cfg = self.config
        noise = cfg.input_noise * graph.standardize.std

        def add_noise(x: torch.Tensor) -> torch.Tensor:
            return x + noise.to(x.device) * torch.randn_like(x)

        module = SupervisedModule(_Standardized(graph, "autoencoder"), _StandardizedMSE(graph), cfg.training,
                                  train_transform=add_noise, task_kind="regression")
        return fit_supervised(module, _loader(train_w, train_w, cfg.training.batch_size, True, cfg.training.seed),
                              _loader(held_w, held_w, 1024, False, 0), cfg.training,
                              log_dir / "autoencoder" if log_dir is not None else None)

    @staticmethod
    def _torch_statistics(graph: MonitoringGraph, raw: np.ndarray, segments: list[Segment],
                          windows: np.ndarray) -> dict[str, np.ndarray]:
        """Unnormalised statistics of held-out data: autoencoder score per window, T2/SPE per sample."""
        with torch.no_grad():
            z = graph.standardize(torch.as_tensor(raw[np.concatenate([s.rows for s in segments])]))
            t2, spe, _, _ = graph.pca(z)
            score = torch.cat([graph.reconstruction_parts(graph.standardize(torch.as_tensor(windows[sl]))).sum(-1)
                               for sl in batched(len(windows), 1024)])
        return {"score": score.numpy(), "t2": t2.numpy(), "spe": spe.numpy()}

    def _fit_classifier(self, graph: MonitoringGraph, records: ProcessRecords, raw: np.ndarray, classes: list[str],
                        log_dir: Path | None) -> dict[str, Any]:
        """Train the classifier on windows inside each stretch of one label; the late share of each is validation."""
        cfg = self.config
        labels = records.frame[LABEL].to_numpy()
        train_x, train_y, val_x, val_y = [], [], [], []
        for rows in records.frame.groupby(RUN, sort=False).indices.values():
            breaks = np.flatnonzero(labels[rows][1:] != labels[rows][:-1]) + 1
            for block in np.split(rows, breaks):
                fit_part, held = split_normal([Segment("", block)], cfg.training.val_fraction, cfg.window)
                y = classes.index(labels[block[0]])
                for part, xs, ys in ((fit_part, train_x, train_y), (held, val_x, val_y)):
                    w = segment_windows(raw, part, cfg.window)
                    xs.append(w)
                    ys.append(np.full(len(w), y, dtype=np.int64))
        x, y = np.concatenate(train_x), np.concatenate(train_y)
        vx, vy = np.concatenate(val_x), np.concatenate(val_y)
        if not len(vx):
            vx, vy = x, y
        train_cfg = cfg.training.model_copy(update={"epochs": cfg.classifier_epochs,
                                                    "patience": min(cfg.training.patience, 8)})
        counts = np.bincount(y, minlength=len(classes)).astype(np.float32)
        weights = torch.as_tensor(counts.sum() / np.maximum(counts, 1) / len(classes))
        module = SupervisedModule(_Standardized(graph, "classifier"), nn.CrossEntropyLoss(weight=weights),
                                  train_cfg, task_kind="classification")
        summary = fit_supervised(module, _loader(x, y, train_cfg.batch_size, True, train_cfg.seed),
                                 _loader(vx, vy, 1024, False, 0), train_cfg,
                                 log_dir / "classifier" if log_dir is not None else None)
        with torch.no_grad():
            predicted = torch.cat([module(torch.as_tensor(vx[sl])).argmax(1) for sl in batched(len(vx), 1024)])
        return {"classifier_val_accuracy": float((predicted.numpy() == vy).mean()),
                "classifier_epochs": summary["epochs_run"], "n_classifier_windows": int(len(x))}

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


class _StandardizedMSE(nn.Module):
    """MSE between the reconstruction (standardised units) and the standardised target window."""

    def __init__(self, graph: MonitoringGraph):
        super().__init__()
        self.graph = graph

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((reconstruction - self.graph.standardize(target)) ** 2).mean()


def _top(values: np.ndarray, names: Sequence[str], k: int) -> list[dict[str, Any]]:
    order = np.argsort(-np.asarray(values))[:k]
    return [{"variable": str(names[i]), "contribution": float(values[i])} for i in order]


__all__ = ["MonitoringConfig", "ProcessMonitoring"]

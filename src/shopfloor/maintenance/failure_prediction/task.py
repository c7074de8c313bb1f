"""Failure prediction: will this record (machine state, process values) end in a failure, and which mode?

Data: a CSV/Parquet table (AI4I 2020 layout by default) with a 0/1 target column and optional 0/1
failure-mode columns; see :mod:`shopfloor.maintenance.tabular`. The model is a cross-fitted ensemble of
MLPs (each with a linear "wide" part) over standardised and piecewise-linear-encoded features,
including physically meaningful derived features and their crosses with categories, all computed
inside the exported graph. With ``folds`` = k (and ``repeats`` = r), k members per repeat are each
trained on k−1 folds and early-stopped on the remaining one; their out-of-fold estimates (the mean
logit of the members that held a record out) cover the whole training table and are where the
decision thresholds (max F1) are chosen — on validation data, never on the data a member trained
on — and stored in the graph.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shopfloor.core.artifact import fingerprint_arrays
from shopfloor.core.config import StrictModel, TrainingConfig
from shopfloor.core.custom import ModelContract, UserModelConfig, build_user_model, is_user_model, model_field
from shopfloor.core.errors import DataError
from shopfloor.core.ranges import InputRanges
from shopfloor.core.task import OnnxSignature, TableColumns, Task, batched, read_inputs, to_jsonable
from shopfloor.core.tables import read_table
from shopfloor.core.training import SupervisedModule, fit_supervised, seed_everything

from ..checks import describe_id_like, id_like_columns, list_items
from ..tabular import (
    AI4I_DERIVED,
    AI4I_ID_COLUMNS,
    AI4I_MODES,
    AI4I_ORDINAL,
    TabularSchema,
    binary_column,
    encode,
    fit_schema,
    require_columns,
)
from .models import FailureEnsemble, PackedInput, TabularFeatures, TabularNet

log = logging.getLogger(__name__)

# a failure alarm that fires on more than this share of the normal out-of-fold records cannot work (training warning)
MAX_NORMAL_ALARM_RATE = 0.5
# a threshold chosen on fewer failure records than this is a guess (training warning)
MIN_THRESHOLD_POSITIVES = 20


class FailureTrainingConfig(TrainingConfig):
    """Training defaults of failure prediction (a subclass, so a partial ``training`` dict keeps them)."""

    epochs: int = Field(40, ge=1, description="epochs per ensemble member")
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    patience: int = Field(40, ge=1, description="early-stopping patience; the default lets the one-cycle "
                          "schedule run out (the best validation-loss checkpoint is kept)")


class FailurePredictionConfig(UserModelConfig):
    """Settings of the failure-prediction task."""

    target: str = Field("Machine failure", description="0/1 column: did the record end in a failure")
    failure_modes: list[str] | None = Field(
        None, description="0/1 failure-mode columns; default: those of TWF, HDF, PWF, OSF, RNF present")
    id_columns: list[str] = Field(default_factory=lambda: list(AI4I_ID_COLUMNS),
                                  description="identifier columns left out of the features (when present)")
    features: list[str] | None = Field(None, description="feature columns; default: all other columns")
    derived_features: list[str] | None = Field(
        None, description="'name = col_a op col_b' (op: * / - +) computed in the graph; default: the AI4I "
                          "physics features (power, temperature difference, strain) when their columns exist")
    ordinal: dict[str, list[str]] | None = Field(
        None, description="categorical columns with ordered categories, lowest first (their crosses also get "
                          "'at least this category' features); default: AI4I's Type L < M < H when present")
    impute: bool = Field(False, description="fill missing values with training medians / most frequent category")
    max_categories: int = Field(50, ge=2)
    builtin_models, builtin_options = ("mlp",), False
    model: str = model_field("mlp", ("mlp",), "network on the encoded features (hidden/dropout shape the mlp)")
    hidden: list[int] = Field(default_factory=lambda: [128, 128])
    dropout: float = Field(0.1, ge=0, lt=1)
    wide: bool = Field(True, description="add a linear (wide) layer on the encoded features to the MLP's logits")
    binning: Literal["tree", "quantile", "none"] = Field(
        "tree", description="piecewise-linear encoding bins: decision-tree split points, quantiles, or none")
    bins: int = Field(16, ge=1, le=256)
    crosses: Literal["derived", "none"] = Field(
        "derived", description="cross each derived feature with each categorical column (per-category thresholds)")
    positive_weight: float = Field(5.0, gt=0, description="weight of positive labels in the loss")
    folds: int = Field(5, ge=1, le=20, description="cross-fitted ensemble members; 1 = one val_fraction split")
    repeats: int = Field(1, ge=1, le=10, description="cross-fitting repeated with other fold draws (folds x repeats "
                         "members); each record's out-of-fold estimate averages the members that held it out")
    alarm_mode_min_f1: float = Field(
        0.5, ge=0, le=1, description="a mode's alarm also raises the failure alarm when its validation F1 reaches this")
    training: FailureTrainingConfig = FailureTrainingConfig()


class FailureEvaluateOptions(StrictModel):
    """Options of ``shopfloor evaluate`` for failure prediction."""

    threshold: float | None = Field(None, gt=0, lt=1,
                                    description="override the stored failure threshold (default: the stored one)")


def _max_f1_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of ``p >= threshold``; 0.5 and 0 when ``y`` has no positive.

    Every threshold between the lowest probability the best alarm set includes and the highest one it
    leaves out gives the same F1 here; the midpoint of that gap in logit space is taken (not its upper
    edge, where a positive sits exactly on the threshold), so the rule keeps a margin on both sides when
    it is applied to the ensemble's averaged probabilities.
    """
    if y.sum() == 0:
        return 0.5, 0.0
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    best = int(np.argmax(f1))
    upper = float(thresholds[best])
    below = p[p < upper]
    if below.size == 0:
        return upper, float(f1[best])
    edges = np.clip(np.array([upper, float(below.max())]), 1e-7, 1 - 1e-7)
    middle = float(np.log(edges / (1 - edges)).mean())
    return 1 / (1 + math.exp(-middle)), float(f1[best])


def binary_metrics(y: np.ndarray, alarm: np.ndarray, probability: np.ndarray) -> dict[str, Any]:
    """Precision, recall, F1 of 0/1 ``alarm``; PR-AUC (average precision) and ROC-AUC of ``probability``."""
    tp = int(((alarm == 1) & (y == 1)).sum())
    fp = int(((alarm == 1) & (y == 0)).sum())
    fn = int(((alarm == 0) & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    both = 0 < y.sum() < len(y)
    return {
        "precision": precision, "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "pr_auc": float(average_precision_score(y, probability)) if both else None,
        "roc_auc": float(roc_auc_score(y, probability)) if both else None,
        "support": int(y.sum()), "true_positives": tp, "false_positives": fp, "false_negatives": fn,
    }


def _input_name(index: int, item: Any) -> str:
    """How a predict input is named in messages, result rows and skipped rows."""
    return f"<DataFrame {index}>" if isinstance(item, pd.DataFrame) else str(item)


def _inputs_note(schema: TabularSchema, id_columns: Sequence[str]) -> str:
    """The training note that lists the model's inputs (so an unintended column is seen at once)."""
    derived = [str(d) for d in schema.derived]
    return (f"model inputs: {len(schema.numeric)} numeric [{', '.join(schema.numeric)}], {len(schema.categorical)} "
            f"categorical [{', '.join(schema.categorical)}]" + (f", derived [{'; '.join(derived)}]" if derived else "")
            + (f"; left out as identifiers: [{', '.join(id_columns)}]" if id_columns else "")
            + (f"; dropped as constant: [{', '.join(schema.dropped_constant)}]" if schema.dropped_constant else "")
            + ". Choose them with --features or leave columns out with --id-columns")


class FailurePrediction(Task):
    """Tabular failure prediction with per-mode outputs and stored thresholds (see module docstring)."""

    name = "failure-prediction"
    input_kind = "table"
    input_suffixes = (".csv", ".parquet", ".pq")
    Config = FailurePredictionConfig
    EvaluateOptions = FailureEvaluateOptions
    predates = {"wide": False}

    # ----------------------------------------------------------------- schema and model
    @property
    def schema(self) -> TabularSchema:
        return TabularSchema(**self.state["schema"])

    @property
    def modes(self) -> list[str]:
        return list(self.state["modes"])

    @classmethod
    def quality_data(cls, data: Any, model: Task | None = None, **options: Any) -> Any:
        """The table for `shopfloor check`: the target as label; failure-mode and identifier columns left out."""
        from ..quality import failure_table_quality_data

        return failure_table_quality_data(model.config if model is not None else cls.Config(), data)

    def table_columns(self) -> TableColumns:
        """The raw numeric and categorical columns each record carries (derived features are computed)."""
        self.require_model()
        schema = self.schema
        return TableColumns(values=(*schema.numeric, *schema.categorical), text=tuple(schema.categorical))

    def _resolve_columns(self, frame: pd.DataFrame) -> tuple[list[str], list[str], dict[str, list[str]]]:
        cfg = self.config
        require_columns(frame, [cfg.target], "target column")
        if cfg.failure_modes is None:
            modes = [m for m in AI4I_MODES if m in frame.columns]
        else:
            require_columns(frame, cfg.failure_modes, "failure-mode column")
            modes = list(cfg.failure_modes)
        derived = cfg.derived_features
        if derived is None:
            needed = ("Torque [Nm]", "Rotational speed [rpm]", "Process temperature [K]", "Air temperature [K]",
                      "Tool wear [min]")
            derived = list(AI4I_DERIVED) if all(c in frame.columns for c in needed) else []
        ordinal = cfg.ordinal
        if ordinal is None:  # the AI4I default, where that column is a varying feature holding those values
            features = cfg.features if cfg.features is not None else [
                c for c in frame.columns if c not in {cfg.target, *modes, *cfg.id_columns}]
            ordinal = {c: list(order) for c, order in AI4I_ORDINAL.items()
                       if c in features and c in frame.columns and frame[c].nunique() > 1
                       and set(frame[c].dropna().astype(str)) <= set(order)}
        return modes, derived, ordinal

    def _member(self, schema: TabularSchema) -> TabularNet:
        numeric = schema.numeric
        derived = [(numeric.index(d.left), d.op, numeric.index(d.right)) for d in schema.derived]
        crosses, ordinal_crosses = [], []
        if self.config.crosses == "derived":
            crosses = [(len(numeric) + i, c) for i in range(len(derived)) for c in range(len(schema.categorical))]
            ordinal_crosses = [(f, c) for f, c in crosses if list(schema.categorical)[c] in schema.ordinal]
        features = TabularFeatures(len(numeric), derived, [len(c) for c in schema.categorical.values()],
                                   n_bins=0 if self.config.binning == "none" else self.config.bins, crosses=crosses,
                                   ordinal_crosses=ordinal_crosses)
        net = TabularNet(features, 1 + len(self.modes), self.config.hidden, self.config.dropout, self.config.wide)
        if is_user_model(self.config.model):  # the user's network replaces the MLP on the encoded features
            net.mlp = build_user_model(self.config.model, self.config.model_options, ModelContract(
                (features.out_features,), 1 + len(self.modes), "encoded features", "logits: failure, then modes"))
        return net

    def build_model(self) -> nn.Module:
        schema = self.schema
        return FailureEnsemble([self._member(schema) for _ in range(self.state["n_members"])], 1 + len(self.modes))

    def onnx_signature(self) -> OnnxSignature:
        schema = self.schema
        numeric = torch.tensor(self.state["example_numeric"], dtype=torch.float64).repeat(2, 1)
        categorical = torch.zeros(2, max(len(schema.categorical), 1), dtype=torch.int64)
        return OnnxSignature(example_inputs=(numeric, categorical), input_names=["numeric", "categorical"],
                             output_names=["failure_probability", "mode_probabilities", "failure_alarm", "mode_alarms"])

    def _inputs(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        numeric, categorical = encode(frame, self.schema)
        if categorical.shape[1] == 0:
            categorical = np.zeros((len(frame), 1), dtype=np.int64)  # placeholder input, unused by the graph
        return numeric, categorical

    def _targets(self, frame: pd.DataFrame, modes: Sequence[str]) -> np.ndarray:
        columns = [self.config.target, *modes]
        return np.stack([binary_column(frame, c) for c in columns], axis=1).astype(np.float32)

    # ----------------------------------------------------------------- fit
    def fit(self, data: str | Path | pd.DataFrame, out_dir: str | Path | None = None) -> "FailurePrediction":
        cfg, train_cfg = self.config, self.training
        seed_everything(train_cfg.seed)
        frame = read_table(data)
        modes, derived, ordinal = self._resolve_columns(frame)
        exclude = [cfg.target, *modes, *cfg.id_columns]
        soft = self._check_id_like(frame, exclude) if cfg.features is None else []
        schema = fit_schema(frame, exclude, cfg.features, derived, cfg.impute, cfg.max_categories, ordinal)
        self.state = {"schema": schema.model_dump(), "modes": modes, "target": cfg.target, "n_members": 1,
                      "example_numeric": [0.0] * len(schema.numeric)}
        numeric, categorical = self._inputs(frame)
        targets = self._targets(frame, modes)
        self.state["training_columns"] = [str(c) for c in frame.columns]
        self.state["notes"] = [_inputs_note(schema, [c for c in cfg.id_columns if c in frame.columns])]
        log.info("%s", self.state["notes"][0])
        self.state["input_ranges"] = InputRanges.fit(numeric, schema.numeric).to_state()
        for message in soft:
            self.note_warning(message)
        self._check_duplicates(frame)
        positives = int(targets[:, 0].sum())
        if positives < max(2, cfg.folds) or positives == len(frame):
            raise DataError(f"column {cfg.target!r} has {positives} failures in {len(frame)} rows; training needs "
                            f"at least {max(2, cfg.folds)} failures and some non-failures")
        self.data_fingerprint = fingerprint_arrays(numeric, categorical, targets)
        folds = self._folds(targets[:, 0])
        members, summaries = [], []
        logit_sum, held_out = np.zeros(targets.shape, dtype=np.float64), np.zeros(len(targets))
        for k, (train_idx, val_idx) in enumerate(folds):
            seed_everything(train_cfg.seed + k)
            member, summary = self._fit_member(schema, numeric, categorical, targets, train_idx, val_idx,
                                               Path(out_dir) / "training" / f"member_{k}" if out_dir else None)
            with torch.no_grad():
                logit_sum[val_idx] += member(torch.from_numpy(numeric[val_idx]),
                                             torch.from_numpy(categorical[val_idx])).numpy()
            held_out[val_idx] += 1
            members.append(member.eval())
            summaries.append(summary)
        validated = held_out > 0
        # like the ensemble: the sigmoid of the mean logit of the members that held the record out
        out_of_fold = 1 / (1 + np.exp(-logit_sum[validated] / held_out[validated, None]))
        self.state["n_members"] = len(members)
        self.state["example_numeric"] = numeric[0].tolist()
        ensemble = FailureEnsemble(members, 1 + len(modes))
        self._choose_thresholds(ensemble, targets[validated], out_of_fold, schema)
        self.torch_model = ensemble.eval()
        self.export()
        self.metrics = {**self.state["validation"], "n_train": int(len(frame)), "n_failures": positives,
                        "members": len(members), "epochs_run": [s["epochs_run"] for s in summaries]}
        if out_dir is not None:
            self.save(out_dir)
        return self

    def _check_id_like(self, frame: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
        """Inferred feature columns that look like identifiers: refused when they clearly are (a row counter, an
        id unique per row); returned as warnings when they may be real effects (a repeating batch number...)."""
        id_columns = list(self.config.id_columns)
        candidates = [c for c in frame.columns if c not in set(exclude)]
        found = id_like_columns(frame, candidates)

        def fix(names) -> str:
            return f"--id-columns '{','.join(dict.fromkeys([*id_columns, *names]))}'"

        refused = [f for f in found if f.refuse]
        if refused:
            raise DataError(f"column(s) {describe_id_like(refused)} look like identifiers, not features: the model "
                            "would learn the row order instead of the process. Leave them out with "
                            f"{fix(f.column for f in refused)}, or choose the inputs with --features")
        return [f"feature column {describe_id_like([f])} is a model input; if it is an identifier, leave it out "
                f"with {fix([f.column])}" for f in found]

    def _check_duplicates(self, frame: pd.DataFrame) -> None:
        """Records that repeat an earlier one in every column but the identifiers: a warning kept in the model."""
        columns = [c for c in frame.columns if c not in set(self.config.id_columns)]
        hashes = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
        copies = np.flatnonzero(pd.Series(hashes).duplicated().to_numpy())
        if not len(copies):
            return
        first = {}
        for row, value in enumerate(hashes):
            first.setdefault(value, row)
        pairs = [f"{row} = {first[hashes[row]]}" for row in copies]
        self.note_warning(f"{len(copies)} of {len(frame)} records repeat an earlier record in every column but the "
                          f"identifiers (rows {list_items(pairs, 5)}): a copy can sit on the other side of a "
                          "cross-fitting fold, which makes the out-of-fold thresholds and validation scores "
                          "optimistic. Drop them (DataFrame.drop_duplicates) unless they are real repeated records")

    def _folds(self, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import StratifiedKFold

        from shopfloor.core.split import stratified_split

        seed = self.training.seed
        if self.config.folds == 1:
            return [stratified_split(y.astype(int), self.training.val_fraction, seed + 1000 * r)
                    for r in range(self.config.repeats)]
        return [(a, b) for r in range(self.config.repeats)
                for a, b in StratifiedKFold(self.config.folds, shuffle=True, random_state=seed + 1000 * r)
                .split(np.zeros(len(y)), y)]

    def _fit_member(self, schema: TabularSchema, numeric: np.ndarray, categorical: np.ndarray, targets: np.ndarray,
                    train_idx: np.ndarray, val_idx: np.ndarray, log_dir: Path | None) -> tuple[TabularNet, dict]:
        cfg, train_cfg = self.config, self.training
        member = self._member(schema)
        member.features.fit(torch.from_numpy(numeric[train_idx]), torch.from_numpy(categorical[train_idx]),
                            torch.from_numpy(targets[train_idx]) if cfg.binning == "tree" else None,
                            seed=train_cfg.seed)
        packed = np.concatenate([numeric, categorical.astype(np.float64)], axis=1)
        weight = torch.full((targets.shape[1],), cfg.positive_weight)
        module = SupervisedModule(PackedInput(member, numeric.shape[1]), nn.BCEWithLogitsLoss(pos_weight=weight),
                                  train_cfg, task_kind="multilabel")
        generator = torch.Generator().manual_seed(train_cfg.seed)
        loader = DataLoader(TensorDataset(torch.from_numpy(packed[train_idx]), torch.from_numpy(targets[train_idx])),
                            batch_size=train_cfg.batch_size, shuffle=True, generator=generator,
                            num_workers=train_cfg.num_workers)
        val_loader = DataLoader(TensorDataset(torch.from_numpy(packed[val_idx]), torch.from_numpy(targets[val_idx])),
                                batch_size=1024, num_workers=train_cfg.num_workers)
        summary = fit_supervised(module, loader, val_loader, train_cfg, log_dir)
        return member.eval(), summary

    def _choose_thresholds(self, ensemble: FailureEnsemble, y: np.ndarray, p: np.ndarray, schema: TabularSchema) -> None:
        """Max-F1 thresholds per output on validation (out-of-fold) probabilities; modes whose validation
        F1 reaches ``alarm_mode_min_f1`` also raise the failure alarm."""
        thresholds, f1s = zip(*(_max_f1_threshold(y[:, j], p[:, j]) for j in range(y.shape[1])))
        in_alarm = [f >= self.config.alarm_mode_min_f1 for f in f1s[1:]]
        ensemble.thresholds.copy_(torch.tensor(thresholds, dtype=torch.float32))
        ensemble.mode_in_alarm.copy_(torch.tensor(in_alarm, dtype=torch.float32))
        alarm = (p[:, 0] >= thresholds[0]).astype(int)
        for j, used in enumerate(in_alarm):
            if used:
                alarm |= (p[:, j + 1] >= thresholds[j + 1]).astype(int)
        validation = binary_metrics(y[:, 0], alarm, p[:, 0])
        self.state["thresholds"] = {"failure": thresholds[0], **dict(zip(self.modes, thresholds[1:]))}
        self.state["modes_in_alarm"] = [m for m, used in zip(self.modes, in_alarm) if used]
        self.state["validation"] = {f"val_{k}": v for k, v in validation.items() if k in ("f1", "precision", "recall",
                                                                                           "pr_auc", "roc_auc")}
        self.state["validation"]["val_mode_f1"] = dict(zip(self.modes, f1s[1:]))
        normal = y[:, 0] == 0
        rate = float(alarm[normal].mean()) if normal.any() else 0.0
        self.state["validation"]["val_normal_alarm_rate"] = rate
        self._check_thresholds(y, alarm, rate, thresholds[0], in_alarm)

    def _check_thresholds(self, y: np.ndarray, alarm: np.ndarray, rate: float, threshold: float,
                          in_alarm: Sequence[bool]) -> None:
        """Training warnings for alarm rules that cannot work: one firing on most normal records, or chosen on
        too few failures (the model is saved either way; the warnings stay in it)."""
        normal = y[:, 0] == 0
        if rate > MAX_NORMAL_ALARM_RATE:
            self.note_warning(
                f"the failure alarm (threshold {threshold:.3g}) fires on {rate:.0%} of the normal out-of-fold records "
                f"({int(alarm[normal].sum())} of {int(normal.sum())}; the limit is {MAX_NORMAL_ALARM_RATE:.0%}): the "
                "best F1 is close to alarming on everything, so the features barely tell failures from normal "
                "records. Collect more failure examples or features that explain them, or use another rule "
                "(evaluate --threshold on held-out data)")
        positives = int(y[:, 0].sum())
        if positives < MIN_THRESHOLD_POSITIVES:
            self.note_warning(
                f"the failure threshold was chosen on only {positives} failure record(s) (fewer than "
                f"{MIN_THRESHOLD_POSITIVES}), so its precision and recall are guesses; collect more failure examples "
                "and check the alarm with evaluate on held-out records before relying on it")
        few = [f"{m} ({int(y[:, j + 1].sum())})" for j, (m, used) in enumerate(zip(self.modes, in_alarm))
               if used and y[:, j + 1].sum() < MIN_THRESHOLD_POSITIVES]
        if few:
            self.note_warning(
                f"failure mode(s) {', '.join(few)} raise the failure alarm on thresholds chosen on fewer than "
                f"{MIN_THRESHOLD_POSITIVES} records each; collect more examples, or keep them out of the alarm with a "
                "higher --alarm-mode-min-f1")

    # ----------------------------------------------------------------- inference
    def _run(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return self._run_encoded(*self._inputs(frame))

    def _run_encoded(self, numeric: np.ndarray, categorical: np.ndarray) -> dict[str, np.ndarray]:
        names = set(self.runtime.input_names)
        batches = ({k: v for k, v in (("numeric", numeric[sl]), ("categorical", categorical[sl])) if k in names}
                   for sl in batched(len(numeric), 4096))
        return self.runtime.run_batches(batches)

    def evaluate(self, data: str | Path | pd.DataFrame, report_dir: str | Path | None = None,
                 **options: Any) -> dict[str, Any]:
        opts = self.EvaluateOptions(**options)
        frame = read_table(data)
        source = str(data) if not isinstance(data, pd.DataFrame) else "<DataFrame>"
        self._warn_unknown_columns(frame, source)
        y = self._targets(frame, self.modes)
        numeric, categorical = self._inputs(frame)
        flagged = self.flag_out_of_range("input_ranges", [f"{source} row {i}" for i in range(len(frame))], numeric)
        out = self._run_encoded(numeric, categorical)
        probability, alarm = out["failure_probability"], out["failure_alarm"].astype(int)
        if opts.threshold is not None:
            alarm = (probability >= opts.threshold).astype(int)
        metrics: dict[str, Any] = binary_metrics(y[:, 0], alarm, probability)
        metrics["threshold"] = opts.threshold or self.state["thresholds"]["failure"]
        metrics["modes_in_alarm"] = self.state.get("modes_in_alarm", [])
        per_mode = {}
        for j, mode in enumerate(self.modes):
            positives = y[:, j + 1] == 1
            entry = binary_metrics(y[:, j + 1], out["mode_alarms"][:, j].astype(int), out["mode_probabilities"][:, j])
            entry["alarm_recall"] = float(alarm[positives].mean()) if positives.any() else None
            per_mode[mode] = entry
        metrics["per_mode"] = per_mode
        metrics["n_test"] = int(len(frame))
        metrics["n_out_of_range"] = sum(1 for f in flagged if f) if "input_ranges" in self.state else None
        if report_dir is not None:
            metrics["report"] = str(self._write_report(Path(report_dir), y, out, alarm, metrics, frame))
        return to_jsonable(metrics)

    def _write_report(self, out: Path, y: np.ndarray, outputs: dict[str, np.ndarray], alarm: np.ndarray,
                      metrics: dict[str, Any], frame: pd.DataFrame | None = None) -> Path:
        from sklearn.metrics import roc_curve

        from shopfloor.core.report import Report, confusion_matrix_figure, precision_recall_figure, roc_curves_figure

        report = Report(out, "Failure prediction: evaluation")
        report.text(f"{metrics['n_test']} records, {int(y[:, 0].sum())} failures; failure threshold "
                    f"{metrics['threshold']:.3f} chosen on out-of-fold validation probabilities "
                    f"(modes that also raise the alarm: {', '.join(metrics['modes_in_alarm']) or 'none'}).")
        report.metrics({k: v for k, v in metrics.items() if k not in ("per_mode", "report")})
        report.table([{"mode": m, **{k: v for k, v in e.items() if v is not None}} for m, e in metrics["per_mode"].items()],
                     "Per failure mode (mode head at its threshold; alarm_recall = share caught by the failure alarm)")
        cm = np.array([[int(((alarm == 0) & (y[:, 0] == 0)).sum()), int(((alarm == 1) & (y[:, 0] == 0)).sum())],
                       [int(((alarm == 0) & (y[:, 0] == 1)).sum()), int(((alarm == 1) & (y[:, 0] == 1)).sum())]])
        report.figure(confusion_matrix_figure(cm, ["no failure", "failure"]), "confusion", "failure alarm")
        scores = {"failure": (y[:, 0], outputs["failure_probability"])}
        scores.update({m: (y[:, j + 1], outputs["mode_probabilities"][:, j]) for j, m in enumerate(self.modes)})
        curves = {}
        for name, (truth, prob) in scores.items():
            if 0 < truth.sum() < len(truth):
                fpr, tpr, _ = roc_curve(truth, prob)
                curves[name] = (fpr, tpr, float(roc_auc_score(truth, prob)))
        if curves:
            report.figure(roc_curves_figure(curves, "ROC: failure and modes"), "roc", "ROC curves")
            report.figure(precision_recall_figure(scores), "precision_recall", "precision-recall curves")
        if frame is not None and alarm.any():
            from shopfloor.core.explain.attribution import attribution_bar_figure

            alarmed = frame.iloc[np.flatnonzero(alarm)[:200]]
            attributions = self._attributions(alarmed)
            mean = np.array([[a[n] for n in self.schema.numeric] for a in attributions]).mean(axis=0)
            report.figure(attribution_bar_figure(mean, self.schema.numeric, "What raised the alarms",
                                                 "mean integrated-gradients attribution (probability)"),
                          "attributions", f"mean over {len(alarmed)} alarmed records, baseline = training means")
        return report.write()

    def predict(self, inputs: Sequence[str | Path | pd.DataFrame], out_dir: str | Path | None = None,
                explain: bool = False, skip_bad: bool = False) -> list[dict[str, Any]]:
        """One result per record of each input table (one path or DataFrame is one input): failure probability,
        alarm, mode probabilities; with ``explain``, integrated-gradients attribution of the failure probability
        per feature. A table that cannot be read or encoded refuses the batch (all problems listed); with
        ``skip_bad`` it is skipped and reported as a row ``{"input", "skipped": True, "error"}``. Records far
        outside the training ranges are flagged (``out_of_range``), refused when ``strict``."""
        if isinstance(inputs, (str, Path, pd.DataFrame)):
            inputs = [inputs]
        items = list(enumerate(inputs))

        def read(pair: tuple[int, Any]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, str]:
            frame = read_table(pair[1])
            source = _input_name(*pair)
            self._warn_unknown_columns(frame, source)
            return (frame, *self._inputs(frame), source)

        kept, skipped = read_inputs(items, read, skip_bad, name=lambda pair: _input_name(*pair))
        records = [f"{source} row {i}" for _, (frame, _, _, source) in kept for i in range(len(frame))]
        numeric_all = [numeric for _, (_, numeric, _, _) in kept]
        flagged = iter(self.flag_out_of_range(
            "input_ranges", records,
            np.concatenate(numeric_all) if numeric_all else np.zeros((0, len(self.schema.numeric)))))
        mark = "input_ranges" in self.state
        rows_of: dict[int, list[dict[str, Any]]] = {}
        for index, (frame, numeric, categorical, source) in kept:
            out = self._run_encoded(numeric, categorical)
            attributions = self._attributions(frame) if explain else None
            rows = rows_of[index] = []
            for i in range(len(frame)):
                modes = {m: float(out["mode_probabilities"][i, j]) for j, m in enumerate(self.modes)}
                result = {"input": source, "row": i, "failure": bool(out["failure_alarm"][i]),
                          "probability": float(out["failure_probability"][i]), "modes": modes,
                          "modes_alarmed": [m for j, m in enumerate(self.modes) if out["mode_alarms"][i, j]]}
                columns = next(flagged)
                if mark:
                    self.mark_out_of_range([result], [columns])
                if attributions is not None:
                    result["attribution"] = attributions[i]
                rows.append(result)
        bad = iter(skipped)
        results = []
        for index, _ in items:
            results.extend(rows_of[index] if index in rows_of else [next(bad)])
        return results

    def _warn_unknown_columns(self, frame: pd.DataFrame, source: str) -> None:
        """Name the columns the model never saw in training (they are ignored), so a misnamed column is not
        silently dropped; missing ones are refused by the encoder."""
        known = set(self.state.get("training_columns") or [])
        unknown = [c for c in frame.columns if known and c not in known]
        if unknown:
            expected = [*self.schema.numeric, *self.schema.categorical]
            warnings.warn(f"{source}: column(s) {list_items(unknown)} were not in the training data and are ignored; "
                          f"the model reads {list_items(expected, 30)}", UserWarning, stacklevel=3)

    def _attributions(self, frame: pd.DataFrame) -> list[dict[str, float]]:
        """Integrated gradients of the failure probability w.r.t. the raw numeric features (baseline:
        the training means), in probability units."""
        from captum.attr import IntegratedGradients

        numeric, categorical = self._inputs(frame)
        ensemble = self.require_model().eval()
        x = torch.from_numpy(numeric)
        baseline = ensemble.members[0].features.mean[: x.shape[1]].unsqueeze(0).expand_as(x)

        def failure_probability(values: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
            return ensemble.probabilities(values, codes)[:, 0]

        attr = IntegratedGradients(failure_probability).attribute(
            x, baselines=baseline, additional_forward_args=(torch.from_numpy(categorical),), n_steps=32)
        names = self.schema.numeric
        return [{n: float(v) for n, v in zip(names, row)} for row in attr.detach().numpy()]

    @classmethod
    def demo(cls, out_dir: Path) -> dict[str, Any]:
        """Synthetic process records with rule-driven failures: generate, train, evaluate, predict."""
        from .simulator import make_process_records

        out_dir = Path(out_dir)
        data = out_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        records = make_process_records(4000, seed=0)
        train, test = records.iloc[:3000], records.iloc[3000:]
        train.to_csv(data / "train.csv", index=False)
        test.to_csv(data / "test.csv", index=False)
        task = cls(folds=3, training={"epochs": 20})
        task.fit(data / "train.csv", out_dir=out_dir / "model")
        metrics = task.evaluate(data / "test.csv", report_dir=out_dir / "report")
        predictions = task.predict([test.head(3)], explain=True)
        test.head(20).to_csv(data / "recent.csv", index=False)  # what the line would send to the server
        return {"task": cls.name, "test_f1": metrics["f1"], "test_pr_auc": metrics["pr_auc"],
                "test_recall": metrics["recall"], "n_test": metrics["n_test"], "model": str(out_dir / "model"),
                "report": metrics["report"], "predictions": predictions,
                "sample_inputs": [str(data / "recent.csv")]}

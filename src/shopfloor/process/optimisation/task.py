"""``process-optimisation``: learn how settings drive quality from the plant's records, recommend better settings.

Data: a table of settings, context and quality results (see :mod:`.data`; validated at the edge). Fit runs
cross-validation first — grouped by job when the table names one (``--group``), the surrogate scored through its
exported graph beside gradient boosting on the same folds (:mod:`.validation`) — then trains the deep ensemble
surrogate (:mod:`.surrogate`) on every record and exports it. The ONNX graph takes the raw settings and context and
returns, per numeric result, the mean, std, interval and model std; per class result, the class probabilities.

``predict`` gives the predicted quality of given settings with intervals; :meth:`ProcessOptimisation.recommend`
runs the optimiser (:mod:`.recommend`) over the same graph; ``evaluate`` scores labelled records and writes the
report with the cross-validation table, parity plots and partial-dependence sensitivities (:mod:`.report`).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from shopfloor.core.artifact import Artifact, fingerprint_arrays
from shopfloor.core.config import StrictModel, TrainingConfig
from shopfloor.core.errors import ConfigError
from shopfloor.core.tables import read_table
from shopfloor.core.ranges import InputRanges
from shopfloor.core.task import OnnxSignature, TableColumns, Task, batched, read_inputs, to_jsonable
from shopfloor.core.training import seed_everything

from . import recommend as rec
from .data import ProcessSchema, TableSpec, encode_inputs, encode_results, fit_schema, groups_of
from .surrogate import SurrogateEnsemble, train_ensemble
from .validation import class_scores, cross_validate, regression_scores

log = logging.getLogger(__name__)
RECORDS_FILE = "records.csv"


class OptimisationTrainingConfig(TrainingConfig):
    """Training defaults for process tables (hundreds to thousands of records)."""

    epochs: int = Field(150, ge=1, description="epochs (all ensemble members train together)")
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    patience: int = Field(40, ge=1, description="early-stopping patience on the held-out loss")
    val_fraction: float = Field(0.15, gt=0, lt=0.9, description="records (whole groups when there are groups) "
                                "held out to stop training")


class OptimisationConfig(StrictModel):
    """Settings of the process-optimisation task."""

    data: TableSpec = TableSpec()
    members: int = Field(5, ge=2, le=20, description="ensemble members")
    hidden: list[int] = Field(default_factory=lambda: [64, 64], description="hidden layer widths of each member")
    interval: float = Field(0.9, gt=0, lt=1, description="central prediction interval (lower/upper)")
    log_transform: Literal["auto", "none"] = Field(
        "auto", description="model positive inputs and results spanning a factor of 10 on a log scale")
    cv_folds: int = Field(5, ge=0, le=20, description="cross-validation folds (grouped by job when there is a "
                          "group); 0 skips cross-validation")
    baseline: bool = Field(True, description="fit gradient boosting on the same folds as the reference")
    keep_records: bool = Field(True, description="store the training records in the model directory (best "
                               "observed record per context, support check of recommendations)")
    training: OptimisationTrainingConfig = OptimisationTrainingConfig()


class RecommendOptions(StrictModel):
    """What ``recommend`` searches for (see :mod:`.recommend`)."""

    fix: dict[str, Any] = Field(default_factory=dict, description="context (and settings) held fixed")
    minimise: list[str] = Field(default_factory=list)
    maximise: list[str] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)
    bounds: dict[str, str] = Field(default_factory=dict, description="setting -> 'low:high'")
    n: int = Field(5, ge=1, le=100)
    trials: int = Field(400, ge=8, le=20000)
    penalty: float = Field(1.0, ge=0, description="uncertainty penalty: objectives and constraints are judged at "
                           "mean ± penalty × model_std")
    seed: int = 0


class ProcessOptimisation(Task):
    """Deep-ensemble surrogate of settings -> quality, with recommendations (see module docstring)."""

    name = "process-optimisation"
    input_kind = "table"
    input_suffixes = (".csv", ".parquet", ".pq")
    Config = OptimisationConfig
    precision_checks = {"mean": "value", "std": "report", "model_std": "report", "lower": "value", "upper": "value",
                        "probabilities": "top1", "probability_std": "report"}

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.records: pd.DataFrame | None = None

    # ----------------------------------------------------------------- schema and model
    @property
    def schema(self) -> ProcessSchema:
        return ProcessSchema(**self.state["schema"])

    def table_columns(self) -> TableColumns:
        self.require_model()
        schema = self.schema
        return TableColumns(values=tuple(schema.inputs), text=tuple(schema.categorical_context))

    def _graph(self, schema: ProcessSchema) -> SurrogateEnsemble:
        return SurrogateEnsemble(len(schema.numeric), [len(v) for v in schema.categorical_context.values()],
                                 len(schema.regression), [len(v) for v in schema.classes.values()],
                                 members=self.config.members, hidden=self.config.hidden, interval=self.config.interval)

    def build_model(self) -> nn.Module:
        return self._graph(self.schema)

    def onnx_signature(self) -> OnnxSignature:
        schema = self.schema
        numeric = torch.tensor([self.state["example_numeric"]] * 2, dtype=torch.float32)
        categorical = torch.zeros(2, max(1, len(schema.categorical_context)), dtype=torch.int64)
        return OnnxSignature(example_inputs=(numeric, categorical), input_names=["numeric", "categorical"],
                             output_names=self.require_model().output_names())

    # ----------------------------------------------------------------- fit
    def _train_one(self, schema: ProcessSchema, log_dir: Path | None = None):
        def train(numeric, categorical, targets, groups) -> SurrogateEnsemble:
            graph = self._graph(schema)
            train_ensemble(graph, numeric, categorical, targets, groups, self.training, self.config.log_transform,
                           log_dir)
            return graph
        return train

    def fit(self, data: str | Path | pd.DataFrame, out_dir: str | Path | None = None) -> "ProcessOptimisation":
        cfg = self.config
        seed_everything(self.training.seed)
        frame = read_table(data)
        schema = fit_schema(frame, cfg.data, cfg.cv_folds)
        numeric, categorical = encode_inputs(frame, schema, "the training table")
        targets = encode_results(frame, schema, "the training table")
        groups = groups_of(frame, schema)
        self.state = {"schema": schema.model_dump(), "example_numeric": numeric[0].tolist(), "warnings": [],
                      "input_ranges": InputRanges.fit(numeric, schema.numeric).to_state(),
                      "training_columns": [str(c) for c in frame.columns], "n_records": int(len(frame)),
                      "n_groups": int(len(np.unique(groups))) if groups is not None else None}
        for note in schema.notes:
            log.info("%s", note)
        self.data_fingerprint = fingerprint_arrays(numeric, categorical, targets)
        if cfg.cv_folds > 1:
            cv = cross_validate(numeric, categorical, targets, groups, schema.regression, schema.classes,
                                cfg.cv_folds, self.training.seed, self._train_one(schema),
                                len(schema.categorical_context), cfg.baseline)
            cv.pop("out_of_fold")
            self.state["cross_validation"] = cv
            self._note_cv(cv)
        log_dir = Path(out_dir) / "training" if out_dir is not None else None
        self.torch_model = self._train_one(schema, log_dir)(numeric, categorical, targets, groups)
        if cfg.keep_records:
            keep = [c for c in [*schema.inputs, *schema.results, schema.group] if c and c in frame.columns]
            self.records = frame[list(dict.fromkeys(keep))].reset_index(drop=True)
            self.state["context_of_group"] = self._context_of_groups(frame, schema)
        self.export()
        self.metrics = {"cross_validation": self.state.get("cross_validation", {}).get("results")}
        if out_dir is not None:
            self.save(out_dir)
        return self

    def _note_cv(self, cv: dict[str, Any]) -> None:
        for name, entry in cv["results"].items():
            ours, ref = entry["surrogate"], entry.get("gradient_boosting")
            key = "r2" if "r2" in ours else "accuracy"
            line = f"cross-validation ({'grouped by job' if cv['grouped'] else 'records'}), {name}: surrogate " \
                   f"{key} {ours[key]:.3f}" + (f", gradient boosting {ref[key]:.3f}" if ref else "")
            log.info("%s", line)
            if ref and ref[key] > ours[key] + 0.02:
                self.note_warning(f"{line}: gradient boosting is ahead on {name}; more records, more epochs "
                                  "(--epochs) or a wider network (--hidden) may close the gap")

    @staticmethod
    def _context_of_groups(frame: pd.DataFrame, schema: ProcessSchema) -> dict[str, dict[str, Any]]:
        """Each group's context values (when constant within the group), so ``--fix part=X`` fills them."""
        if schema.group is None or schema.group not in frame.columns or not schema.context:
            return {}
        out = {}
        for name, rows in frame.groupby(schema.group):
            values = {}
            for column in schema.context:
                unique = rows[column].unique()
                if len(unique) == 1:
                    values[column] = to_jsonable(unique[0])
            out[str(name)] = values
        return out

    # ----------------------------------------------------------------- artifact
    def extra_files(self) -> dict[str, bytes]:
        if self.records is None:
            return {}
        buffer = io.StringIO()
        self.records.to_csv(buffer, index=False)
        return {RECORDS_FILE: buffer.getvalue().encode()}

    def load_extra_files(self, artifact: Artifact) -> None:
        if RECORDS_FILE in artifact.manifest.get("files", {}):
            self.records = pd.read_csv(io.BytesIO(artifact.read_bytes(RECORDS_FILE)))

    # ----------------------------------------------------------------- inference
    def run_frame(self, frame: pd.DataFrame, what: str = "the table") -> dict[str, np.ndarray]:
        """The graph's outputs for the rows of ``frame`` through ONNX Runtime (the one inference path)."""
        numeric, categorical = encode_inputs(frame, self.schema, what)
        return self._run(numeric, categorical)

    def _run(self, numeric: np.ndarray, categorical: np.ndarray) -> dict[str, np.ndarray]:
        names = set(self.runtime.input_names)
        batches = ({k: v for k, v in (("numeric", numeric[sl]), ("categorical", categorical[sl])) if k in names}
                   for sl in batched(len(numeric), 4096))
        return self.runtime.run_batches(batches)

    def _rows(self, out: dict[str, np.ndarray], index: Sequence[int]) -> list[dict[str, Any]]:
        schema = self.schema
        rows = []
        for i in index:
            row: dict[str, Any] = {}
            for j, name in enumerate(schema.regression):
                row[name] = float(out["mean"][i, j])
                row[f"{name}_std"] = float(out["std"][i, j])
                row[f"{name}_interval"] = [float(out["lower"][i, j]), float(out["upper"][i, j])]
                row[f"{name}_model_std"] = float(out["model_std"][i, j])
            start = 0
            for name, labels in schema.classes.items():
                p = out["probabilities"][i, start:start + len(labels)]
                row[name] = labels[int(np.argmax(p))]
                row[f"{name}_probabilities"] = {label: float(v) for label, v in zip(labels, p)}
                start += len(labels)
            rows.append(row)
        return rows

    def predict(self, inputs: Sequence[str | Path | pd.DataFrame], out_dir: str | Path | None = None,
                explain: bool = False, skip_bad: bool = False) -> list[dict[str, Any]]:
        """Predicted quality for each row of each input table (settings + context): per numeric result its mean,
        std, interval and model std; per class result the most likely class and the probabilities. With
        ``explain``, the change of each numeric result per unit step of each setting (local slope)."""
        if isinstance(inputs, (str, Path, pd.DataFrame)):
            inputs = [inputs]
        items = list(enumerate(inputs))

        def name(pair):
            return f"<DataFrame {pair[0]}>" if isinstance(pair[1], pd.DataFrame) else str(pair[1])

        def read(pair):
            frame = read_table(pair[1])
            return frame, *encode_inputs(frame, self.schema, name(pair)), name(pair)

        kept, skipped = read_inputs(items, read, skip_bad, name=name)
        rows_of: dict[int, list[dict[str, Any]]] = {}
        for index, (frame, numeric, categorical, source) in kept:
            flagged = self.flag_out_of_range("input_ranges", [f"{source} row {i}" for i in range(len(frame))], numeric)
            out = self._run(numeric, categorical)
            rows = [{"input": source, "row": i, **r} for i, r in enumerate(self._rows(out, range(len(frame))))]
            self.mark_out_of_range(rows, flagged)
            if explain:
                for row, slopes in zip(rows, self._slopes(frame)):
                    row["sensitivity"] = slopes
            rows_of[index] = rows
        bad = iter(skipped)
        results: list[dict[str, Any]] = []
        for index, _ in items:
            results.extend(rows_of[index] if index in rows_of else [next(bad)])
        return results

    def _slopes(self, frame: pd.DataFrame) -> list[dict[str, dict[str, float]]]:
        """Central differences of each numeric result's mean per setting (1% of the setting's training range)."""
        schema, ranges = self.schema, InputRanges.from_state(self.state["input_ranges"])
        out: list[dict[str, dict[str, float]]] = [{} for _ in range(len(frame))]
        for s in schema.settings:
            k = ranges.columns.index(s)
            h = 0.01 * max(ranges.high[k] - ranges.low[k], 1e-12)
            up, down = frame.copy(), frame.copy()
            up[s] = up[s].astype(float) + h
            down[s] = down[s].astype(float) - h
            mean_up, mean_down = self.run_frame(up)["mean"], self.run_frame(down)["mean"]
            for i in range(len(frame)):
                for j, result in enumerate(schema.regression):
                    out[i].setdefault(result, {})[s] = float((mean_up[i, j] - mean_down[i, j]) / (2 * h))
        return out if schema.regression else [{} for _ in range(len(frame))]

    # ----------------------------------------------------------------- evaluate
    def evaluate(self, data: str | Path | pd.DataFrame, report_dir: str | Path | None = None,
                 **options: Any) -> dict[str, Any]:
        self.EvaluateOptions(**options)
        frame = read_table(data)
        schema = self.schema
        numeric, categorical = encode_inputs(frame, schema, "the evaluation table")
        truth = encode_results(frame, schema, "the evaluation table")
        flagged = self.flag_out_of_range("input_ranges", [f"row {i}" for i in range(len(frame))], numeric)
        out = self._run(numeric, categorical)
        metrics: dict[str, Any] = {"n_test": int(len(frame)), "n_out_of_range": sum(1 for f in flagged if f)}
        for j, name in enumerate(schema.regression):
            metrics[name] = regression_scores(truth[:, j], out["mean"][:, j], out["lower"][:, j], out["upper"][:, j])
        start = 0
        for k, (name, labels) in enumerate(schema.classes.items()):
            p = out["probabilities"][:, start:start + len(labels)]
            metrics[name] = class_scores(truth[:, len(schema.regression) + k].astype(np.int64), p)
            start += len(labels)
        if report_dir is not None:
            from .report import write_report

            metrics["report"] = str(write_report(self, Path(report_dir), frame, truth, out, metrics))
        return to_jsonable(metrics)

    # ----------------------------------------------------------------- recommend
    def resolve_fixed(self, fix: dict[str, Any]) -> dict[str, Any]:
        """``--fix`` values checked and completed: a group name fills its context; every context column must end
        up fixed; unknown columns, unknown categories and values outside the training range are refused."""
        schema = self.schema
        fixed: dict[str, Any] = {}
        known = [*schema.inputs, *([schema.group] if schema.group else [])]
        unknown = [k for k in fix if k not in known]
        if unknown:
            raise ConfigError(f"--fix names {', '.join(unknown)}, which the model does not know; it takes context "
                              f"{', '.join(schema.context) or '(none)'}, settings {', '.join(schema.settings)}"
                              + (f" and the group {schema.group!r}" if schema.group else ""))
        groups = self.state.get("context_of_group") or {}
        if schema.group and schema.group in fix:
            name = str(fix[schema.group])
            if name in groups:
                fixed.update(groups[name])
            elif not all(c in fix for c in schema.context):
                raise ConfigError(f"{schema.group}={name} is not a job this model was trained on, so its context "
                                  f"is unknown: give the context values with --fix ({', '.join(schema.context)})")
            fixed[schema.group] = name
        ranges = InputRanges.from_state(self.state["input_ranges"])
        for column, value in fix.items():
            if column == schema.group:
                continue
            if column in schema.categorical_context:
                if str(value) not in schema.categorical_context[column]:
                    raise ConfigError(f"--fix {column}={value}: unknown {column}; the model knows "
                                      f"{', '.join(schema.categorical_context[column])}")
                fixed[column] = str(value)
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"--fix {column}={value!r}: {column} takes a number") from None
            k = ranges.columns.index(column)
            low, high = ranges.low[k], ranges.high[k]
            span = high - low
            if column in schema.settings and not (low - 1e-9 * max(1, abs(low)) <= number <= high + 1e-9 * max(1, abs(high))):
                raise ConfigError(f"--fix {column}={value} is outside the training range ({low:g}..{high:g}); the "
                                  "surrogate has not seen it: fix it inside that range")
            if column in schema.numeric_context and not (low - span <= number <= high + span):
                raise ConfigError(f"--fix {column}={value} is far outside the training range ({low:g}..{high:g}); "
                                  "check its units")
            fixed[column] = number
        missing = [c for c in schema.context if c not in fixed]
        if missing:
            hint = (f", or name a job with --fix {schema.group}=... (e.g. {', '.join(list(groups)[:3])})"
                    if groups else "")
            raise ConfigError(f"recommendations are for one context: fix {', '.join(missing)} with --fix "
                              f"'{missing[0]}=...'{hint}")
        return fixed

    def recommend(self, out_dir: str | Path | None = None, **options: Any) -> dict[str, Any]:
        """Recommended settings for a fixed context (see :class:`RecommendOptions` and :mod:`.recommend`):
        ``recommendations`` (settings, predicted quality with intervals, expected improvement over the best
        observed record of that context, ``in_support``), the objectives, constraints and the method used. With
        several objectives also the ``pareto_front``, and with ``out_dir`` its plot (``pareto.png``)."""
        self.require_model()
        opts = RecommendOptions(**options)
        schema = self.schema
        objectives = rec.parse_objectives(opts.minimise, opts.maximise, schema)
        constraints = rec.parse_constraints(opts.constraints, schema)
        fixed = self.resolve_fixed(opts.fix)
        ranges = InputRanges.from_state(self.state["input_ranges"])
        training = {c: (ranges.low[k], ranges.high[k]) for k, c in enumerate(ranges.columns)}
        bounds = rec.parse_bounds(opts.bounds, schema, training)
        clash = [s for s in bounds if s in fixed]
        if clash:
            raise ConfigError(f"{', '.join(clash)} is both fixed (--fix) and bounded (--bounds); use one of them")
        free = {s: bounds.get(s, training[s]) for s in schema.settings if s not in fixed}
        inputs_fixed = {k: v for k, v in fixed.items() if k in schema.inputs}
        space = rec.SearchSpace(free, schema.levels, schema.steps, inputs_fixed)
        scorer = rec.Scorer(lambda f: self.run_frame(f, "the candidate settings"), schema, objectives, constraints,
                            opts.penalty)
        candidates = rec.search(space, scorer, opts.trials, opts.seed)
        candidates = rec.polish(space, scorer, candidates, opts.seed)
        chosen, front = rec.select(candidates, space, opts.n, len(objectives))
        rows = self._recommendation_rows(chosen, objectives, constraints, fixed)
        result: dict[str, Any] = {
            "context": fixed, "objectives": [o.name + f" ({o.direction})" for o in objectives],
            "constraints": [c.name for c in constraints], "bounds": {k: list(v) for k, v in free.items()},
            "method": ("TPE (optuna)" if len(objectives) == 1 else "NSGA-II (optuna), Pareto front")
            + f", {len(candidates)} candidates through the ONNX graph; uncertainty penalty {opts.penalty:g} x "
            "model_std on objectives and constraints; bounds inside the training range",
            "recommendations": rows,
        }
        if not any(r["feasible"] for r in rows):
            self.note_warning("no candidate met every constraint (judged pessimistically, mean ± penalty × "
                              "model_std); the closest are returned with feasible=false: relax the constraints, "
                              "lower --penalty or widen --bounds")
        if len(objectives) > 1:
            result["pareto_front"] = self._recommendation_rows(front, objectives, constraints, fixed, brief=True)
            if out_dir is not None:
                result["pareto_plot"] = str(self._pareto_plot(Path(out_dir), candidates, front, objectives))
        return to_jsonable(result)

    def _recommendation_rows(self, chosen: pd.DataFrame, objectives: Sequence[rec.Objective],
                             constraints: Sequence[rec.Constraint], fixed: dict[str, Any],
                             brief: bool = False) -> list[dict[str, Any]]:
        schema = self.schema
        if chosen.empty:
            return []
        frame = chosen[schema.inputs].reset_index(drop=True)
        out = self.run_frame(frame)
        predicted = self._rows(out, range(len(frame)))
        if brief:
            return [{"settings": {s: float(frame[s].iloc[i]) for s in schema.settings}, "predicted": predicted[i]}
                    for i in range(len(frame))]
        records = self.records
        support = np.zeros(len(frame))
        if records is not None:
            reference, scale, radius = rec.settings_scale(records, schema)
            support = rec.support_distance(frame, reference, scale, radius, schema)
        best = rec.best_observed(records, schema, fixed, objectives[0], constraints) if records is not None else None
        rows = []
        for i in range(len(frame)):
            row = {"rank": i + 1, "settings": {s: float(frame[s].iloc[i]) for s in schema.settings},
                   "predicted": predicted[i], "feasible": bool(chosen["_violation"].iloc[i] <= 0),
                   "support_distance": float(support[i]), "in_support": bool(support[i] <= 1.0)}
            if best is not None:
                value = self._objective_value(predicted[i], objectives[0])
                gain = (best["value"] - value) if objectives[0].direction == "minimise" else (value - best["value"])
                row["best_observed"] = {"value": best["value"], "records_in_context": best["records"]}
                row["expected_improvement"] = float(gain)
            else:
                row["best_observed"] = None
                row["expected_improvement"] = None
            rows.append(row)
        return rows

    @staticmethod
    def _pareto_plot(out_dir: Path, candidates: pd.DataFrame, front: pd.DataFrame,
                     objectives: Sequence[rec.Objective]) -> Path:
        """The first two objectives (pessimistic: mean ± penalty × model_std) of every candidate and the front."""
        import matplotlib.pyplot as plt

        from .report import pareto_figure

        def points(frame: pd.DataFrame) -> list[dict[str, float]]:
            signs = [1.0 if o.direction == "minimise" else -1.0 for o in objectives[:2]]
            return [{objectives[i].name: signs[i] * float(v) for i, v in enumerate(row)}
                    for row in frame[["_objective_0", "_objective_1"]].to_numpy()]

        feasible = candidates[candidates["_violation"] <= 0]
        fig = pareto_figure(points(front), points(feasible), objectives[0].name, objectives[1].name)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "pareto.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path

    @staticmethod
    def _objective_value(predicted: dict[str, Any], objective: rec.Objective) -> float:
        if objective.label is None:
            return float(predicted[objective.result])
        return float(predicted[f"{objective.result}_probabilities"][objective.label])

    # ----------------------------------------------------------------- demo
    @classmethod
    def demo(cls, out_dir: Path) -> dict[str, Any]:
        """The built-in simulator: 400 records, train, evaluate on 200 new ones, recommend for one wall thickness
        under a weight constraint and score the recommendation against the known optimum."""
        from .simulator import RESULTS, regret, simulate_records, true_optimum

        out_dir = Path(out_dir)
        data = out_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        simulate_records(400, seed=0).to_csv(data / "train.csv", index=False)
        test = simulate_records(200, seed=1)
        test.to_csv(data / "test.csv", index=False)
        task = cls(data={"results": list(RESULTS), "context": ["wall_thickness"], "steps": {"hold_pressure": 10.0}},
                   cv_folds=3, training={"epochs": 120})
        task.fit(data / "train.csv", out_dir=out_dir / "model")
        metrics = task.evaluate(data / "test.csv", report_dir=out_dir / "report")
        wall, limit = 2.5, 13.0
        advice = task.recommend(fix={"wall_thickness": wall}, minimise=["warpage"],
                                constraints=[f"part_weight<={limit}"], n=3, trials=300)
        best = advice["recommendations"][0]
        test.drop(columns=list(RESULTS)).head(10).to_csv(data / "settings.csv", index=False)
        return {"task": cls.name, "test_r2_warpage": metrics["warpage"]["r2"],
                "cv_r2_warpage": task.state["cross_validation"]["results"]["warpage"]["surrogate"]["r2"],
                "regret": regret(best["settings"], wall, limit),
                "true_optimum_warpage": true_optimum(wall, limit)["warpage"], "recommendation": best,
                "model": str(out_dir / "model"), "report": metrics["report"],
                "sample_inputs": [str(data / "settings.csv")]}

"""The process-optimisation report: cross-validation (surrogate vs gradient boosting), test scores, parity plots
with intervals, partial-dependence sensitivities of each result on each setting, and a Pareto-front plot for
several objectives.

Partial dependence (:func:`partial_dependence`): for each setting, sweep it over its training range while every
other column keeps its recorded values (a sample of the training records), and average the predicted result — the
effect of that setting alone, through the deployed graph. Its range (max − min of the curve) ranks the settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from shopfloor.core.ranges import InputRanges  # noqa: E402
from shopfloor.core.report import Report  # noqa: E402

from .data import ProcessSchema  # noqa: E402

GRID_POINTS = 15
PD_ROWS = 200


def partial_dependence(run: Callable[[pd.DataFrame], dict[str, np.ndarray]], frame: pd.DataFrame,
                       schema: ProcessSchema, ranges: InputRanges, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per setting: ``grid`` and, per numeric result, the mean prediction over ``frame`` (a sample) with the
    setting set to each grid value; for class results, the mean probability of each class."""
    sample = frame.sample(min(len(frame), PD_ROWS), random_state=seed).reset_index(drop=True)
    curves: dict[str, dict[str, Any]] = {}
    for setting in schema.settings:
        k = ranges.columns.index(setting)
        grid = np.linspace(ranges.low[k], ranges.high[k], GRID_POINTS)
        if setting in schema.levels:
            grid = np.asarray(schema.levels[setting], dtype=np.float64)
        batch = pd.concat([sample.assign(**{setting: value}) for value in grid], ignore_index=True)
        out = run(batch)
        entry: dict[str, Any] = {"grid": grid.tolist()}
        for j, result in enumerate(schema.regression):
            entry[result] = out["mean"][:, j].reshape(len(grid), len(sample)).mean(axis=1).tolist()
        start = 0
        for result, labels in schema.classes.items():
            p = out["probabilities"][:, start:start + len(labels)].reshape(len(grid), len(sample), len(labels))
            entry[result] = {label: p[:, :, i].mean(axis=1).tolist() for i, label in enumerate(labels)}
            start += len(labels)
        curves[setting] = entry
    return curves


def sensitivity_table(curves: dict[str, dict[str, Any]], schema: ProcessSchema) -> list[dict[str, Any]]:
    """Per setting, the swing (max − min) of each result's partial-dependence curve."""
    rows = []
    for setting, entry in curves.items():
        row: dict[str, Any] = {"setting": setting}
        for result in schema.regression:
            row[result] = float(np.ptp(entry[result]))
        for result in schema.classes:
            row[f"{result} (max class prob. swing)"] = float(max(np.ptp(v) for v in entry[result].values()))
        rows.append(row)
    return rows


def _pd_figure(curves: dict[str, dict[str, Any]], schema: ProcessSchema) -> plt.Figure:
    results = schema.results
    settings = list(curves)
    fig, axes = plt.subplots(len(results), len(settings), figsize=(2.6 * len(settings), 2.2 * len(results)),
                             squeeze=False)
    for i, result in enumerate(results):
        for j, setting in enumerate(settings):
            ax = axes[i, j]
            entry = curves[setting]
            if result in schema.classes:
                for label, values in entry[result].items():
                    ax.plot(entry["grid"], values, label=label)
                if j == 0:
                    ax.legend(fontsize=6)
            else:
                ax.plot(entry["grid"], entry[result])
            if i == len(results) - 1:
                ax.set_xlabel(setting, fontsize=8)
            if j == 0:
                ax.set_ylabel(result, fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _parity_figure(truth: np.ndarray, out: dict[str, np.ndarray], names: Sequence[str]) -> plt.Figure:
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.4), squeeze=False)
    for j, name in enumerate(names):
        ax = axes[0, j]
        y, mean = truth[:, j], out["mean"][:, j]
        err = np.stack([mean - out["lower"][:, j], out["upper"][:, j] - mean])
        ax.errorbar(y, mean, yerr=np.clip(err, 0, None), fmt=".", ms=3, alpha=0.5, elinewidth=0.5)
        low, high = float(min(y.min(), mean.min())), float(max(y.max(), mean.max()))
        ax.plot([low, high], [low, high], "k--", lw=1)
        ax.set_xlabel(f"recorded {name}")
        ax.set_ylabel("predicted (interval)")
    fig.tight_layout()
    return fig


def pareto_figure(front: Sequence[dict[str, Any]], candidates: Sequence[dict[str, Any]], x: str, y: str) -> plt.Figure:
    """Predicted ``x`` vs ``y`` of the candidates and of the Pareto front."""
    fig, ax = plt.subplots(figsize=(5, 4))
    if candidates:
        ax.scatter([c[x] for c in candidates], [c[y] for c in candidates], s=6, c="#bbb", label="candidates")
    ax.plot([f[x] for f in front], [f[y] for f in front], "o-", c="#c33", ms=4, label="Pareto front")
    ax.set_xlabel(f"predicted {x}")
    ax.set_ylabel(f"predicted {y}")
    ax.legend()
    fig.tight_layout()
    return fig


def write_report(task: Any, out: Path, frame: pd.DataFrame, truth: np.ndarray,
                 outputs: dict[str, np.ndarray], metrics: dict[str, Any]) -> Path:
    """report.html with its PNGs under ``out``, for a fitted ``ProcessOptimisation`` ``task``."""
    schema = task.schema
    report = Report(out, "Process optimisation: surrogate evaluation")
    report.text(f"{metrics['n_test']} records evaluated; settings {', '.join(schema.settings)}; context "
                f"{', '.join(schema.context) or '(none)'}; results {', '.join(schema.results)}. The surrogate is a "
                f"deep ensemble of {task.config.members} MLPs; intervals are central {task.config.interval:.0%} "
                "intervals of the ensemble's predictive distribution.")
    cv = task.state.get("cross_validation")
    if cv:
        rows = []
        for name, entry in cv["results"].items():
            for model, scores in entry.items():
                rows.append({"result": name, "model": model, **scores})
        report.table(rows, f"Cross-validation at fit, {cv['folds']} folds "
                     + ("grouped by job (held-out jobs are new)" if cv["grouped"] else "over records"))
    test_rows = [{"result": k, **v} for k, v in metrics.items() if isinstance(v, dict)]
    report.table(test_rows, "This data (through the deployed ONNX graph)")
    if schema.regression:
        report.figure(_parity_figure(truth, outputs, schema.regression), "parity", "recorded vs predicted")
    source = task.records if task.records is not None else frame
    ranges = InputRanges.from_state(task.state["input_ranges"])
    curves = partial_dependence(task.run_frame, source[schema.inputs], schema, ranges)
    report.table(sensitivity_table(curves, schema), "Sensitivities: swing of each result's partial dependence")
    report.figure(_pd_figure(curves, schema), "partial_dependence",
                  "partial dependence of each result (rows) on each setting (columns)")
    for note in task.state.get("warnings", []):
        report.text(f"warning: {note}")
    return report.write()

"""report.html for the RUL task: metrics, last-window predictions vs truth, per-unit trajectories with
intervals, and integrated-gradients sensor attributions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from shopfloor.core.explain.attribution import attribution_bar_figure, attribution_heatmap_figure  # noqa: E402
from shopfloor.core.report import Report  # noqa: E402

from ..histories import SensorHistories  # noqa: E402
from ..windows import piecewise_rul  # noqa: E402
from .estimates import combine_recent  # noqa: E402

MAX_ATTRIBUTION_UNITS = 100


def last_window_figure(units: pd.DataFrame, cap: float) -> plt.Figure:
    """Every unit's last-window prediction with its interval, units sorted by true RUL."""
    order = units.sort_values("true_rul").reset_index(drop=True)
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.fill_between(x, order["lower"], order["upper"], color="#9bd", alpha=0.5, step="mid", label="interval")
    ax.plot(x, order["predicted"], ".", color="#236", ms=4, label="predicted")
    ax.plot(x, order["true_rul"], "-", color="#c33", lw=1, label="true RUL")
    ax.plot(x, order["true_rul_capped"], "--", color="#c33", lw=0.8, label=f"true RUL capped at {cap:g}")
    ax.set_xlabel("test unit (sorted by true RUL)")
    ax.set_ylabel("RUL (cycles)")
    ax.legend(fontsize=8)
    return fig


def trajectories_figure(curves: list[dict[str, Any]], cap: float) -> plt.Figure:
    """Predicted RUL (with interval band) and true RUL over each shown unit's life."""
    cols = min(3, len(curves))
    rows = (len(curves) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, c in zip(axes.flat, curves):
        ax.axis("on")
        ax.fill_between(c["time"], c["lower"], c["upper"], color="#9bd", alpha=0.5)
        ax.plot(c["time"], c["predicted"], color="#236", lw=1.2, label="predicted")
        if c["true"] is not None:
            ax.plot(c["time"], piecewise_rul(c["true"], cap), "--", color="#c33", lw=1, label="true (capped)")
        ax.set_title(f"unit {c['unit']}", fontsize=9)
        ax.set_xlabel("cycle", fontsize=8)
        ax.set_ylabel("RUL", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def shown_units(units: pd.DataFrame, n: int) -> list[Any]:
    """``n`` units spread over the range of true RUL (the test set's variety, not its best cases)."""
    if n <= 0 or units.empty:
        return []
    order = units.sort_values("true_rul")["unit"].tolist()
    picks = np.unique(np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int))
    return [order[i] for i in picks]


@dataclass
class RULReportData:
    """What the RUL report shows, computed by the task: no task object crosses into the report.

    ``units``: one row per test unit (``unit, true_rul, true_rul_capped, predicted, lower, upper, spread``);
    ``curves``: per shown unit, ``time, predicted, lower, upper, true`` over its life (empty: no trajectories);
    ``attributions``: (n, window, features) integrated gradients of ``attribution_units``' last windows.
    """

    source: str
    summary: str
    units: pd.DataFrame
    result: dict[str, Any]
    cap: float
    interval_level: float
    shown: list[Any]
    features: list[str]
    attribution_units: np.ndarray
    attributions: np.ndarray
    curves: list[dict[str, Any]] = field(default_factory=list)


def write_rul_report(data: RULReportData, report_dir: str | Path) -> Path:
    """Write report.html (and PNGs) for an evaluation; returns its path."""
    report = Report(report_dir, f"Remaining useful life: {data.source}")
    report.text(data.summary)
    report.metrics({k: v for k, v in data.result.items() if k != "report"})
    report.heading("Last window of every unit")
    report.figure(last_window_figure(data.units, data.cap), "last_window",
                  f"{data.interval_level:.0%} intervals; coverage (capped truth) "
                  f"{data.result['interval_coverage']:.1%}")
    if data.curves:
        report.heading("RUL trajectories")
        report.figure(trajectories_figure(data.curves, data.cap), "trajectories",
                      "predicted RUL at every cycle (band: interval) vs true RUL, units spread over the RUL range")
    _attribution_section(data, report)
    units = data.units
    rows = units.assign(error=units["predicted"] - units["true_rul_capped"])
    rows = rows.reindex(rows["error"].abs().sort_values(ascending=False).index).head(30)
    report.table(rows.round(2).to_dict("records"), "Largest errors (last window, capped truth)")
    return report.write()


def _attribution_section(data: RULReportData, report: Report) -> None:
    attributions, names = data.attributions, data.features
    report.heading("Which sensors drove the predictions (integrated gradients)")
    report.text("Attribution of the predicted RUL to each input column, summed over the window, relative to a "
                "baseline with every sensor at its operating condition's training mean. Negative: the reading "
                "lowered the predicted RUL (looks degraded).")
    report.figure(attribution_bar_figure(np.abs(attributions.sum(axis=1)).mean(axis=0), names,
                                         title=f"mean |attribution| over {len(attributions)} units' last windows",
                                         xlabel="mean |attribution| (cycles of RUL)"), "attribution_mean")
    for unit in data.shown[:3]:
        index = np.flatnonzero(data.attribution_units == unit)
        if len(index):
            i = index[0]
            report.figure(attribution_heatmap_figure(attributions[i], names, title=f"unit {unit}: attribution over "
                                                     "the last window"), f"attribution_unit_{unit}")


def write_evaluation_report(task: Any, histories: SensorHistories, units: pd.DataFrame, result: dict[str, Any],
                            report_dir: str | Path, opts: Any) -> Path:
    """For a fitted RUL ``task`` and its evaluation: compute what the report shows (trajectories, attributions)
    and write it (``opts``: the task's evaluate options)."""
    cfg, state = task.config, task.state
    shown = shown_units(units, cfg.explain_units)
    late = task.late_units(histories, opts.late_start)
    last = task.prediction_windows(histories, 1, opts.short_units, late)
    keep = np.arange(len(last))
    if len(keep) > MAX_ATTRIBUTION_UNITS:
        keep = np.random.default_rng(0).choice(keep, MAX_ATTRIBUTION_UNITS, replace=False)
    attributions = task.window_attributions(last.x[keep])
    dropped = state.get("dropped_sensors")
    summary = (f"Model: {cfg.ensemble} x {cfg.model}, window {cfg.window}, RUL cap {cfg.rul_cap:g}, "
               f"{state['n_conditions']} operating condition(s), sensors {', '.join(state['sensors'])}"
               + (f"; dropped as constant: {', '.join(dropped)}" if dropped else "") + ".")
    data = RULReportData(source=histories.source, summary=summary, units=units, result=result, cap=cfg.rul_cap,
                         interval_level=cfg.interval_level, shown=shown, features=task.features,
                         attribution_units=last.unit[keep], attributions=attributions,
                         curves=trajectories(task, histories, shown, opts.short_units, late)
                         if opts.trajectories else [])
    return write_rul_report(data, report_dir)


def trajectories(task: Any, histories: SensorHistories, shown: list[Any], short_units: str = "pad",
                 late: Any = ()) -> list[dict[str, Any]]:
    """Predicted RUL, interval and truth at every cycle of each shown unit."""
    if not shown:
        return []
    windows = task.prediction_windows(histories.select_units(shown), None, short_units, late)
    out = combine_recent(windows.unit, windows.end_time, task.run_windows(windows.x), task.config.recent_windows)
    curves = []
    for unit in shown:
        mask = windows.unit == unit
        curves.append({"unit": unit, "time": windows.end_time[mask], "predicted": out["rul"][mask],
                       "lower": out["lower"][mask], "upper": out["upper"][mask],
                       "true": windows.rul[mask] if histories.has_rul else None})
    return curves

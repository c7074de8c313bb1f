"""report.html for the RUL task: metrics, last-window predictions vs truth, per-unit trajectories with
intervals, and integrated-gradients sensor attributions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..data.sensor_histories import SensorHistories  # noqa: E402
from ..data.windows import piecewise_rul  # noqa: E402
from ..explain_sensors import attribution_bar_figure, attribution_heatmap_figure, integrated_gradients  # noqa: E402
from ..report import Report  # noqa: E402

from .rul import combine_recent  # noqa: E402

if TYPE_CHECKING:
    from .rul import RemainingUsefulLife

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


def _shown_units(units: pd.DataFrame, n: int) -> list[Any]:
    """``n`` units spread over the range of true RUL (the test set's variety, not its best cases)."""
    if n <= 0 or units.empty:
        return []
    order = units.sort_values("true_rul")["unit"].tolist()
    picks = np.unique(np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int))
    return [order[i] for i in picks]


def write_rul_report(task: "RemainingUsefulLife", histories: SensorHistories, units: pd.DataFrame,
                     result: dict[str, Any], report_dir: str | Path, trajectories: bool = True) -> Path:
    """Write report.html (and PNGs) for an evaluation; returns its path."""
    cfg = task.config
    report = Report(report_dir, f"Remaining useful life: {histories.source}")
    report.text(f"Model: {cfg.ensemble} x {cfg.model}, window {cfg.window}, RUL cap {cfg.rul_cap:g}, "
                f"{task.state['n_conditions']} operating condition(s), sensors {', '.join(task.state['sensors'])}"
                + (f"; dropped as constant: {', '.join(task.state['dropped_sensors'])}"
                   if task.state.get("dropped_sensors") else "") + ".")
    report.metrics({k: v for k, v in result.items() if k != "report"})
    report.heading("Last window of every unit")
    report.figure(last_window_figure(units, cfg.rul_cap), "last_window",
                  f"{cfg.interval_level:.0%} intervals; coverage (capped truth) {result['interval_coverage']:.1%}")
    shown = _shown_units(units, cfg.explain_units)
    if trajectories and shown:
        report.heading("RUL trajectories")
        subset = histories.select_units(shown)
        windows = task._windows(subset)
        out = combine_recent(windows.unit, windows.end_time, task.run_windows(windows.x), cfg.recent_windows)
        curves = []
        for unit in shown:
            mask = windows.unit == unit
            curves.append({"unit": unit, "time": windows.end_time[mask], "predicted": out["rul"][mask],
                           "lower": out["lower"][mask], "upper": out["upper"][mask],
                           "true": windows.rul[mask] if histories.has_rul else None})
        report.figure(trajectories_figure(curves, cfg.rul_cap), "trajectories",
                      "predicted RUL at every cycle (band: interval) vs true RUL, units spread over the RUL range")
    _attribution_section(task, histories, units, shown, report)
    rows = units.assign(error=units["predicted"] - units["true_rul_capped"])
    rows = rows.reindex(rows["error"].abs().sort_values(ascending=False).index).head(30)
    report.table(rows.round(2).to_dict("records"), "Largest errors (last window, capped truth)")
    return report.write()


def _attribution_section(task: "RemainingUsefulLife", histories: SensorHistories, units: pd.DataFrame,
                         shown: list[Any], report: Report) -> None:
    last = task._windows(histories, last_n=1)
    keep = np.arange(len(last))
    if len(keep) > MAX_ATTRIBUTION_UNITS:
        keep = np.random.default_rng(0).choice(keep, MAX_ATTRIBUTION_UNITS, replace=False)
    x = last.x[keep]
    network = task.require_model().eval()
    attributions = integrated_gradients(network.mean_rul, x, task.attribution_baselines(x), n_steps=32)
    names = task.features
    report.heading("Which sensors drove the predictions (integrated gradients)")
    report.text("Attribution of the predicted RUL to each input column, summed over the window, relative to a "
                "baseline with every sensor at its operating condition's training mean. Negative: the reading "
                "lowered the predicted RUL (looks degraded).")
    report.figure(attribution_bar_figure(np.abs(attributions.sum(axis=1)).mean(axis=0), names,
                                         title=f"mean |attribution| over {len(keep)} units' last windows",
                                         xlabel="mean |attribution| (cycles of RUL)"), "attribution_mean")
    for unit in shown[:3]:
        index = np.flatnonzero(last.unit[keep] == unit)
        if len(index):
            i = index[0]
            report.figure(attribution_heatmap_figure(attributions[i], names, title=f"unit {unit}: attribution over "
                                                     "the last window"), f"attribution_unit_{unit}")

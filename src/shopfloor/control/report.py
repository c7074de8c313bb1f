"""The control evaluation report: learning curve, an episode trace policy vs baseline, return distributions; for
goal-conditioned robot tasks the distance to the goal per step and, where the simulator renders offscreen, a GIF
and a PNG strip of the episode for each controller."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from shopfloor.core.report import Report, image_grid_figure, plt

from .render import RobotEpisode, record_episode, strip_indices, write_gif

Controllers = dict[str, tuple[Callable[[Any], Any], Callable[[], None]]]


def _learning_curve(training: dict[str, Any]):
    fig, ax = plt.subplots(figsize=(7, 3.6))
    curve = training.get("curve") or []
    if curve:
        steps = np.array([c["timesteps"] for c in curve])
        returns = np.array([c["return"] for c in curve])
        ax.plot(steps, returns, ".", alpha=0.3, label="training episodes")
        if len(returns) >= 10:
            k = max(len(returns) // 20, 5)
            smooth = np.convolve(returns, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], smooth, label=f"moving mean ({k})")
    validation = training.get("validation") or []
    if validation:
        ax.plot([v["timesteps"] for v in validation], [v["mean_return"] for v in validation], "o-",
                label="validation (fixed seeds, deterministic)")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.legend(fontsize=8)
    ax.set_title(f"{training.get('algo', '').upper()}: learning curve")
    return fig


def _trace(traces: dict[str, list[dict[str, Any]]], dt: float | None):
    keys = traces["policy"][0].keys() if traces.get("policy") else []
    thermal = "temperature" in keys
    fig, axes = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    for name, trace in traces.items():
        if not trace:
            continue
        t = np.array([r["step"] for r in trace]) * (dt or 1.0)
        if thermal:
            axes[0].plot(t, [r["temperature"] for r in trace], label=f"{name}: temperature")
            axes[1].plot(t, [100.0 * r["power"] for r in trace], label=f"{name}: heater power")
        else:
            axes[0].plot(t, np.cumsum([r["reward"] for r in trace]), label=f"{name}: cumulative reward")
            axes[1].step(t, [r["action"][0] for r in trace], where="post", label=f"{name}: action")
    if thermal and traces.get("policy"):
        trace = traces["policy"]
        t = np.array([r["step"] for r in trace]) * (dt or 1.0)
        axes[0].plot(t, [r["setpoint"] for r in trace], "k--", label="setpoint")
        axes[0].set_ylabel("°C")
        axes[1].set_ylabel("heater power %")
        axes[1].set_xlabel("time (s)")
    else:
        axes[1].set_xlabel("decision")
    for ax in axes:
        ax.legend(fontsize=8)
    axes[0].set_title("one evaluation episode (same seed for every controller)")
    return fig


def _distance_trace(episodes: dict[str, RobotEpisode]):
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for name, episode in episodes.items():
        line, = ax.plot(range(len(episode.distance)), episode.distance, label=name)
        hits = [i + 1 for i, s in enumerate(episode.success) if s]
        if hits:
            ax.plot(hits[0], episode.distance[hits[0]], "o", color=line.get_color())
    threshold = next((e.threshold for e in episodes.values() if e.threshold is not None), None)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls="--", lw=1, label=f"success threshold ({threshold:g} m)")
    ax.set_xlabel("step")
    ax.set_ylabel("distance to the goal (m)")
    ax.legend(fontsize=8)
    seed = next(iter(episodes.values())).seed
    ax.set_title(f"episode seed {seed}: distance to the goal per step (dot: success)")
    return fig


def _robot_section(report: Report, env_id: str, env_kwargs: dict[str, Any], controllers: Controllers, seed: int,
                   render: bool) -> None:
    """The distance-to-goal trace of episode ``seed`` for every controller, and its GIF and strip where rendered."""
    episodes = {name: record_episode(env_id, env_kwargs, act, reset, seed, render)
                for name, (act, reset) in controllers.items()}
    report.figure(_distance_trace(episodes), "episode_trace", "success over time: distance to the goal per step, "
                  "policy vs baseline on the same episode")
    for name, episode in episodes.items():
        if episode.note:
            report.text(f"{name}: {episode.note}")
        if not episode.frames:
            continue
        report.image(write_gif(episode.frames, report.out_dir / f"episode_{name}.gif"), f"{name} episode",
                     f"{name}: episode seed {seed}, {len(episode.frames) - 1} steps (animated)")
        index = strip_indices(len(episode.frames))
        report.figure(image_grid_figure([episode.frames[i] for i in index], [f"step {i}" for i in index],
                                        cols=len(index)), f"episode_{name}_strip", f"{name}: frames of the episode")


def _distributions(policy: list[dict[str, Any]], baselines: dict[str, list[dict[str, Any]]], key: str):
    fig, ax = plt.subplots(figsize=(6, 3.4))
    series = {"policy": [e[key] for e in policy], **{n: [e[key] for e in b] for n, b in baselines.items()}}
    values = np.concatenate([np.asarray(v, float) for v in series.values()])
    bins = np.linspace(values.min(), values.max() + 1e-9, 30)
    for name, v in series.items():
        ax.hist(v, bins=bins, alpha=0.5, label=name)
    ax.set_xlabel(key)
    ax.set_ylabel("episodes")
    ax.legend(fontsize=8)
    return fig


def write_control_report(task: Any, result: dict[str, Any], policy: list[dict[str, Any]],
                         baselines: dict[str, list[dict[str, Any]]], traces: dict[str, list[dict[str, Any]]],
                         report_dir: str | Path, controllers: Controllers | None = None, render: bool = True) -> Path:
    """report.html with the comparison table, the learning curve, the trace and the distributions. For a
    goal-conditioned environment, ``controllers`` (name -> (act, reset)) replay the first episode to record the
    distance to the goal and, if ``render``, its frames."""
    report = Report(report_dir, f"control: {result['env']}")
    report.text(f"{result['episodes']} seeded episodes (seeds {result['seeds'][0]}..{result['seeds'][1]}), "
                f"environment settings {result['env_kwargs']}; the policy runs the exported ONNX graph.")
    rows = [{"controller": name, **values} for name, values in result["per_controller"].items()]
    report.table(rows, "Policy and baselines on the same episodes (means)")
    for name, comparison in result.get("comparison", {}).items():
        report.table([{"metric": key, "policy - baseline": c["mean"], "ci95 low": c["ci95_low"],
                       "ci95 high": c["ci95_high"], "relative": c["relative"]} for key, c in comparison.items()],
                     f"Paired difference vs {name} (95 % interval)")
    training = task.state.get("training") or {}
    report.metrics({k: v for k, v in training.items() if not isinstance(v, (list, dict))}, "Training")
    report.figure(_learning_curve(training), "learning_curve", "training episode returns and validation")
    dt = (task.state.get("env_kwargs") or {}).get("dt", 2.0) if "Thermal" in result["env"] else None
    keys = [k for k, _ in task.state["observation"].get("keys") or []]
    if controllers and {"achieved_goal", "desired_goal"} <= set(keys):
        _robot_section(report, result["env"], result["env_kwargs"], controllers, result["seeds"][0], render)
    else:
        report.figure(_trace(traces, dt), "episode_trace", "setpoint, output and action: policy vs baseline")
    report.figure(_distributions(policy, baselines, "return"), "return_distribution", "episode returns")
    for key in ("iae", "mean_tardiness"):
        if policy and key in policy[0]:
            report.figure(_distributions(policy, baselines, key), f"{key}_distribution", f"episode {key}")
    for warning in task.state.get("warnings", []):
        report.text(f"warning: {warning}")
    return report.write()


__all__ = ["write_control_report"]

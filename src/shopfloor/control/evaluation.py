"""Policy against baselines on the same seeded episodes: returns, success, violations, with 95 % intervals.

Every controller (the deployed policy through ONNX Runtime, each baseline) runs the episodes ``seed, seed + 1, ...``
of one environment: a seed fixes the plant, the disturbances and the noise, so differences are the controllers'.
Means carry a Student-t 95 % interval, success rates a Wilson interval; the policy-minus-baseline differences are
paired by episode (their interval is the one to read for "is it better").
"""

from __future__ import annotations

import math
from typing import Any, Callable

import gymnasium as gym
import numpy as np

TRACE_KEYS = ("setpoint", "temperature", "power", "load")


def run_episodes(env: gym.Env, act: Callable[[np.ndarray], Any], reset: Callable[[], None], seeds: list[int],
                 trace_seed: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run one controller on ``seeds``; per episode its return, length, success and the env's episode metrics,
    and the step-by-step trace (info values and actions) of ``trace_seed``."""
    episodes, trace = [], []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        reset()
        total, steps, info, done = 0.0, 0, {}, False
        while not done:
            action = act(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            steps += 1
            done = terminated or truncated
            if seed == trace_seed:
                row = {k: float(info[k]) for k in TRACE_KEYS if k in info}
                trace.append({"step": steps, "action": np.asarray(action, dtype=float).reshape(-1).tolist(),
                              "reward": float(reward), **row})
        metrics = {k: float(v) for k, v in (info.get("episode_metrics") or {}).items()}
        episodes.append({"seed": seed, "return": total, "length": steps, "terminated": bool(terminated),
                         "success": bool(info.get("is_success", False)), **metrics})
    return episodes, trace


def mean_ci(values: list[float] | np.ndarray) -> dict[str, float]:
    """Mean with a Student-t 95 % confidence interval."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean()) if x.size else float("nan")
    if x.size < 2:
        return {"mean": mean, "ci95_low": mean, "ci95_high": mean}
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return {"mean": mean, "ci95_low": mean - half, "ci95_high": mean + half}


def wilson(successes: int, n: int) -> dict[str, float]:
    """Success rate with its Wilson 95 % interval."""
    if n == 0:
        return {"rate": float("nan"), "ci95_low": float("nan"), "ci95_high": float("nan")}
    z, p = 1.959964, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"rate": p, "ci95_low": max(0.0, centre - half), "ci95_high": min(1.0, centre + half)}


def summarize(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean return, success rate, violations and every episode metric, each with its 95 % interval."""
    out: dict[str, Any] = {"episodes": len(episodes), "return": mean_ci([e["return"] for e in episodes]),
                           "success": wilson(sum(e["success"] for e in episodes), len(episodes))}
    keys = [k for k in episodes[0] if k not in ("seed", "return", "length", "terminated", "success")] \
        if episodes else []
    for key in keys:
        out[key] = mean_ci([e[key] for e in episodes])
    out["violations_total"] = float(sum(e.get("violations", 0.0) for e in episodes))
    out["episodes_with_violations"] = int(sum(e.get("violations", 0.0) > 0 for e in episodes))
    out["terminated"] = int(sum(e["terminated"] for e in episodes))
    return out


def paired_difference(policy: list[dict[str, Any]], baseline: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Policy minus baseline of ``key`` per episode (same seeds), with its interval and the relative change of
    the means (negative = the policy's value is lower)."""
    a = np.array([e[key] for e in policy], dtype=float)
    b = np.array([e[key] for e in baseline], dtype=float)
    diff = mean_ci(a - b)
    base = float(b.mean())
    diff["relative"] = float((a.mean() - base) / abs(base)) if base else float("nan")
    return diff


__all__ = ["mean_ci", "paired_difference", "run_episodes", "summarize", "wilson"]

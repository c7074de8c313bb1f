"""Recommending settings: optuna over the surrogate, inside the data's support.

The request names what to fix (context such as the material and part, or settings held where they are), what to
minimise/maximise (a numeric result, or ``result=class`` for the probability of a class), constraints
(``part_weight<=12.5``) and optional bounds for settings (``melt_temp=220:250``). Every candidate is scored by
the task's one inference path (the exported graph through ONNX Runtime), in batches.

**Staying inside the data: an uncertainty penalty.** Each objective and constraint is judged pessimistically,
``mean ± penalty × model_std`` (``model_std``: the ensemble members' disagreement, which grows away from the
data), so the optimiser prefers settings the data supports. Bounds default to, and may not leave, the training
range of each setting. Each recommendation also reports ``in_support``: whether its settings lie within the
usual nearest-neighbour distance of the recorded settings (standardised, 95th percentile of the records' own
nearest-neighbour distances).

One objective: TPE (``optuna.samplers.TPESampler``, constraints as optuna constraints), then a local polish around
the best trials. Several objectives: NSGA-II; the result is the Pareto front (spread over it) and a plot. Settings
with recorded levels (a DoE) or machine steps are searched on them only.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from shopfloor.core.errors import ConfigError

from .data import ProcessSchema, class_label

log = logging.getLogger(__name__)
SUPPORT_QUANTILE = 0.95
Predictor = Callable[[pd.DataFrame], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Objective:
    """``direction`` (minimise/maximise) of a numeric ``result``, or of the probability of ``label`` of a class
    result."""

    result: str
    direction: str
    label: str | None = None

    @property
    def name(self) -> str:
        return f"P({self.result}={self.label})" if self.label is not None else self.result


@dataclass(frozen=True)
class Constraint:
    """``result op value`` (op: <=, >=), on a numeric result or a class probability (``label`` set)."""

    result: str
    op: str
    value: float
    label: str | None = None

    @property
    def name(self) -> str:
        base = f"P({self.result}={self.label})" if self.label is not None else self.result
        return f"{base}{self.op}{self.value:g}"


def parse_assignments(text: str | dict | None, what: str) -> dict[str, str]:
    """``'a=1,b=x'`` (or a dict) -> ``{"a": "1", "b": "x"}``; a malformed item is a ConfigError."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    pairs = {}
    for item in [p.strip() for p in str(text).split(",") if p.strip()]:
        if "=" not in item:
            raise ConfigError(f"{what} item {item!r} is not name=value (e.g. {what} 'material=PP,melt_temp=240')")
        key, value = item.split("=", 1)
        pairs[key.strip()] = value.strip()
    return pairs


def _target(name: str, schema: ProcessSchema, what: str) -> tuple[str, str | None]:
    name = name.strip()
    result, _, label = name.partition("=")
    result = result.strip()
    if result in schema.regression and not label:
        return result, None
    if result in schema.classes:
        if not label:
            raise ConfigError(f"{what} {result!r} is a class result: name the class, e.g. {what} "
                              f"'{result}={schema.classes[result][-1]}' (classes: {', '.join(schema.classes[result])})")
        if label.strip() not in schema.classes[result]:
            raise ConfigError(f"{what}: {result} has no class {label.strip()!r}; classes: "
                              f"{', '.join(schema.classes[result])}")
        return result, label.strip()
    raise ConfigError(f"{what} {name!r} is not a result of this model; results: {', '.join(schema.results)}")


def parse_objectives(minimise: Sequence[str], maximise: Sequence[str], schema: ProcessSchema) -> list[Objective]:
    """The objectives of ``--minimise``/``--maximise`` (each may list several, comma-separated)."""
    objectives = []
    for direction, names in (("minimise", minimise), ("maximise", maximise)):
        for text in names:
            for name in [n for n in str(text).split(",") if n.strip()]:
                result, label = _target(name, schema, f"--{direction}")
                objectives.append(Objective(result, direction, label))
    if not objectives:
        raise ConfigError(f"say what to optimise: --minimise or --maximise one of {', '.join(schema.results)}")
    return objectives


_CONSTRAINT = re.compile(r"^\s*([^<>]+?)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


def parse_constraints(texts: Sequence[str], schema: ProcessSchema) -> list[Constraint]:
    """``part_weight<=12.5`` (``<`` reads as ``<=``); several per text, comma-separated."""
    constraints = []
    for text in texts:
        for item in [p for p in str(text).split(",") if p.strip()]:
            match = _CONSTRAINT.match(item)
            if not match or match.group(1).endswith(("=", "!")):
                raise ConfigError(f"--constraint {item!r} is not 'result<=value' or 'result>=value' "
                                  "(e.g. --constraint 'part_weight<=12.5')")
            result, label = _target(match.group(1), schema, "--constraint")
            constraints.append(Constraint(result, match.group(2)[0] + "=", float(match.group(3)), label))
    return constraints


def parse_bounds(text: str | dict | None, schema: ProcessSchema, ranges: dict[str, tuple[float, float]]
                 ) -> dict[str, tuple[float, float]]:
    """``'melt_temp=220:250'`` -> bounds per setting; unknown settings, low >= high or bounds outside the training
    range are ConfigErrors that say the range."""
    bounds = {}
    for name, value in parse_assignments(text, "--bounds").items():
        if name not in schema.settings:
            raise ConfigError(f"--bounds names {name!r}, which is not a setting of this model; settings: "
                              f"{', '.join(schema.settings)}")
        try:
            low, high = (float(v) for v in value.split(":"))
        except ValueError:
            raise ConfigError(f"--bounds {name}={value!r}: give low:high, e.g. {name}="
                              f"{ranges[name][0]:g}:{ranges[name][1]:g}") from None
        lo, hi = ranges[name]
        if not low < high:
            raise ConfigError(f"--bounds {name}={value}: low must be below high")
        tolerance = 1e-9 * max(1.0, abs(lo), abs(hi))
        if low < lo - tolerance or high > hi + tolerance:
            raise ConfigError(f"--bounds {name}={value} reaches outside the training data ({lo:g}..{hi:g}): the "
                              f"surrogate has not seen those settings; keep the bounds inside {lo:g}:{hi:g} "
                              "(or collect records there and retrain)")
        bounds[name] = (low, high)
    return bounds


@dataclass
class SearchSpace:
    """Free settings with their bounds and grids, and the fixed part of every candidate row."""

    free: dict[str, tuple[float, float]]
    levels: dict[str, list[float]]
    steps: dict[str, float]
    fixed: dict[str, Any]

    def distributions(self) -> dict[str, Any]:
        import optuna

        out = {}
        for name, (low, high) in self.free.items():
            if name in self.levels:
                choices = [v for v in self.levels[name] if low - 1e-9 <= v <= high + 1e-9]
                out[name] = optuna.distributions.CategoricalDistribution(choices)
            elif name in self.steps:
                step = self.steps[name]
                lo, hi = np.ceil(low / step - 1e-9) * step, np.floor(high / step + 1e-9) * step
                n = int(round((hi - lo) / step))
                out[name] = optuna.distributions.FloatDistribution(float(lo), float(lo + n * step), step=step)
            else:
                out[name] = optuna.distributions.FloatDistribution(low, high)
        return out

    def snap(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Put each free setting back on its levels / steps and inside its bounds."""
        for name, (low, high) in self.free.items():
            values = np.clip(frame[name].to_numpy(dtype=np.float64), low, high)
            if name in self.levels:
                grid = np.array([v for v in self.levels[name] if low - 1e-9 <= v <= high + 1e-9])
                values = grid[np.abs(values[:, None] - grid[None, :]).argmin(axis=1)]
            elif name in self.steps:
                step = self.steps[name]
                values = np.clip(np.round(values / step) * step, np.ceil(low / step - 1e-9) * step,
                                 np.floor(high / step + 1e-9) * step)
            frame[name] = values
        return frame

    def rows(self, settings: Sequence[dict[str, float]]) -> pd.DataFrame:
        frame = pd.DataFrame([{**self.fixed, **s} for s in settings])
        return frame


class Scorer:
    """Predicts candidates through ``predict`` and turns the outputs into penalised objectives and constraint
    violations."""

    def __init__(self, predict: Predictor, schema: ProcessSchema, objectives: Sequence[Objective],
                 constraints: Sequence[Constraint], penalty: float):
        self.predict, self.schema = predict, schema
        self.objectives, self.constraints, self.penalty = list(objectives), list(constraints), penalty

    def _column(self, out: dict[str, np.ndarray], result: str, label: str | None) -> tuple[np.ndarray, np.ndarray]:
        if label is None:
            j = self.schema.regression.index(result)
            return out["mean"][:, j], out["model_std"][:, j]
        start = 0
        for name, labels in self.schema.classes.items():
            if name == result:
                k = start + labels.index(label)
                return out["probabilities"][:, k], out["probability_std"][:, k]
            start += len(labels)
        raise KeyError(result)

    def score(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """``values`` (n, objectives) as minimised (maximised ones negated, penalty added), ``violation`` (n,
        constraints, > 0 = violated), ``raw`` outputs."""
        out = self.predict(frame)
        values = np.zeros((len(frame), len(self.objectives)))
        for i, objective in enumerate(self.objectives):
            mean, spread = self._column(out, objective.result, objective.label)
            sign = 1.0 if objective.direction == "minimise" else -1.0
            values[:, i] = sign * mean + self.penalty * spread
        violation = np.zeros((len(frame), len(self.constraints)))
        for i, constraint in enumerate(self.constraints):
            mean, spread = self._column(out, constraint.result, constraint.label)
            if constraint.op == "<=":
                violation[:, i] = mean + self.penalty * spread - constraint.value
            else:
                violation[:, i] = constraint.value - (mean - self.penalty * spread)
        return {"values": values, "violation": violation, "raw": out}


def search(space: SearchSpace, scorer: Scorer, trials: int, seed: int, batch: int = 32) -> pd.DataFrame:
    """Run optuna (TPE for one objective, NSGA-II for several) for ``trials`` candidates, asked and scored in
    batches; returns every candidate with its penalised objectives and constraint violations."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_obj = len(scorer.objectives)
    if n_obj == 1:  # constraints reach both samplers through Trial.set_constraint (optuna >= 5)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(40, max(10, trials // 5)),
                                             multivariate=True)
    else:
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=min(50, max(10, trials // 8)))
    study = optuna.create_study(directions=["minimize"] * n_obj, sampler=sampler)
    distributions = space.distributions()
    rows: list[dict[str, float]] = []
    values_all, violations_all = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
        done = 0
        while done < trials:
            asked = [study.ask(distributions) for _ in range(min(batch, trials - done))]
            settings = [dict(t.params) for t in asked]
            scored = scorer.score(space.rows(settings)) if distributions else scorer.score(space.rows([{}] * len(asked)))
            for trial, v, c in zip(asked, scored["values"], scored["violation"]):
                for i, violation in enumerate(c):
                    trial.set_constraint(f"constraint_{i}", float(violation))
                study.tell(trial, [float(x) for x in v] if n_obj > 1 else float(v[0]))
            rows.extend(settings)
            values_all.append(scored["values"])
            violations_all.append(scored["violation"])
            done += len(asked)
            if not distributions:
                break
    frame = space.rows(rows)
    values, violations = np.concatenate(values_all), np.concatenate(violations_all)
    return _with_scores(frame, values, violations)


def _with_scores(frame: pd.DataFrame, values: np.ndarray, violations: np.ndarray) -> pd.DataFrame:
    frame = frame.copy()
    for i in range(values.shape[1]):
        frame[f"_objective_{i}"] = values[:, i]
    frame["_violation"] = np.clip(violations, 0, None).sum(axis=1) if violations.size else 0.0
    return frame


def polish(space: SearchSpace, scorer: Scorer, candidates: pd.DataFrame, seed: int, rounds: int = 3,
           samples: int = 128, scale: float = 0.05) -> pd.DataFrame:
    """Local refinement for one objective: Gaussian steps (``scale`` of each bound's width, shrinking) around the
    best feasible candidates, snapped to the grids; returns the candidates with the new ones added."""
    if not space.free or len(scorer.objectives) != 1:
        return candidates
    rng = np.random.default_rng(seed)
    for r in range(rounds):
        best = _ranked(candidates).head(4)
        picks = best.iloc[rng.integers(0, len(best), samples)]
        trial = picks[list(space.fixed) + list(space.free)].copy().reset_index(drop=True)
        for name, (low, high) in space.free.items():
            trial[name] = trial[name].to_numpy(dtype=np.float64) + rng.normal(0, scale * (high - low) / (r + 1), samples)
        trial = space.snap(trial)
        scored = scorer.score(trial)
        candidates = pd.concat([candidates, _with_scores(trial, scored["values"], scored["violation"])],
                               ignore_index=True)
    return candidates


def _ranked(candidates: pd.DataFrame) -> pd.DataFrame:
    """Feasible first, then by violation, then by the (first) penalised objective."""
    feasible = candidates["_violation"] <= 0
    return candidates.assign(_infeasible=~feasible).sort_values(["_infeasible", "_violation", "_objective_0"])


def pareto_front(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (all minimised)."""
    n = len(values)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if keep[i]:
            dominated = np.all(values[i] <= values, axis=1) & np.any(values[i] < values, axis=1)
            keep &= ~dominated
    return keep


def select(candidates: pd.DataFrame, space: SearchSpace, n: int, n_objectives: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``n`` recommendations (distinct settings) and, for several objectives, the whole feasible Pareto
    front."""
    names = list(space.free)
    key = candidates[names].round(9).astype(str).agg("|".join, axis=1) if names else pd.Series("", index=candidates.index)
    unique = candidates.loc[~key.duplicated()]
    if n_objectives == 1:
        return _ranked(unique).head(n), unique.iloc[:0]
    feasible = unique[unique["_violation"] <= 0]
    pool = feasible if len(feasible) else _ranked(unique).head(max(n, 10))
    objective_columns = [f"_objective_{i}" for i in range(n_objectives)]
    front = pool[pareto_front(pool[objective_columns].to_numpy())].sort_values("_objective_0")
    picks = np.unique(np.linspace(0, len(front) - 1, min(n, len(front))).round().astype(int))
    return front.iloc[picks], front


def settings_scale(records: pd.DataFrame, schema: ProcessSchema) -> tuple[np.ndarray, np.ndarray, float]:
    """(recorded distinct settings standardised, their mean/std as one array, support radius): the reference of
    ``in_support``."""
    values = records[schema.settings].drop_duplicates().to_numpy(dtype=np.float64)
    mean, std = values.mean(axis=0), np.maximum(values.std(axis=0), 1e-12)
    z = (values - mean) / std
    if len(z) < 2:
        return z, np.stack([mean, std]), float("inf")
    sample = z[np.random.default_rng(0).permutation(len(z))[:500]]  # (500 x records) distances at most
    d = np.sqrt(((sample[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    d[d == 0] = np.inf
    radius = float(np.quantile(d.min(axis=1), SUPPORT_QUANTILE))
    return z, np.stack([mean, std]), radius


def support_distance(settings: pd.DataFrame, reference: np.ndarray, scale: np.ndarray, radius: float,
                     schema: ProcessSchema) -> np.ndarray:
    """Distance of each row's settings to the nearest recorded settings, in support radii (<= 1: inside)."""
    z = (settings[schema.settings].to_numpy(dtype=np.float64) - scale[0]) / scale[1]
    d = np.sqrt(((z[:, None, :] - reference[None, :, :]) ** 2).sum(-1)).min(axis=1)
    return d / radius if np.isfinite(radius) and radius > 0 else np.zeros(len(z))


def best_observed(records: pd.DataFrame, schema: ProcessSchema, fixed: dict[str, Any], objective: Objective,
                  constraints: Sequence[Constraint]) -> dict[str, Any] | None:
    """The best recorded row of ``objective`` among the records with the fixed context (and fixed settings),
    meeting the numeric constraints by their recorded values; None when no record has that context."""
    mask = np.ones(len(records), dtype=bool)
    for column, value in fixed.items():
        if column in records.columns:
            if column in schema.categorical_context or column == schema.group:
                mask &= records[column].astype(str).to_numpy() == str(value)
            else:
                mask &= np.isclose(records[column].to_numpy(dtype=np.float64), float(value), rtol=1e-6, atol=1e-9)
    for constraint in constraints:
        if constraint.label is None:
            values = records[constraint.result].to_numpy(dtype=np.float64)
            mask &= values <= constraint.value if constraint.op == "<=" else values >= constraint.value
    subset = records[mask]
    if subset.empty:
        return None
    if objective.label is not None:
        hits = subset[subset[objective.result].map(class_label) == objective.label]
        share = len(hits) / len(subset)
        return {"records": int(len(subset)), "value": share, "row": None}
    column = subset[objective.result].to_numpy(dtype=np.float64)
    i = int(np.argmin(column) if objective.direction == "minimise" else np.argmax(column))
    row = subset.iloc[i]
    return {"records": int(len(subset)), "value": float(column[i]),
            "row": {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}}

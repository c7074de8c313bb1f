"""``control``: deep reinforcement learning for equipment and line control, measured against the classical baseline.

``fit`` trains a stable-baselines3 algorithm (``--algo ppo|sac|td3|tqc``) in a Gymnasium environment (``--env``,
default ``shopfloor/ThermalProcess-v0``; ``--env-kwargs`` sets its parameters, e.g. domain randomisation) on
``--n-envs`` simulator processes, with checkpoints, validation on fixed seeds (the best parameters are kept) and an
early stop at ``--target-success-rate``. It also commissions the environment's baseline controllers (the thermal
zone's PID: SIMC from a step test, then optimised on the nominal plant) and stores their settings.

The exported graph (:class:`~shopfloor.control.policy.PolicyGraph`) takes raw observations ``(batch, n)`` and
returns the limited ``action``: observation normalisation, the deterministic actor, the action bounds and the rate
limit are inside it. ``evaluate`` runs that graph (ONNX Runtime) **and** every baseline on the same seeded episodes
and reports mean return, success rate, constraint violations and the environment's own metrics (thermal: IAE), each
with a 95 % interval and paired policy-minus-baseline differences. ``predict`` maps observations to actions.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import Field
from torch import nn

from shopfloor.core.config import StrictModel, TrainingConfig
from shopfloor.core.errors import ConfigError, DataError
from shopfloor.core.task import OnnxSignature, Task, read_inputs, to_jsonable
from shopfloor.core.training import seed_everything

from .baselines import make_baselines, tune_baselines
from .evaluation import paired_difference, run_episodes, summarize
from .policy import PolicyGraph, actor_layers, copy_actor
from .spaces import flatten, observation_keys, space_bounds, unflatten

ALGORITHMS = ("ppo", "sac", "td3", "tqc")
MAX_CURVE_POINTS = 600


class ControlTrainingConfig(TrainingConfig):
    """Training defaults for small actor-critic networks (learning rate and minibatch of the RL algorithm)."""

    learning_rate: float = Field(3e-4, gt=0)
    batch_size: int = Field(256, ge=1, description="minibatch (off-policy) or PPO minibatch")


class ControlConfig(StrictModel):
    """Settings of the control task."""

    env: str = Field("shopfloor/ThermalProcess-v0", description="Gymnasium environment id")
    env_kwargs: dict[str, Any] = Field(default_factory=dict, description="environment parameters, e.g. "
                                       "'{\"randomize\": 0.3}' (JSON)")
    algo: Literal[ALGORITHMS] = Field("sac", description="ppo | sac | td3 | tqc")  # type: ignore[valid-type]
    her: bool = Field(False, description="hindsight experience replay (goal-conditioned envs, off-policy algos)")
    action_mode: Literal["absolute", "increment", "residual"] = Field(
        "absolute", description="increment: the agent steps the previous action by at most the rate limit (needs "
        "an env with a rate limit, e.g. the thermal zone); residual: the agent adds at most residual_scale to the "
        "commissioned PID's command (thermal zone); the graph outputs the absolute action either way")
    residual_scale: float = Field(0.1, gt=0, description="residual mode: the largest correction the agent adds to "
                                  "the PID's command (action units)")
    residual_dead_zone: float = Field(0.0, ge=0, lt=1, description="residual mode: agent actions within ± this "
                                      "are 0 (no offset from a small actor bias; the PID integrates corrections)")
    timesteps: int = Field(50_000, ge=100, description="environment steps to train for (all envs together)")
    max_seconds: float | None = Field(None, gt=0, description="also stop training after this wall time (a CPU "
                                      "budget); the best validated parameters are kept")
    n_envs: int = Field(2, ge=1, le=32, description="simulator processes (SubprocVecEnv when > 1)")
    net_arch: list[int] = Field(default_factory=lambda: [64, 64], description="hidden layer sizes")
    gamma: float = Field(0.98, gt=0, lt=1, description="discount factor")
    eval_freq: int = Field(5_000, ge=1, description="validate every this many steps")
    eval_episodes: int = Field(10, ge=1, description="validation episodes (fixed seeds)")
    target_success_rate: float | None = Field(None, gt=0, le=1, description="stop early once validation reaches it")
    checkpoint_freq: int = Field(10_000, ge=0, description="checkpoint every this many steps (0: none)")
    algo_kwargs: dict[str, Any] = Field(default_factory=dict, description="more algorithm arguments (JSON)")
    tune_baseline: bool = Field(True, description="commission the environment's baseline controllers")
    training: ControlTrainingConfig = ControlTrainingConfig()


class ControlEvaluateOptions(StrictModel):
    """Which episodes ``evaluate`` runs."""

    episodes: int = Field(100, ge=1, description="seeded evaluation episodes")
    seed: int = Field(0, ge=0, description="first episode seed (episodes use seed, seed + 1, ...)")
    env_kwargs: dict[str, Any] | None = Field(None, description="environment parameters merged over the "
                                              "training ones (e.g. '{\"randomize\": 0.3}')")
    render: bool = Field(True, description="robot tasks: replay the first episode offscreen for the report (GIF "
                         "and PNG strip of each controller); environments that cannot render are skipped")


class Control(Task):
    """Deep-RL controller trained in a simulator, exported with its limits, compared with the baseline."""

    name = "control"
    input_kind = "signal"  # an observation: JSON array (n,) or rows (m, n)
    input_suffixes = (".json", ".npy", ".csv")
    data_optional = True
    Config = ControlConfig
    EvaluateOptions = ControlEvaluateOptions

    def __init__(self, config: StrictModel | dict | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.algorithm: Any = None  # the stable-baselines3 model after fit (not saved: the graph is the product)

    # ----------------------------------------------------------------- model
    def build_model(self) -> nn.Module:
        s = self.state
        return PolicyGraph(s["sizes"], s["activation"], s["action"]["kind"] == "discrete", s["squash"],
                           s.get("previous_action_index"), s.get("action_mode") == "increment", s.get("residual"))

    def onnx_signature(self) -> OnnxSignature:
        example = torch.zeros(2, self.state["observation"]["size"])
        return OnnxSignature(example_inputs=(example,), input_names=["observation"], output_names=["action"])

    # ----------------------------------------------------------------- fit
    def fit(self, data: Any = None, out_dir: str | Path | None = None) -> "Control":
        from .training import make_env, residual_settings, train_policy

        if data is not None:
            raise ConfigError("control trains in a simulator and reads no --data; choose it with --env (and "
                              "--env-kwargs)")
        cfg = self.config
        seed_everything(cfg.training.seed)
        env = make_env(cfg.env, cfg.env_kwargs)
        self.state = {"env": cfg.env, "env_kwargs": dict(cfg.env_kwargs), "action_mode": cfg.action_mode}
        baselines = tune_baselines(cfg.env, cfg.env_kwargs) if cfg.tune_baseline else {}
        log_dir = Path(out_dir) / "training" if out_dir is not None else None
        residual = residual_settings(env, baselines, cfg.residual_scale, cfg.residual_dead_zone) \
            if cfg.action_mode == "residual" else None
        self.state["residual"] = residual
        trained = train_policy(cfg, log_dir, residual)
        self.algorithm = trained.algorithm
        linears, activation, squash = actor_layers(trained.algorithm)
        sizes = [linears[0].in_features] + [m.out_features for m in linears]
        self.state.update(self._spaces_state(env.unwrapped, env.observation_space, env.action_space))
        self.state.update({
            "sizes": sizes, "activation": activation, "squash": squash, "baselines": baselines,
            "obs_mean": trained.obs_mean.tolist(), "obs_var": trained.obs_var.tolist(), "obs_clip": trained.obs_clip,
            "training": {"algo": cfg.algo, "timesteps": trained.timesteps, "seconds": round(trained.seconds, 1),
                         "best_timesteps": trained.best_timesteps, "stopped_early": trained.stopped_early,
                         "curve": _thin(trained.curve, MAX_CURVE_POINTS), "validation": trained.validation},
        })
        graph = self.build_model()
        copy_actor(graph, linears)
        with torch.no_grad():
            graph.obs_mean.copy_(torch.as_tensor(trained.obs_mean, dtype=torch.float32))
            graph.obs_std.copy_(torch.as_tensor(np.sqrt(trained.obs_var + 1e-8), dtype=torch.float32))
            graph.obs_clip.fill_(trained.obs_clip)
            action = self.state["action"]
            if action["kind"] == "box":
                graph.action_low.copy_(torch.as_tensor(action["low"], dtype=torch.float32))
                graph.action_high.copy_(torch.as_tensor(action["high"], dtype=torch.float32))
                graph.rate_limit.copy_(torch.as_tensor(action.get("rate_limit") or [0.0] * len(action["low"]),
                                                       dtype=torch.float32))
        self.torch_model = graph.eval()
        self.export()
        best = max(trained.validation, key=lambda r: r["mean_return"]) if trained.validation else {}
        self.metrics = {"timesteps": trained.timesteps, "training_seconds": round(trained.seconds, 1),
                        "validation_mean_return": best.get("mean_return"),
                        "validation_success_rate": best.get("success_rate"),
                        "stopped_early": trained.stopped_early}
        keys = self.state["observation"]["keys"]
        parity = self.parity_with_sb3(np.stack([flatten(env.observation_space.sample(), keys) for _ in range(64)]))
        self.state["export_parity_max_abs_diff"] = parity
        if parity > 1e-4:
            self.note_warning(f"the exported graph differs from the stable-baselines3 policy by up to {parity:.2e} "
                              "on sampled observations; retrain or report this as a bug")
        if out_dir is not None:
            self.save(out_dir)
        return self

    @staticmethod
    def _spaces_state(env: Any, obs_space: Any, act_space: Any) -> dict[str, Any]:
        """What the graph's input and output are, from the environment (names, bounds, limits)."""
        import gymnasium as gym

        keys = observation_keys(obs_space)
        low, high = space_bounds(obs_space)
        size = int(low.size)
        names = list(getattr(env, "observation_names", ()))
        if keys is not None:
            names = [f"{key}_{i}" for key, n in keys for i in range(n)]
        observation = {"size": size, "names": names if len(names) == size else [f"obs_{i}" for i in range(size)],
                       "low": low.tolist(), "high": high.tolist(), "keys": keys}
        if isinstance(act_space, gym.spaces.Discrete):
            names = getattr(env, "action_names", None)
            action = {"kind": "discrete", "n": int(act_space.n), "names": list(names) if names else None}
            return {"observation": observation, "action": action, "previous_action_index": None}
        index = getattr(env, "previous_action_index", None)
        rate = getattr(env, "rate_limit", None)
        limited = rate is not None and index is not None
        action = {"kind": "box", "low": act_space.low.tolist(), "high": act_space.high.tolist(),
                  "rate_limit": [float(rate)] * act_space.shape[0] if limited else None}
        return {"observation": observation, "action": action, "previous_action_index": int(index) if limited else None}

    def parity_with_sb3(self, observations: np.ndarray) -> float:
        """Max |exported graph - stable-baselines3 policy| on ``observations`` (raw), after fit. The SB3 action
        goes through the environment's limits (bounds, rate limit against the observed previous action)."""
        if self.algorithm is None:
            raise ConfigError("the stable-baselines3 model is only in memory right after fit(); the saved graph "
                              "is the deployed policy")
        obs = np.asarray(observations, dtype=np.float32)
        z = np.clip((obs - np.asarray(self.state["obs_mean"])) / np.sqrt(np.asarray(self.state["obs_var"]) + 1e-8),
                    -self.state["obs_clip"], self.state["obs_clip"]).astype(np.float32)
        keys = self.state["observation"].get("keys")
        expected, _ = self.algorithm.predict(unflatten(z, keys) if keys else z, deterministic=True)
        expected = self.apply_limits(obs, np.asarray(expected, dtype=np.float64))
        got = self.actions(obs)
        return float(np.max(np.abs(got.astype(np.float64) - expected))) if got.size else 0.0

    def apply_limits(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The action limits as the plant applies them (bounds, then the rate limit): the reference the graph's
        limits are tested against."""
        action = self.state["action"]
        if action["kind"] != "box":
            return actions
        low, high = np.asarray(action["low"]), np.asarray(action["high"])
        if self.state.get("action_mode") == "increment":  # the agent's action is a step from the previous one
            i, rate = self.state["previous_action_index"], np.asarray(action["rate_limit"])
            steps = np.clip(actions.reshape(len(observations), -1), -1.0, 1.0)
            return np.clip(observations[:, i:i + steps.shape[1]] + rate * steps, low, high)
        if self.state.get("residual"):  # the agent's action corrects the PID's command
            from .pid import residual_command

            out = residual_command(observations, actions, self.state["residual"], low, high)
        else:
            out = np.clip(actions.reshape(len(observations), -1), low, high)
        if action.get("rate_limit"):
            i, rate = self.state["previous_action_index"], np.asarray(action["rate_limit"])
            previous = observations[:, i:i + out.shape[1]]
            out = np.clip(np.clip(out, previous - rate, previous + rate), low, high)
        return out

    # ----------------------------------------------------------------- inference (ONNX Runtime)
    def actions(self, observations: np.ndarray) -> np.ndarray:
        """Actions of the deployed graph for raw observations ``(n, size)``."""
        return self.runtime.run(observation=np.asarray(observations, dtype=np.float32))["action"]

    def _read_observations(self, item: Any) -> np.ndarray:
        size, names = self.state["observation"]["size"], self.state["observation"]["names"]
        source = item
        if isinstance(item, (str, Path)):
            path = Path(item)
            if not path.is_file():
                raise DataError(f"{path}: no such file; give observations as .json, .npy or .csv")
            try:
                if path.suffix.lower() == ".json":
                    source = json.loads(path.read_text())
                    keys = self.state["observation"].get("keys")
                    if isinstance(source, dict) and keys and all(k in source for k, _ in keys):
                        source = flatten(source, keys)  # the Dict layout of a goal-conditioned environment
                    elif isinstance(source, dict):
                        source = source.get("observations", source.get("observation", source.get("signal")))
                elif path.suffix.lower() == ".npy":
                    source = np.load(path, allow_pickle=False)
                elif path.suffix.lower() == ".csv":
                    source = np.loadtxt(path, delimiter=",", ndmin=2)
                else:
                    raise DataError(f"{path}: cannot read {path.suffix or 'files without a suffix'}; give .json, "
                                    ".npy or .csv observations")
            except (ValueError, OSError) as exc:
                if isinstance(exc, DataError):
                    raise
                raise DataError(f"{path}: not readable as observations ({exc})") from None
        try:
            values = np.asarray(source, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{_name(item)}: expected numbers (an observation of {size} values, or rows of them)"
                            ) from None
        if values.ndim == 1:
            values = values[None]
        if values.ndim != 2 or values.shape[1] != size or values.shape[0] == 0:
            raise DataError(f"{_name(item)}: got shape {values.shape}, this model expects observations of {size} "
                            f"values ({', '.join(names)}), one per row")
        if not np.all(np.isfinite(values)):
            raise DataError(f"{_name(item)}: observations hold NaN or infinite values; send measured values")
        return values.astype(np.float32)

    def predict(self, inputs: Sequence[Any], out_dir: str | Path | None = None, explain: bool = False,
                skip_bad: bool = False) -> list[dict[str, Any]]:
        """The action for each observation (a JSON/NPY/CSV file, an array ``(n,)`` or rows ``(m, n)``), through
        the exported graph: one row per observation with ``action`` (list, within the limits; discrete: the index
        and ``label``, the action's name)."""
        if isinstance(inputs, np.ndarray) or (isinstance(inputs, (list, tuple)) and inputs
                                              and all(isinstance(v, (int, float)) for v in inputs)):
            inputs = [inputs]
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        kept, skipped = read_inputs(list(enumerate(inputs)), lambda pair: self._read_observations(pair[1]),
                                    skip_bad, name=lambda pair: _name(pair[1]))
        observation = self.state["observation"]
        low, high = np.asarray(observation["low"]), np.asarray(observation["high"])
        rows_of: dict[int, list[dict[str, Any]]] = {}
        for index, values in kept:
            outside = (values < low) | (values > high)
            if outside.any():
                columns = sorted({observation["names"][j] for j in np.flatnonzero(outside.any(0))})
                warnings.warn(f"{_name(inputs[index])}: {int(outside.any(1).sum())} observation(s) outside the "
                              f"environment's range in {', '.join(columns)}; the policy never saw such values "
                              "(check units and order)", UserWarning, stacklevel=2)
            actions = self.actions(values)
            rows_of[index] = [self._row(_name(inputs[index]), i, a) for i, a in enumerate(actions)]
        results: list[dict[str, Any]] = []
        bad = iter(skipped)
        for index in range(len(inputs)):
            results.extend(rows_of[index] if index in rows_of else [next(bad)])
        return to_jsonable(results)

    def _row(self, source: str, i: int, action: Any) -> dict[str, Any]:
        spec = self.state["action"]
        if spec["kind"] == "discrete":
            names = spec.get("names")
            return {"input": source, "index": i, "action": int(action),
                    "label": names[int(action)] if names else str(int(action))}
        values = np.asarray(action, dtype=float).reshape(-1)
        return {"input": source, "index": i, "action": values.tolist(), "action_0": float(values[0])}

    # ----------------------------------------------------------------- evaluate
    def evaluate(self, data: Any = None, report_dir: str | Path | None = None, **options: Any) -> dict[str, Any]:
        """The deployed policy and every baseline on the same ``episodes`` seeded episodes (see module doc)."""
        from .training import make_env

        if data is not None:
            raise ConfigError("control evaluates in its simulator and reads no --data; use --episodes, --seed and "
                              "--env-kwargs")
        opts = ControlEvaluateOptions(**options)
        env_kwargs = {**self.state["env_kwargs"], **(opts.env_kwargs or {})}
        env = make_env(self.state["env"], env_kwargs)
        seeds = list(range(opts.seed, opts.seed + opts.episodes))
        discrete = self.state["action"]["kind"] == "discrete"

        keys = self.state["observation"].get("keys")

        def act(obs: Any) -> Any:
            action = self.actions(flatten(obs, keys)[None])[0]
            return int(action) if discrete else action

        policy_episodes, policy_trace = run_episodes(env, act, lambda: None, seeds, trace_seed=seeds[0])
        controllers = make_baselines(self.state["env"], self.state.get("baselines") or {})
        baseline_episodes, traces = {}, {"policy": policy_trace}
        for name, controller in controllers.items():
            baseline_episodes[name], traces[name] = run_episodes(env, controller.act, controller.reset, seeds,
                                                                 trace_seed=seeds[0])
        result = self._summary(policy_episodes, baseline_episodes)
        result.update({"env": self.state["env"], "env_kwargs": env_kwargs, "seeds": [seeds[0], seeds[-1]]})
        if report_dir is not None:
            from .report import write_control_report

            replay = {"policy": (act, lambda: None), **{n: (c.act, c.reset) for n, c in controllers.items()}}
            result["report"] = str(write_control_report(self, result, policy_episodes, baseline_episodes, traces,
                                                        report_dir, replay, opts.render))
        return to_jsonable(result)

    @staticmethod
    def _summary(policy: list[dict[str, Any]], baselines: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        summary = summarize(policy)
        result: dict[str, Any] = {"episodes": len(policy), "mean_return": summary["return"]["mean"],
                                  "success_rate": summary["success"]["rate"],
                                  "violations": summary["violations_total"], "policy": summary}
        metric_keys = [k for k in policy[0] if k not in ("seed", "return", "length", "terminated", "success")]
        for key in metric_keys:  # "violations" stays the total over the episodes
            result["violations_per_episode" if key == "violations" else key] = summary[key]["mean"]
        per_controller = {"policy": _flat(summary, metric_keys)}
        result["baselines"], result["comparison"] = {}, {}
        for name, episodes in baselines.items():
            base = summarize(episodes)
            result["baselines"][name] = base
            per_controller[name] = _flat(base, metric_keys)
            result["comparison"][name] = {key: paired_difference(policy, episodes, key)
                                          for key in ["return", *metric_keys]}
        if baselines:
            best = max(baselines, key=lambda n: result["baselines"][n]["return"]["mean"])
            result["best_baseline"] = best
            result["best_baseline_mean_return"] = result["baselines"][best]["return"]["mean"]
            main = "iae" if "iae" in metric_keys else ("mean_tardiness" if "mean_tardiness" in metric_keys else None)
            if main is not None:
                result[f"best_baseline_{main}"] = result["baselines"][best][main]["mean"]
                result[f"{main}_change_vs_best_baseline"] = result["comparison"][best][main]["relative"]
        result["per_controller"] = per_controller
        return result

    # ----------------------------------------------------------------- demo
    @classmethod
    def demo(cls, out_dir: Path) -> dict[str, Any]:
        """Train SAC on the thermal zone for a short budget, compare it with the tuned PID, predict one action."""
        from .training import make_env

        out = Path(out_dir)
        task = cls(timesteps=6_000, n_envs=1, eval_freq=3_000, eval_episodes=3, checkpoint_freq=0,
                   training={"progress": False})
        task.fit(None, out / "model")
        metrics = task.evaluate(None, report_dir=out / "report", episodes=10)
        obs, _ = make_env(task.state["env"], task.state["env_kwargs"]).reset(seed=123)
        sample = out / "observation.json"
        sample.write_text(json.dumps({"observation": obs.tolist()}))
        prediction = task.predict([sample])[0]
        pid = metrics["per_controller"].get("pid", {})
        comparison = (f"SAC after {task.state['training']['timesteps']} steps vs tuned PID on the same 10 episodes: "
                      f"IAE {metrics.get('iae', float('nan')):.0f} vs {pid.get('iae', float('nan')):.0f} °C·s, "
                      f"violations {metrics['violations']:.0f} vs {pid.get('violations', float('nan')):.0f} "
                      "(a demo budget: see benchmarks/results/control.json for a trained policy)")
        return {"task": cls.name, "comparison": comparison, "policy_iae": metrics.get("iae"), "pid_iae": metrics.get("best_baseline_iae"),
                "iae_change_vs_pid": metrics.get("iae_change_vs_best_baseline"),
                "policy_violations": metrics["violations"], "first_prediction": prediction,
                "sample_inputs": [str(sample)], "model": str(out / "model"), "report": metrics["report"]}


def _flat(summary: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    row = {"mean_return": summary["return"]["mean"], "success_rate": summary["success"]["rate"],
           "violations": summary["violations_total"]}
    row.update({key: summary[key]["mean"] for key in keys if key != "violations"})
    return row


def _thin(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    if len(rows) <= limit:
        return rows
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]


def _name(item: Any) -> str:
    return str(item) if isinstance(item, (str, Path)) else f"<{type(item).__name__}>"


__all__ = ["Control", "ControlConfig", "ControlEvaluateOptions"]

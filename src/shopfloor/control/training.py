"""Training glue for stable-baselines3: vectorised environments, normalisation, callbacks, best-policy keeping.

The algorithms are stable-baselines3's (PPO, SAC, TD3) and sb3-contrib's (TQC); nothing here is an RL algorithm.
:func:`train_policy` builds ``n_envs`` environments (``SubprocVecEnv`` when more than one, so the simulators use both
cores), wraps them in ``VecNormalize`` (running observation statistics, which the exported graph carries), and
learns with these callbacks:

- :class:`ProgressBar`: a tqdm bar on stderr with the mean return of the last episodes;
- :class:`LearningCurve`: every finished training episode (timesteps, return, success) for the report;
- ``CheckpointCallback``: the model and its normalisation statistics every ``checkpoint_freq`` steps;
- :class:`TimeBudget`: stops after ``max_seconds`` of wall time, when given;
- :class:`Validation`: every ``eval_freq`` steps, the deterministic policy on fixed validation seeds (never the
  evaluation seeds); keeps the best parameters by mean validation return (in residual mode the untrained policy,
  i.e. the PID, competes too) and stops early once the validation success rate reaches ``target_success_rate``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback

from shopfloor.core.errors import ConfigError

from .envs import register_environments
from .spaces import observation_keys

VALIDATION_SEED = 10_000  # validation episodes: seeds 10_000...; evaluation defaults to 0...; training 100_000...
TRAINING_SEED = 100_000
OFF_POLICY = ("sac", "td3", "tqc")


@contextlib.contextmanager
def _c_stdout_to_stderr() -> Iterator[None]:
    """Send what C libraries write to stdout (file descriptor 1) to stderr meanwhile."""
    import ctypes

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """``gym.make(env_id, **env_kwargs)`` with the mistakes a user makes turned into :class:`ConfigError`."""
    register_environments()  # in simulator processes too
    if env_id not in gym.registry and env_id.startswith("Panda"):
        try:
            importlib.import_module("panda_gym")  # registers the Panda robot tasks
        except ImportError:
            raise ConfigError(f"{env_id} is a panda-gym (PyBullet) robot task: pip install panda-gym") from None
    if env_id not in gym.registry:
        known = sorted(k for k in gym.registry if k.startswith("shopfloor/"))
        raise ConfigError(f"unknown environment {env_id!r}; the shopfloor environments are {', '.join(known)} "
                          "(any installed Gymnasium id works too)")
    try:
        with _c_stdout_to_stderr():  # PyBullet prints its settings on stdout, where CLI results go
            return gym.make(env_id, **(env_kwargs or {}))
    except TypeError as exc:
        raise ConfigError(f"--env-kwargs do not fit {env_id}: {exc}; see the environment's documentation for its "
                          "settings") from None


class IncrementalAction(gym.Wrapper):
    """``action_mode = "increment"``: the agent's action in [-1, 1] is a step of at most the rate limit from the
    previous applied action (read from the observation), so holding still is action 0 and a persistent error
    drives the output like an integrator (no steady-state offset by construction). The exported graph does the
    same sum, so the deployed output is the absolute command the plant takes."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        base = env.unwrapped
        self.index, self.rate = int(base.previous_action_index), float(base.rate_limit)
        self.low, self.high = env.action_space.low, env.action_space.high
        self.action_space = gym.spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)
        self._previous = np.zeros(env.action_space.shape, np.float32)

    def _remember(self, obs: np.ndarray) -> None:
        self._previous = np.asarray(obs[self.index:self.index + self._previous.size], np.float32)

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._remember(obs)
        return obs, info

    def step(self, action):
        step = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        absolute = np.clip(self._previous + self.rate * step, self.low, self.high).astype(np.float32)
        obs, reward, terminated, truncated, info = self.env.step(absolute)
        self._remember(obs)
        return obs, reward, terminated, truncated, info


class ResidualAction(gym.Wrapper):
    """``action_mode = "residual"``: the applied command is the commissioned PID's command for the current
    observation (:func:`~shopfloor.control.pid.pid_command`) plus ``scale`` x the agent's action in [-1, 1], clipped
    to the bounds (the plant's rate limit applies after). Actions within ``±dead_zone`` count as 0
    (:func:`~shopfloor.control.pid.dead_zone`). Action 0 is the PID, so training starts from it; the exported graph
    computes the same sum."""

    def __init__(self, env: gym.Env, residual: dict[str, Any]):
        super().__init__(env)
        self.residual = residual
        self.low, self.high = env.action_space.low, env.action_space.high
        self.action_space = gym.spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)
        self._obs: np.ndarray | None = None

    def command(self, action: np.ndarray) -> np.ndarray:
        """The absolute command for the agent's ``action`` at the last observation."""
        from .pid import residual_command

        return residual_command(self._obs[None], action, self.residual, self.low, self.high)[0].astype(np.float32)

    def reset(self, **kwargs: Any):
        self._obs, info = self.env.reset(**kwargs)
        return self._obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(self.command(action))
        self._obs = obs
        return obs, reward, terminated, truncated, info


def no_residual_base(env_name: str) -> ConfigError:
    """The error for residual mode on an environment without a PID to correct."""
    return ConfigError(f"--action-mode residual needs a commissioned PID whose command the observation determines; "
                       f"{env_name} has none (or --tune-baseline is off): use absolute or increment")


def make_training_env(env_id: str, env_kwargs: dict[str, Any] | None = None, action_mode: str = "absolute",
                      residual: dict[str, Any] | None = None) -> gym.Env:
    """The environment as the agent sees it (:class:`IncrementalAction` in increment mode,
    :class:`ResidualAction` with the PID settings ``residual`` in residual mode)."""
    env = make_env(env_id, env_kwargs)
    if action_mode in ("increment", "residual"):
        base = env.unwrapped
        if getattr(base, "previous_action_index", None) is None or getattr(base, "rate_limit", None) is None \
                or not isinstance(env.action_space, gym.spaces.Box):
            raise ConfigError(f"--action-mode {action_mode} needs a Box action with a rate limit and the previous "
                              f"action in the observation; {env_id} has none: use --action-mode absolute")
    if action_mode == "increment":
        env = IncrementalAction(env)
    elif action_mode == "residual":
        if residual is None:
            raise no_residual_base(env_id)
        env = ResidualAction(env, residual)
    return env


def residual_settings(env: gym.Env, baselines: dict[str, Any], scale: float, dead_zone: float) -> dict[str, Any]:
    """Residual mode's base controller: the commissioned PID's gains and where the observation carries its inputs."""
    indices = getattr(env.unwrapped, "pid_observation", None)
    if "pid" not in baselines or indices is None:
        raise no_residual_base(env.spec.id if env.spec else type(env.unwrapped).__name__)
    pid = baselines["pid"]
    return {**{k: float(pid[k]) for k in ("kc", "ti", "td", "dt")}, "scale": float(scale),
            "dead_zone": float(dead_zone), "indices": dict(indices)}


def start_at_zero(model: Any) -> None:
    """Zero the actor's output layer, so the deterministic action starts at 0 (residual mode: the PID)."""
    import torch

    from .policy import actor_layers

    last = actor_layers(model)[0][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    if getattr(model, "actor_target", None) is not None:  # TD3
        model.actor_target.load_state_dict(model.actor.state_dict())


def algorithm_class(name: str) -> type:
    """The stable-baselines3 / sb3-contrib class for ``name``."""
    from sb3_contrib import TQC
    from stable_baselines3 import PPO, SAC, TD3

    return {"ppo": PPO, "sac": SAC, "td3": TD3, "tqc": TQC}[name]


def check_spaces(env: gym.Env, algo: str, her: bool) -> None:
    """Refuse the space/algorithm combinations the task cannot train or export, all problems together."""
    problems = []
    obs, act = env.observation_space, env.action_space
    if her:
        if not (isinstance(obs, gym.spaces.Dict) and "desired_goal" in obs.spaces):
            problems.append("--her needs a goal-conditioned environment (Dict observation with 'desired_goal')")
        if algo not in OFF_POLICY:
            problems.append(f"--her needs an off-policy algorithm ({', '.join(OFF_POLICY)}), got {algo}")
    parts = list(obs.spaces.values()) if isinstance(obs, gym.spaces.Dict) else [obs]
    if not all(isinstance(p, gym.spaces.Box) and len(p.shape) == 1 for p in parts):
        problems.append(f"the observation space must be a flat Box or a Dict of flat Boxes (got {obs}); image "
                        "observations are not exportable by this task yet")
    if isinstance(act, gym.spaces.Discrete):
        if algo in OFF_POLICY:
            problems.append(f"{algo} needs a continuous (Box) action space; for {act} use --algo ppo")
    elif not (isinstance(act, gym.spaces.Box) and len(act.shape) == 1 and np.all(np.isfinite(act.low))
              and np.all(np.isfinite(act.high))):
        problems.append(f"the action space must be Discrete or a bounded 1-D Box, got {act}")
    if problems:
        raise ConfigError(f"{env.spec.id if env.spec else env}: cannot train with --algo {algo}:\n  "
                          + "\n  ".join(problems))


@dataclass
class TrainedPolicy:
    """What training leaves: the SB3 model (best validation parameters), the observation statistics, curves."""

    algorithm: Any
    obs_mean: np.ndarray
    obs_var: np.ndarray
    obs_clip: float
    curve: list[dict[str, Any]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    timesteps: int = 0
    stopped_early: bool = False
    best_timesteps: int = 0

    def normalize(self, observations: np.ndarray) -> np.ndarray:
        """The observations as the SB3 policy saw them (what the exported graph does first)."""
        z = (observations - self.obs_mean) / np.sqrt(self.obs_var + 1e-8)
        return np.clip(z, -self.obs_clip, self.obs_clip).astype(np.float32)


class ProgressBar(BaseCallback):
    """tqdm on stderr: timesteps, with the mean return of the last 20 episodes."""

    def __init__(self, total: int):
        super().__init__()
        self.total, self.bar = total, None

    def _on_training_start(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, file=sys.stderr, unit="step", dynamic_ncols=True, desc="training")

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        if self.n_calls % 200 == 0 and self.model.ep_info_buffer:
            returns = [e["r"] for e in list(self.model.ep_info_buffer)[-20:]]
            self.bar.set_postfix(episode_return=f"{np.mean(returns):.1f}")
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


class TimeBudget(BaseCallback):
    """Stops training once ``seconds`` of wall time have passed (a CPU budget)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.started, self.expired = seconds, time.perf_counter(), False

    def _on_training_start(self) -> None:
        self.started = time.perf_counter()

    def _on_step(self) -> bool:
        self.expired = time.perf_counter() - self.started > self.seconds
        return not self.expired


class LearningCurve(BaseCallback):
    """Records each finished training episode (``Monitor`` info)."""

    def __init__(self):
        super().__init__()
        self.episodes: list[dict[str, Any]] = []

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "episode" in info:
                self.episodes.append({"timesteps": int(self.num_timesteps), "return": float(info["episode"]["r"]),
                                      "length": int(info["episode"]["l"]),
                                      "success": info.get("is_success")})
        return True


class Validation(BaseCallback):
    """Deterministic episodes on fixed validation seeds; keeps the best parameters; early stop on success rate."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any], every: int, episodes: int,
                 target_success_rate: float | None, action_mode: str = "absolute",
                 residual: dict[str, Any] | None = None):
        super().__init__()
        self.env = make_training_env(env_id, env_kwargs, action_mode, residual)
        self.at_start = residual is not None  # residual mode: the untrained policy (the PID) competes too
        self.every, self.episodes, self.target = every, episodes, target_success_rate
        self.history: list[dict[str, Any]] = []
        self.best: tuple[float, dict[str, Any], Any, int] | None = None
        self.stopped_early = False
        self._next = every

    def run(self) -> dict[str, Any]:
        venv = self.model.get_vec_normalize_env()
        returns, successes = [], []
        for i in range(self.episodes):
            obs, _ = self.env.reset(seed=VALIDATION_SEED + i)
            total, done, info = 0.0, False, {}
            while not done:
                batch = {k: v[None] for k, v in obs.items()} if isinstance(obs, dict) else obs[None]
                normed = venv.normalize_obs(batch) if venv is not None else batch
                action, _ = self.model.predict(normed, deterministic=True)
                obs, reward, terminated, truncated, info = self.env.step(action[0])
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
            successes.append(bool(info.get("is_success", False)))
        return {"timesteps": int(self.num_timesteps), "mean_return": float(np.mean(returns)),
                "success_rate": float(np.mean(successes))}

    def _on_training_start(self) -> None:
        if self.at_start:
            self.evaluate_now()

    def _on_step(self) -> bool:
        if self.num_timesteps < self._next:
            return True
        self._next += self.every
        return self.evaluate_now()

    def evaluate_now(self) -> bool:
        """Validate the current policy; False (stop training) once the target success rate is reached."""
        record = self.run()
        self.history.append(record)
        if self.best is None or record["mean_return"] > self.best[0]:
            venv = self.model.get_vec_normalize_env()
            self.best = (record["mean_return"], copy.deepcopy(self.model.policy.state_dict()),
                         copy.deepcopy(venv.obs_rms) if venv is not None else None, record["timesteps"])
        if self.target is not None and record["success_rate"] >= self.target:
            self.stopped_early = True
            return False
        return True

    def restore_best(self) -> int:
        """Put the best validated parameters back into the model; the timesteps they were reached at."""
        if self.best is None:
            return int(self.num_timesteps)
        _, state, obs_rms, steps = self.best
        self.model.policy.load_state_dict(state)
        venv = self.model.get_vec_normalize_env()
        if venv is not None and obs_rms is not None:
            venv.obs_rms = obs_rms
        return steps


def hyperparameters(cfg: Any, n_envs: int, action_dim: int) -> dict[str, Any]:
    """Algorithm arguments from the task config (``algo_kwargs`` win)."""
    training = cfg.training
    kwargs: dict[str, Any] = {"gamma": cfg.gamma, "learning_rate": training.learning_rate,
                              "policy_kwargs": {"net_arch": list(cfg.net_arch)}}
    if cfg.algo == "ppo":
        n_steps = max(64, min(1024, cfg.timesteps // n_envs))
        kwargs.update(n_steps=n_steps, batch_size=min(training.batch_size, n_steps * n_envs))
    else:
        kwargs.update(batch_size=training.batch_size, buffer_size=max(cfg.timesteps, 1000),
                      learning_starts=min(1000, max(cfg.timesteps // 10, 1)))
        if cfg.algo == "td3":
            from stable_baselines3.common.noise import NormalActionNoise

            kwargs["action_noise"] = NormalActionNoise(np.zeros(action_dim), 0.1 * np.ones(action_dim))
    return {**kwargs, **cfg.algo_kwargs}


def train_policy(cfg: Any, log_dir: Path | None, residual: dict[str, Any] | None = None) -> TrainedPolicy:
    """Train ``cfg.algo`` on ``cfg.env`` for ``cfg.timesteps`` steps (see module docstring); ``residual``: the PID
    settings of residual mode (:class:`ResidualAction`)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    probe = make_training_env(cfg.env, cfg.env_kwargs, cfg.action_mode, residual)
    check_spaces(probe, cfg.algo, cfg.her)
    n_envs = cfg.n_envs
    seed = TRAINING_SEED + cfg.training.seed
    vec_cls = SubprocVecEnv if n_envs > 1 else DummyVecEnv
    env_fn = functools.partial(make_training_env, cfg.env, dict(cfg.env_kwargs), cfg.action_mode, residual)
    venv = make_vec_env(env_fn, n_envs=n_envs, seed=seed, vec_env_cls=vec_cls)
    clip = 10.0
    venv = VecNormalize(venv, norm_obs=True, norm_reward=cfg.algo == "ppo", clip_obs=clip, gamma=cfg.gamma)
    # torch's thread count is left alone: changing it in the process breaks torch 2.13's batched LU (linalg.inv)
    # for every later caller in the process (MKL DLASWP errors)
    started = time.perf_counter()
    try:
        kwargs = hyperparameters(cfg, n_envs, int(np.prod(probe.action_space.shape or (1,))))
        goal_conditioned = isinstance(probe.observation_space, gym.spaces.Dict)
        if cfg.her:
            from stable_baselines3 import HerReplayBuffer

            horizon = (probe.spec.max_episode_steps if probe.spec else None) or 100
            kwargs["learning_starts"] = max(kwargs.get("learning_starts", 0), 2 * horizon * n_envs)  # whole episodes

            kwargs.setdefault("replay_buffer_class", HerReplayBuffer)
            kwargs.setdefault("replay_buffer_kwargs", {"n_sampled_goal": 4, "goal_selection_strategy": "future"})
        policy = "MultiInputPolicy" if goal_conditioned else "MlpPolicy"
        model = algorithm_class(cfg.algo)(policy, venv, seed=seed, device="cpu", verbose=0, **kwargs)
        if cfg.action_mode == "residual":
            start_at_zero(model)
        curve = LearningCurve()
        validation = Validation(cfg.env, dict(cfg.env_kwargs), cfg.eval_freq, cfg.eval_episodes,
                                cfg.target_success_rate, cfg.action_mode, residual)
        callbacks: list[BaseCallback] = [curve, validation]
        if cfg.max_seconds is not None:
            callbacks.append(TimeBudget(cfg.max_seconds))
        if cfg.training.progress:
            callbacks.append(ProgressBar(cfg.timesteps))
        if log_dir is not None and cfg.checkpoint_freq:
            callbacks.append(CheckpointCallback(max(cfg.checkpoint_freq // n_envs, 1), str(log_dir / "checkpoints"),
                                                name_prefix=cfg.algo, save_vecnormalize=True))
        model.learn(total_timesteps=cfg.timesteps, callback=CallbackList(callbacks))
        if not validation.stopped_early:
            validation.evaluate_now()  # the final parameters compete too
        best_steps = validation.restore_best()
        seconds = time.perf_counter() - started
        norm = model.get_vec_normalize_env()
        keys = observation_keys(probe.observation_space)
        rms = [norm.obs_rms] if keys is None else [norm.obs_rms[k] for k, _ in keys]
        return TrainedPolicy(algorithm=model, obs_mean=np.concatenate([np.ravel(r.mean) for r in rms]),
                             obs_var=np.concatenate([np.ravel(r.var) for r in rms]), obs_clip=clip,
                             curve=curve.episodes, validation=validation.history, seconds=seconds,
                             timesteps=int(model.num_timesteps), stopped_early=validation.stopped_early,
                             best_timesteps=best_steps)
    finally:
        venv.close()


__all__ = ["IncrementalAction", "ResidualAction", "TrainedPolicy", "algorithm_class", "check_spaces", "make_env",
           "make_training_env", "residual_settings", "start_at_zero", "train_policy"]

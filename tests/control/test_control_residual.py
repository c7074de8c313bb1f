"""Residual mode on the thermal zone: the PID's command from the observation alone (known answer against the PID
class), an untrained residual policy is the PID through ONNX, export parity, the limits hold. Tiny budgets."""

import numpy as np
import pytest
import torch

import shopfloor.control.task as task_module
from shopfloor.control.envs.thermal import ThermalProcessEnv
from shopfloor.control.pid import PID, pid_command, run_episode
from shopfloor.control.policy import PolicyGraph
from shopfloor.control.task import Control
from shopfloor.control.training import make_training_env
from shopfloor.core.errors import ConfigError

GAINS = {"kc": 0.0138, "ti": 46.7, "td": 2.1, "dt": 2.0}  # the commissioned gains of the benchmark, rounded
TINY = {"n_envs": 1, "eval_freq": 100, "eval_episodes": 1, "checkpoint_freq": 0, "training": {"progress": False}}


def _pid_episode(env, seed):
    """Observations and the PID's actions over one seeded episode."""
    pid = PID(**GAINS)
    obs, _ = env.reset(seed=seed)
    pid.reset()
    rows, actions, done = [], [], False
    while not done:
        action = pid.act(obs)
        rows.append(obs)
        actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    return np.stack(rows), np.stack(actions)


@pytest.mark.parametrize("seed, randomize", [(0, 0.0), (3, 0.3)])
def test_pid_command_from_the_observation_is_the_stateful_pid(seed, randomize):
    env = ThermalProcessEnv(randomize=randomize)
    obs, actions = _pid_episode(env, seed)
    np.testing.assert_allclose(pid_command(obs, **GAINS, indices=env.pid_observation), actions, atol=1e-5)
    graph = PolicyGraph([obs.shape[1], 4, 1], "tanh", False, True, 6,
                        residual={**GAINS, "scale": 0.1, "indices": env.pid_observation})
    with torch.no_grad():
        np.testing.assert_allclose(graph.pid(torch.as_tensor(obs)).numpy(), actions, atol=1e-5)


def test_residual_wrapper_with_zero_action_replays_the_pid_episode():
    record = {**GAINS, "scale": 0.1, "indices": ThermalProcessEnv().pid_observation}
    wrapped = make_training_env("shopfloor/ThermalProcess-v0", {"randomize": 0.3}, "residual", record)
    expected = run_episode(ThermalProcessEnv(randomize=0.3), PID(**GAINS), seed=11)
    obs, _ = wrapped.reset(seed=11)
    done = False
    while not done:
        obs, _, terminated, truncated, info = wrapped.step(np.zeros(1, np.float32))
        done = terminated or truncated
    assert info["episode_metrics"]["iae"] == pytest.approx(expected["iae"], rel=1e-4)
    assert wrapped.action_space.low[0] == -1.0 and wrapped.action_space.high[0] == 1.0


def test_residual_mode_needs_a_commissioned_pid():
    with pytest.raises(ConfigError, match="needs a commissioned PID"):
        Control(algo="sac", action_mode="residual", timesteps=100, tune_baseline=False, **TINY).fit(None)
    with pytest.raises(ConfigError, match="Dispatching-v0 has none"):
        Control(env="shopfloor/Dispatching-v0", algo="ppo", action_mode="residual", timesteps=100, **TINY).fit(None)
    with pytest.raises(ConfigError, match="needs a Box action with a rate limit"):
        make_training_env("shopfloor/Dispatching-v0", None, "residual", {})


@pytest.fixture(scope="module")
def commissioned():
    """Control with the PID tuning replaced by the known gains (tuning is tested in test_control_envs)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(task_module, "tune_baselines", lambda env, kwargs: {"pid": dict(GAINS)})
        yield


def test_untrained_residual_policy_is_the_pid_through_onnx(commissioned):
    task = Control(algo="sac", action_mode="residual", timesteps=100, algo_kwargs={"learning_starts": 10_000},
                   **TINY)
    task.fit(None)  # no gradient step: the actor's output layer stays at zero
    env = ThermalProcessEnv(randomize=0.3)
    obs, actions = _pid_episode(env, seed=5)
    applied = np.clip(actions, obs[:, 6:7] - 0.1, obs[:, 6:7] + 0.1)  # the PID's command after the rate limit
    np.testing.assert_allclose(task.actions(obs.astype(np.float32)), applied, atol=1e-5)
    result = task.evaluate(None, episodes=2, seed=20)
    assert result["per_controller"]["policy"]["iae"] == pytest.approx(result["per_controller"]["pid"]["iae"],
                                                                      rel=1e-3)


def test_residual_export_parity_and_limits(commissioned):
    task = Control(algo="sac", action_mode="residual", timesteps=150, residual_scale=0.3, residual_dead_zone=0.2,
                   **TINY)
    task.fit(None)
    graph = task.torch_model
    assert any(float(m.weight.detach().abs().max()) > 0 for m in graph.actor if isinstance(m, torch.nn.Linear))
    env = ThermalProcessEnv()
    plant, _ = _pid_episode(env, seed=2)
    assert task.parity_with_sb3(plant) < 1e-5
    rng = np.random.default_rng(0)
    size = env.observation_space.shape[0]
    wild = rng.normal(0, 1, (4000, size)) * rng.choice([1.0, 100.0, 1e4], (4000, size))
    wild[:, 6] = rng.uniform(-1, 1, 4000)  # the previous action is always a feasible one
    assert task.parity_with_sb3(wild) < 1e-4
    actions = task.actions(wild.astype(np.float32))[:, 0]
    assert np.all(actions >= -1.0) and np.all(actions <= 1.0)
    assert np.all(np.abs(actions - wild[:, 6]) <= 0.1 + 1e-6)  # the rate limit holds inside the graph
    pid = np.clip(np.clip(pid_command(wild, **GAINS, indices=env.pid_observation)[:, 0], -1, 1),
                  wild[:, 6] - 0.1, wild[:, 6] + 0.1)  # the PID's command as the plant would apply it
    assert np.all(np.abs(actions - np.clip(pid, -1, 1)) <= 0.3 + 1e-5)  # the correction is at most the scale

"""The control environments and their baselines: API conformance, determinism, known answers of the simulators."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from shopfloor.control.envs.dispatching import RULES, DispatchingEnv
from shopfloor.control.envs.thermal import ThermalProcessEnv
from shopfloor.control.pid import PID, run_episode, simc_from_step_test, tune_pid
from shopfloor.control.training import make_env
from shopfloor.core.errors import ConfigError


@pytest.mark.parametrize("env_id", ["shopfloor/ThermalProcess-v0", "shopfloor/Dispatching-v0"])
def test_registered_envs_pass_the_gymnasium_checker(env_id):
    env = make_env(env_id)
    check_env(env.unwrapped, skip_render_check=True)


def _rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        out.append(np.append(obs, reward))
        if terminated or truncated:
            break
    return out


@pytest.mark.parametrize("make, actions", [
    (lambda: ThermalProcessEnv(randomize=0.3), [np.array([np.sin(k / 7.0)], np.float32) for k in range(300)]),
    (lambda: DispatchingEnv(), [k % len(RULES) for k in range(200)]),
])
def test_same_seed_same_episode_other_seed_other_episode(make, actions):
    a, b, c = _rollout(make(), 5, actions), _rollout(make(), 5, actions), _rollout(make(), 6, actions)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len(a) != len(c) or any(not np.array_equal(x, y) for x, y in zip(a, c))


def _quiet_plant(**kwargs):
    return ThermalProcessEnv(noise_std=0.0, load_noise_std=0.0, setpoint_changes=0, load_changes=0, **kwargs)


def test_thermal_steady_state_delay_and_actuator_limits():
    env = _quiet_plant()
    obs, info = env.reset(seed=3)
    hold = obs[6]  # the steady-state command, applied since "ever"
    for _ in range(30):
        obs, _, _, _, info = env.step(np.array([hold], np.float32))
    assert abs(info["error"]) < 1e-6  # started in steady state at the setpoint
    before = info["temperature"]
    obs, _, _, _, info = env.step(np.array([5.0], np.float32))  # far above the bound, far above the rate limit
    assert obs[6] == pytest.approx(hold + env.rate_limit, abs=1e-6)  # slewed by exactly the rate limit
    delay_steps = int(round(env.plant["delay"] / env.dt))
    temps = [info["temperature"]]
    for _ in range(delay_steps + 40):
        obs, _, _, _, info = env.step(np.array([1.0], np.float32))
        temps.append(info["temperature"])
        assert obs[6] <= 1.0 and obs[6] - obs[7] <= env.rate_limit + 1e-6
    assert temps[delay_steps - 1] == pytest.approx(before)  # nothing moves before the transport delay is over
    assert temps[-1] > before + 10


def test_thermal_step_test_recovers_the_plant_and_simc_rule():
    env = _quiet_plant(gain=350.0, time_constant=90.0, delay=16.0)
    env.reset(seed=0)
    simc = simc_from_step_test(env)
    model = simc["model"]
    assert model["gain"] == pytest.approx(350.0, rel=0.02)
    assert model["time_constant"] == pytest.approx(90.0, rel=0.05)
    assert model["delay"] == pytest.approx(16.0, abs=2.0)  # ZOH sampling at 2 s shifts the apparent dead time
    theta = max(model["delay"], 1.0)
    assert simc["kc"] == pytest.approx(model["time_constant"] / (model["gain"] * 2 * theta))


def test_pid_holds_steady_state_and_tuning_never_worsens_simc():
    env = _quiet_plant()
    result = run_episode(env, PID(0.01, 60.0, 0.0), seed=1)
    assert result["iae"] < 1e-3 and result["success"] and result["violations"] == 0
    tuned = tune_pid(seeds=(1_000_000, 1_000_001), max_evaluations=15)
    assert tuned["objective_tuned"] <= tuned["objective_simc"]
    assert tuned["kc"] > 0 and tuned["ti"] > 0


def test_randomisation_draws_plants_within_the_spread():
    env = ThermalProcessEnv(randomize=0.3)
    plants = []
    for seed in range(40):
        env.reset(seed=seed)
        plants.append(dict(env.plant))
    for key, nominal in env.nominal.items():
        values = np.array([p[key] for p in plants])
        assert values.min() >= 0.7 * nominal and values.max() <= 1.3 * nominal and values.std() > 0.05 * nominal


def test_bad_env_settings_say_what_to_fix():
    with pytest.raises(ConfigError, match="randomize must be in"):
        ThermalProcessEnv(randomize=1.5)
    with pytest.raises(ConfigError, match="unknown environment"):
        make_env("shopfloor/NoSuchPlant-v0")
    with pytest.raises(ConfigError, match="do not fit"):
        make_env("shopfloor/ThermalProcess-v0", {"no_such_setting": 1})


def test_dispatching_rules_pick_the_job_they_promise():
    env = DispatchingEnv()
    env.reset(seed=0)
    env.waiting = [0, 1, 2]
    env.arrival[:3] = [1.0, 2.0, 3.0]
    env.processing[:3] = [9.0, 2.0, 5.0]
    env.due[:3] = [50.0, 40.0, 30.0]
    env.family[:3] = [2, 1, 0]
    env.current_family, env.time = 1, 3.0
    assert [env.choose(r) for r in range(3)] == [0, 1, 2]  # FIFO, SPT, EDD
    assert env.choose(3) == 1  # same family as the machine's set-up
    # minimum slack: due - now - setup - processing = 50-3-3-9, 40-3-0-2, 30-3-3-5 -> job 2
    assert env.choose(4) == 2


def test_dispatching_episode_accounts_every_job():
    env = DispatchingEnv(jobs=20)
    env.reset(seed=1)
    total, done, info = 0.0, False, {}
    while not done:
        _, reward, done, _, info = env.step(2)
        total += reward
    assert env.done_jobs == 20
    assert total == pytest.approx(-env.tardiness.sum() / 10.0)
    assert info["episode_metrics"]["mean_tardiness"] == pytest.approx(env.tardiness.mean())

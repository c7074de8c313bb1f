"""The control task on tiny budgets: export parity with stable-baselines3, limits in the graph, save/load, evaluate
against the baseline on the same episodes, predict from files/arrays, CLI and server. Never a trained score."""

import json

import numpy as np
import pytest
import torch

from shopfloor.control.envs.dispatching import RULES
from shopfloor.control.pid import PID, run_episode
from shopfloor.control.task import Control
from shopfloor.control.training import make_env
from shopfloor.core.errors import ConfigError, DataError, NotFittedError
from shopfloor.core.registry import get_task, load

OBS = 24  # thermal observation values: 8 + the default history of 16
TINY = {"n_envs": 1, "eval_freq": 200, "eval_episodes": 1, "checkpoint_freq": 0, "training": {"progress": False}}


@pytest.fixture(scope="module")
def thermal(tmp_path_factory):
    """SAC for 400 steps on the thermal zone (PID tuning cut short), saved and loaded."""
    root = tmp_path_factory.mktemp("control")
    task = Control(algo="sac", timesteps=400, tune_baseline=False, **TINY)
    task.fit(None, root / "model")
    task.state["baselines"] = {"pid": {"kc": 0.0138, "ti": 46.7, "td": 2.1, "dt": 2.0}}  # known tuned gains
    return task, root


def test_registered_and_unfitted_refusals(tmp_path):
    assert get_task("control") is Control
    task = Control()
    with pytest.raises(NotFittedError, match=r"call fit\(\)"):
        task.predict([np.zeros(OBS)])
    with pytest.raises(NotFittedError):
        task.evaluate(None)
    with pytest.raises(ConfigError, match="reads no --data"):
        task.fit(tmp_path)


def test_unsupported_combinations_are_refused_together():
    with pytest.raises(ConfigError, match="continuous .* use --algo ppo") as info:
        Control(env="shopfloor/Dispatching-v0", algo="sac", her=True, timesteps=200, **TINY).fit(None)
    assert "--her needs a goal-conditioned environment" in str(info.value)


def test_export_matches_the_sb3_policy_and_respects_limits(thermal):
    task, _ = thermal
    env = make_env("shopfloor/ThermalProcess-v0")
    obs = []
    o, _ = env.reset(seed=0)
    for k in range(200):
        o, *_ = env.step(np.array([np.cos(k / 9.0)], np.float32))
        obs.append(o)
    assert task.parity_with_sb3(np.stack(obs)) < 1e-5  # observations the plant gives
    rng = np.random.default_rng(0)
    wild = rng.normal(0, 1, (4000, OBS)) * rng.choice([1.0, 100.0, 1e4], (4000, OBS))  # random, far outside too
    wild[:, 6] = rng.uniform(-1, 1, 4000)  # the previous action is always a feasible one
    assert task.parity_with_sb3(wild) < 1e-4
    actions = task.actions(wild.astype(np.float32))[:, 0]
    rate = task.state["action"]["rate_limit"][0]
    assert np.all(actions >= -1.0) and np.all(actions <= 1.0)
    assert np.all(np.abs(actions - wild[:, 6]) <= rate + 1e-6)  # the rate limit holds inside the graph


def test_torch_and_onnx_agree_and_save_load_keeps_predictions(thermal):
    task, root = thermal
    loaded = load(root / "model", device="cpu")
    obs = make_env("shopfloor/ThermalProcess-v0").reset(seed=4)[0]
    batch = np.stack([obs, obs * 1.01]).astype(np.float32)
    with torch.no_grad():
        eager = task.torch_model(torch.as_tensor(batch)).numpy()
    np.testing.assert_allclose(loaded.actions(batch), eager, atol=1e-5)
    assert loaded.predict([batch])[1]["action"] == pytest.approx(task.predict([batch])[1]["action"], abs=1e-6)


def test_predict_reads_json_npy_csv_and_checks_the_contract(thermal, tmp_path):
    task, _ = thermal
    obs = make_env("shopfloor/ThermalProcess-v0").reset(seed=2)[0]
    (tmp_path / "o.json").write_text(json.dumps({"observation": obs.tolist()}))
    np.save(tmp_path / "o.npy", np.stack([obs, obs]))
    np.savetxt(tmp_path / "o.csv", obs[None], delimiter=",")
    rows = task.predict([tmp_path / "o.json", tmp_path / "o.npy", tmp_path / "o.csv", obs])
    assert [r["index"] for r in rows] == [0, 0, 1, 0, 0]
    assert len({round(r["action"][0], 5) for r in rows}) == 1  # the same observation, the same action
    with pytest.raises(DataError, match=rf"got shape \(1, 5\), this model expects observations of {OBS} values"):
        task.predict([np.zeros(5)])
    with pytest.raises(DataError, match="NaN"):
        task.predict([np.full(OBS, np.nan)])


def test_evaluate_runs_policy_and_pid_on_the_same_episodes(thermal, tmp_path):
    task, _ = thermal
    result = task.evaluate(None, report_dir=tmp_path / "report", episodes=3, seed=7)
    pid = PID(0.0138, 46.7, 2.1, 2.0)
    env = make_env("shopfloor/ThermalProcess-v0").unwrapped
    expected = np.mean([run_episode(env, pid, s)["iae"] for s in (7, 8, 9)])
    assert result["baselines"]["pid"]["iae"]["mean"] == pytest.approx(expected)  # the same seeded episodes
    assert result["per_controller"]["pid"]["iae"] == pytest.approx(expected)
    comparison = result["comparison"]["pid"]["iae"]
    assert comparison["ci95_low"] <= comparison["mean"] <= comparison["ci95_high"]
    assert comparison["mean"] == pytest.approx(result["iae"] - expected)
    for name in ("report.html", "learning_curve.png", "episode_trace.png", "return_distribution.png",
                 "iae_distribution.png"):
        assert (tmp_path / "report" / name).is_file()


def test_discrete_policy_exports_the_argmax_of_ppo(tmp_path):
    task = Control(env="shopfloor/Dispatching-v0", algo="ppo", timesteps=256, **TINY)
    task.fit(None)
    env = make_env("shopfloor/Dispatching-v0")
    obs = [env.reset(seed=s)[0] for s in range(5)] + [env.observation_space.sample() for _ in range(50)]
    assert task.parity_with_sb3(np.stack(obs)) == 0
    row = task.predict([obs[0]])[0]
    assert row["label"] == RULES[row["action"]]
    result = task.evaluate(None, episodes=2)
    assert set(result["baselines"]) == {r.lower() for r in RULES}
    assert "mean_tardiness_change_vs_best_baseline" in result


def test_cli_train_evaluate_predict(tmp_path):
    from typer.testing import CliRunner

    from shopfloor.cli import app

    runner = CliRunner()
    out = tmp_path / "model"
    result = runner.invoke(app, ["train", "control", "--out", str(out), "--algo", "ppo", "--timesteps", "256",
                                 "--env-kwargs", '{"randomize": 0.2, "episode_steps": 120}', "--n-envs", "1",
                                 "--eval-freq", "256", "--eval-episodes", "1", "--tune-baseline", "false",
                                 "--seed", "3", "--progress", "false"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(out), "--episodes", "2", "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["episodes"] == 2 and metrics["env_kwargs"]["randomize"] == 0.2
    obs = make_env("shopfloor/ThermalProcess-v0").reset(seed=0)[0]
    (tmp_path / "obs.json").write_text(json.dumps(obs.tolist()))
    result = runner.invoke(app, ["predict", str(out), str(tmp_path / "obs.json")])
    assert result.exit_code == 0, result.output
    assert -1.0 <= json.loads(result.stdout)[0]["action"][0] <= 1.0


def test_server_answers_actions_over_http(thermal, tmp_path):
    from fastapi.testclient import TestClient

    from shopfloor.plant.server import ServerSettings, create_app

    task, root = thermal
    app = create_app(ServerSettings(model_dirs=[root / "model"], model_names=["control"], db=f"sqlite:///{tmp_path / 'r.db'}", device="cpu"))
    obs = make_env("shopfloor/ThermalProcess-v0").reset(seed=5)[0]
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/v1/models/control/predict", json=obs.tolist())
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["action"][0] == pytest.approx(task.predict([obs])[0]["action"][0], abs=1e-6)
        r = client.post("/v1/models/control/predict", json=[1.0, 2.0])
        assert r.status_code in (400, 422) and f"expects observations of {OBS} values" in r.text


def test_goal_conditioned_robot_reach_with_her(tmp_path):
    """panda-gym's PandaReach (Dict observation): TQC + HER, the flat graph equals the SB3 MultiInputPolicy, the
    Dict JSON layout is read, and the scripted controller reaches the goal (a known answer of the simulator)."""
    pytest.importorskip("panda_gym", reason="panda-gym (PyBullet) not installed: pip install 'shopfloor[robot]'")
    from shopfloor.control.spaces import flatten

    task = Control(env="PandaReach-v3", algo="tqc", her=True, timesteps=300, **TINY)
    task.fit(None)
    env = make_env("PandaReach-v3")
    keys = task.state["observation"]["keys"]
    assert [k for k, _ in keys] == ["achieved_goal", "desired_goal", "observation"]
    observations = [flatten(env.reset(seed=s)[0], keys) for s in range(20)]
    assert task.parity_with_sb3(np.stack(observations)) < 1e-5
    obs = env.reset(seed=3)[0]
    (tmp_path / "obs.json").write_text(json.dumps({k: v.tolist() for k, v in obs.items()}))
    row = task.predict([tmp_path / "obs.json"])[0]
    assert row["action"] == pytest.approx(task.predict([flatten(obs, keys)])[0]["action"], abs=1e-6)
    assert all(-1.0 <= a <= 1.0 for a in row["action"])
    result = task.evaluate(None, episodes=3)
    assert result["per_controller"]["scripted"]["success_rate"] == 1.0


def test_increment_mode_graph_steps_from_the_previous_action():
    """action_mode increment: the agent's output is a step of at most the rate limit; the graph adds it to the
    previous action, so graph and SB3-plus-wrapper agree and every action is within bounds and the rate limit."""
    task = Control(algo="sac", timesteps=300, action_mode="increment", tune_baseline=False, **TINY)
    task.fit(None)
    rng = np.random.default_rng(1)
    obs = rng.normal(0, 50, (2000, OBS))
    obs[:, 6] = rng.uniform(-1, 1, 2000)
    assert task.parity_with_sb3(obs) < 1e-5
    actions = task.actions(obs.astype(np.float32))[:, 0]
    assert np.all(np.abs(actions) <= 1.0) and np.all(np.abs(actions - obs[:, 6]) <= 0.1 + 1e-6)
    with pytest.raises(ConfigError, match="needs a Box action with a rate limit"):
        Control(env="shopfloor/Dispatching-v0", algo="ppo", action_mode="increment", timesteps=200, **TINY).fit(None)

"""Deep-RL control against the classical baselines, on the same seeded evaluation episodes.

Parts (each fits one CPU-lock hold; results are merged into benchmarks/results/control.json):

- ``thermal``: SAC (``--action-mode residual``, the default, kept under ``thermal_residual``: the agent corrects
  the tuned PID's command by at most ``--residual-scale``; ``increment``, under ``thermal``: the agent steps the
  heater command by at most the rate limit; ``absolute`` under ``thermal_absolute_action``) trained on ``shopfloor/ThermalProcess-v0``
  with ±30 % domain randomisation of gain, time constant and delay (2 simulator processes, a wall-time budget),
  then 100 seeded episodes on the nominal plant and 100 on randomised plants, the exported ONNX policy against the
  PID (SIMC from a step test, then optimised on the nominal plant). Targets: IAE >= 20 % below the PID with no more
  violations on the nominal plant; ahead of it on the randomised plants.
- ``reach``: TQC + HER on panda-gym's ``PandaReach-v3`` (PyBullet), 100 seeded episodes against the scripted
  controller (straight at the goal). Target: success rate >= 0.95.
- ``pick``: TQC + HER on ``PandaPickAndPlace-v3`` for a CPU budget (``--seconds``; the stored run: 570 s on 2
  processes, 20k steps; rl-zoo trains it for 1M steps, out of reach here), 100 seeded episodes against the
  scripted pick-and-place (hover, descend, grasp, carry). No target: the figure is the success rate reached within
  the stated budget.
- ``dispatching``: PPO choosing the dispatching rule on ``shopfloor/Dispatching-v0``, 100 seeded episodes against
  every single rule (FIFO, SPT, EDD, SETUP, MSLACK). Target: mean tardiness below the best rule.

Usage: python benchmarks/bench_control.py [--part all|thermal|dispatching|reach|pick] [--seconds S] [--algo sac]
[--out DIR]; ``all`` (the default, what ``make bench`` runs) runs every part in turn, each with the budget of its
stored run (:data:`PART_SECONDS`) unless ``--seconds`` is given, and the thermal part in residual mode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, write_result  # noqa: E402

from shopfloor.control.task import Control  # noqa: E402

TARGET_IAE_REDUCTION = 0.20


def _keep(metrics: dict) -> dict:
    """The comparison figures of an evaluation (no per-episode lists)."""
    return {k: metrics[k] for k in ("episodes", "mean_return", "success_rate", "violations", "iae", "mean_tardiness",
                                    "best_baseline", "best_baseline_iae", "best_baseline_mean_tardiness",
                                    "iae_change_vs_best_baseline", "mean_tardiness_change_vs_best_baseline",
                                    "per_controller", "comparison", "env_kwargs") if k in metrics}


def thermal(args: argparse.Namespace) -> dict:
    out = Path(args.out) / "thermal"
    task = Control(env="shopfloor/ThermalProcess-v0", env_kwargs={"randomize": 0.3}, algo=args.algo,
                   action_mode=args.action_mode, residual_scale=args.residual_scale,
                   residual_dead_zone=args.residual_dead_zone, gamma=args.gamma,
                   net_arch=args.net_arch, algo_kwargs=json.loads(args.algo_kwargs),
                   timesteps=args.timesteps, max_seconds=args.seconds, n_envs=2, eval_freq=10_000,
                   eval_episodes=10, checkpoint_freq=50_000, training={"progress": False, "seed": 0})
    started = time.perf_counter()
    task.fit(None, out / "model")
    fit_seconds = time.perf_counter() - started
    nominal = task.evaluate(None, report_dir=out / "report_nominal", episodes=args.episodes, seed=0,
                            env_kwargs={"randomize": 0.0})
    randomised = task.evaluate(None, report_dir=out / "report_randomised", episodes=args.episodes, seed=0,
                               env_kwargs={"randomize": 0.3})
    pid = nominal["per_controller"]["pid"]
    reduction = -nominal["comparison"]["pid"]["iae"]["relative"]
    training = task.state["training"]
    key = {"increment": "thermal", "absolute": "thermal_absolute_action", "residual": "thermal_residual"}
    return {
        key[args.action_mode]: {
            "algo": args.algo, "action_mode": args.action_mode, "residual": task.state.get("residual"),
            "gamma": args.gamma, "net_arch": args.net_arch, "algo_kwargs": json.loads(args.algo_kwargs),
            "train_env_kwargs": {"randomize": 0.3}, "timesteps": training["timesteps"],
            "training_seconds": training["seconds"], "fit_seconds_incl_pid_tuning": round(fit_seconds, 1),
            "best_timesteps": training["best_timesteps"], "n_envs": 2, "budget_seconds": args.seconds,
            "validation": training["validation"],
            "pid_gains": {k: task.state["baselines"]["pid"][k] for k in ("kc", "ti", "td")},
            "pid_simc_gains": task.state["baselines"]["pid"]["simc"],
            "nominal": _keep(nominal), "randomised_30pct": _keep(randomised),
            "iae_reduction_vs_pid_nominal": reduction,
            "iae_reduction_vs_pid_randomised": -randomised["comparison"]["pid"]["iae"]["relative"],
            "target_nominal_met": bool(reduction >= TARGET_IAE_REDUCTION
                                       and nominal["per_controller"]["policy"]["violations"] <= pid["violations"]),
            "target_randomised_met": bool(randomised["comparison"]["pid"]["iae"]["ci95_high"] < 0
                                          and randomised["per_controller"]["policy"]["violations"]
                                          <= randomised["per_controller"]["pid"]["violations"]),
            "export_parity_max_abs_diff": task.state["export_parity_max_abs_diff"],
            "model": str(out / "model"),
        }}


def dispatching(args: argparse.Namespace) -> dict:
    out = Path(args.out) / "dispatching"
    task = Control(env="shopfloor/Dispatching-v0", algo="ppo", timesteps=args.timesteps, max_seconds=args.seconds,
                   n_envs=2, eval_freq=10_000, eval_episodes=20, checkpoint_freq=0, gamma=0.99,
                   training={"progress": False, "seed": 0, "batch_size": 64})
    task.fit(None, out / "model")
    metrics = task.evaluate(None, report_dir=out / "report", episodes=args.episodes, seed=0)
    best = metrics["best_baseline"]
    training = task.state["training"]
    change = metrics["comparison"][best]["mean_tardiness"]
    return {"dispatching": {
        "algo": "ppo", "timesteps": training["timesteps"], "training_seconds": training["seconds"], "n_envs": 2,
        "budget_seconds": args.seconds, "evaluation": _keep(metrics), "best_rule": best,
        "mean_tardiness_change_vs_best_rule": change["relative"],
        "target_met": bool(change["ci95_high"] < 0), "model": str(out / "model")}}


def reach(args: argparse.Namespace) -> dict:
    out = Path(args.out) / "reach"
    task = Control(env="PandaReach-v3", algo="tqc", her=True, timesteps=args.timesteps, max_seconds=args.seconds,
                   n_envs=2, eval_freq=2_000, eval_episodes=20, target_success_rate=0.95, checkpoint_freq=0,
                   gamma=0.95, training={"progress": False, "seed": 0, "batch_size": 2048, "learning_rate": 1e-3},
                   algo_kwargs={"tau": 0.05, "policy_kwargs": {"net_arch": [64, 64], "n_critics": 1}})
    task.fit(None, out / "model")
    metrics = task.evaluate(None, report_dir=out / "report", episodes=args.episodes, seed=0)
    training = task.state["training"]
    return {"reach": {
        "env": "PandaReach-v3 (panda-gym 3.0.7, PyBullet)", "algo": "tqc+her", "timesteps": training["timesteps"],
        "training_seconds": training["seconds"], "stopped_early": training["stopped_early"], "n_envs": 2,
        "budget_seconds": args.seconds, "evaluation": _keep(metrics),
        "success_rate": metrics["success_rate"],
        "scripted_success_rate": metrics["per_controller"]["scripted"]["success_rate"],
        "target_met": bool(metrics["success_rate"] >= 0.95), "model": str(out / "model")}}


def pick(args: argparse.Namespace) -> dict:
    """rl-zoo's TQC + HER settings for PandaPickAndPlace (gamma 0.95, learning rate 1e-3, tau 0.05, 2 critics, HER
    'future' with 4 goals) with a smaller network and minibatch ([256]*3 and 512 instead of [512]*3 and 2048) so
    that a CPU budget of minutes sees more updates; no TimeFeatureWrapper."""
    from shopfloor.control.training import make_env

    out = Path(args.out) / "pick"
    hyper = {"gamma": 0.95, "net_arch": [256, 256, 256], "batch_size": 512, "learning_rate": 1e-3, "tau": 0.05,
             "n_critics": 2, "her": {"n_sampled_goal": 4, "goal_selection_strategy": "future"}}
    task = Control(env="PandaPickAndPlace-v3", algo="tqc", her=True, timesteps=args.timesteps,
                   max_seconds=args.seconds, n_envs=2, eval_freq=10_000, eval_episodes=20, checkpoint_freq=0,
                   gamma=hyper["gamma"], net_arch=hyper["net_arch"],
                   training={"progress": False, "seed": 0, "batch_size": hyper["batch_size"],
                             "learning_rate": hyper["learning_rate"]},
                   algo_kwargs={"tau": hyper["tau"], "replay_buffer_kwargs": hyper["her"],
                                "policy_kwargs": {"net_arch": hyper["net_arch"], "n_critics": hyper["n_critics"]}})
    task.fit(None, out / "model")
    metrics = task.evaluate(None, report_dir=out / "report", episodes=args.episodes, seed=0)
    env = make_env("PandaPickAndPlace-v3")  # episodes won at reset: the cube starts within 5 cm of the target
    at_start = sum(bool(env.reset(seed=s)[1]["is_success"]) for s in range(args.episodes))
    training = task.state["training"]
    return {"pick_and_place": {
        "env": "PandaPickAndPlace-v3 (panda-gym 3.0.7, PyBullet)", "algo": "tqc+her", "hyperparameters": hyper,
        "timesteps": training["timesteps"], "training_seconds": training["seconds"], "n_envs": 2,
        "budget_seconds": args.seconds, "rl_zoo_timesteps": 1_000_000, "evaluation": _keep(metrics),
        "success_rate": metrics["success_rate"],
        "scripted_success_rate": metrics["per_controller"]["scripted"]["success_rate"],
        "success_at_reset_rate": at_start / args.episodes, "report": metrics.get("report"),
        "model": str(out / "model")}}


PARTS = {"thermal": thermal, "dispatching": dispatching, "reach": reach, "pick": pick}
PART_SECONDS = {"thermal": 480.0, "dispatching": 240.0, "reach": 420.0, "pick": 570.0}  # the stored runs' budgets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("all", *PARTS), default="all")
    parser.add_argument("--algo", default="sac")
    parser.add_argument("--action-mode", default="residual", choices=("increment", "absolute", "residual"))
    parser.add_argument("--residual-scale", type=float, default=0.1)
    parser.add_argument("--residual-dead-zone", type=float, default=0.0)
    parser.add_argument("--gamma", type=float, default=0.98)
    parser.add_argument("--net-arch", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--algo-kwargs", default="{}", help="more SAC/TQC arguments (JSON)")
    parser.add_argument("--seconds", type=float, default=None, help="training budget (default: PART_SECONDS)")
    parser.add_argument("--timesteps", type=int, default=1_000_000)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--out", default="/tmp/shopfloor-bench-control")
    args = parser.parse_args()
    budget = args.seconds
    for name in PARTS if args.part == "all" else [args.part]:
        args.seconds = PART_SECONDS[name] if budget is None else budget
        run_part(name, args)


def run_part(name: str, args: argparse.Namespace) -> None:
    """Run one part and merge its figures into results/control.json (the other parts' stay)."""
    load_before = os.getloadavg()
    figures = PARTS[name](args)
    part = next(iter(figures))
    figures[part]["load_average_before"] = load_before
    figures[part]["load_average_after"] = os.getloadavg()
    previous = RESULTS / "control.json"
    merged = {}
    if previous.is_file():
        stored = json.loads(previous.read_text())
        merged = {k: v for k, v in stored.items() if k not in ("benchmark", "date", "machine")}  # the other parts
    merged.update(figures)
    write_result("control", merged)
    print(json.dumps({k: v for k, v in figures[part].items() if k not in ("nominal", "randomised_30pct",
                                                                               "evaluation")}, indent=1))


if __name__ == "__main__":
    main()

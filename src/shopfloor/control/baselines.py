"""Each environment's classical baseline controllers, run on the same seeded episodes as the policy.

A controller has ``reset()`` (start of an episode) and ``act(observation) -> action``. :func:`tune_baselines`
commissions them once (PID tuning for the thermal zone) and returns a JSON-able record that the task stores in its
state; :func:`make_baselines` rebuilds the controllers from that record.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from shopfloor.core.errors import ConfigError

THERMAL = "shopfloor/ThermalProcess-v0"
DISPATCHING = "shopfloor/Dispatching-v0"


class Controller(Protocol):
    """What a baseline offers: a reset per episode and one action per observation."""

    def reset(self) -> None: ...

    def act(self, observation: np.ndarray) -> Any: ...


class FixedRule:
    """A dispatching rule applied at every decision (action = the rule's index)."""

    def __init__(self, index: int):
        self.index = int(index)

    def reset(self) -> None:
        """Nothing to forget."""

    def act(self, observation: np.ndarray) -> int:
        return self.index


class ScriptedReach:
    """Robot reach: move the end effector straight at the goal, ``gain`` x the remaining offset, clipped."""

    def __init__(self, gain: float = 10.0):
        self.gain = float(gain)

    def reset(self) -> None:
        """Nothing to forget."""

    def act(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        offset = np.asarray(observation["desired_goal"]) - np.asarray(observation["achieved_goal"])
        return np.clip(self.gain * offset, -1.0, 1.0).astype(np.float32)


class ScriptedPickAndPlace:
    """Robot pick-and-place, read from panda-gym's observation (``observation`` = end-effector position (3),
    velocity (3), finger width (1), object position (3), rotation (3), velocities (6); ``desired_goal`` = target):
    hover above the object with the gripper open, descend, close, then carry the object to the target (it is
    held there: panda-gym counts success while the object is within 5 cm of the target, in the air or not).

    Stateless: each phase follows from the observation, so a dropped object is simply picked up again.
    """

    def __init__(self, gain: float = 10.0, hover: float = 0.05, tolerance: float = 0.01):
        self.gain, self.hover, self.tolerance = float(gain), float(hover), float(tolerance)

    def reset(self) -> None:
        """Nothing to forget."""

    def act(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        obs = np.asarray(observation["observation"], dtype=np.float64)
        ee, width, obj = obs[0:3], obs[6], obs[7:10]
        goal = np.asarray(observation["desired_goal"], dtype=np.float64)
        offset = obj - ee
        held = np.linalg.norm(offset) < 2 * self.tolerance and width < 0.045  # closed on the 4 cm cube
        if held:
            target, grip = goal, -1.0
        elif np.linalg.norm(offset[:2]) > self.tolerance:  # above the object first, fingers open
            target, grip = obj + np.array([0.0, 0.0, self.hover]), 1.0
        elif offset[2] < -self.tolerance / 2:  # descend onto it
            target, grip = obj, 1.0
        else:  # around it: close
            target, grip = obj, -1.0
        move = np.clip(self.gain * (target - ee), -1.0, 1.0)
        return np.append(move, grip).astype(np.float32)


def tune_baselines(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Commission ``env_id``'s baselines on its nominal settings; ``{}`` for environments without any."""
    if env_id == THERMAL:
        from .pid import tune_pid

        return {"pid": tune_pid(env_kwargs)}
    if env_id == DISPATCHING:
        from .envs.dispatching import RULES

        return {rule.lower(): {"rule": i} for i, rule in enumerate(RULES)}
    if env_id.startswith("PandaReach"):
        return {"scripted": {"gain": 10.0}}
    if env_id.startswith("PandaPickAndPlace"):
        return {"scripted": {"gain": 10.0, "hover": 0.05, "tolerance": 0.01}}
    return {}


def make_baselines(env_id: str, record: dict[str, Any]) -> dict[str, Controller]:
    """The controllers of a :func:`tune_baselines` record, by name."""
    if env_id == THERMAL and "pid" in record:
        from .pid import PID

        gains = record["pid"]
        return {"pid": PID(gains["kc"], gains["ti"], gains["td"], gains["dt"])}
    if env_id == DISPATCHING:
        return {name: FixedRule(entry["rule"]) for name, entry in record.items()}
    if env_id.startswith("PandaReach") and "scripted" in record:
        return {"scripted": ScriptedReach(record["scripted"]["gain"])}
    if env_id.startswith("PandaPickAndPlace") and "scripted" in record:
        return {"scripted": ScriptedPickAndPlace(**record["scripted"])}
    if record:
        raise ConfigError(f"no baseline controllers are known for {env_id!r} (stored: {sorted(record)})")
    return {}


__all__ = ["Controller", "FixedRule", "ScriptedPickAndPlace", "ScriptedReach", "make_baselines", "tune_baselines"]

"""The control environments, registered in Gymnasium under ``shopfloor/`` when this package is imported.

- ``shopfloor/ThermalProcess-v0`` (:mod:`.thermal`): heated zone with delay, actuator limits, noise, disturbances.
- ``shopfloor/Dispatching-v0`` (:mod:`.dispatching`): one machine, jobs with due dates and family set-up times.
"""

from __future__ import annotations

import gymnasium as gym

ENVIRONMENTS = {
    "shopfloor/ThermalProcess-v0": "shopfloor.control.envs.thermal:ThermalProcessEnv",
    "shopfloor/Dispatching-v0": "shopfloor.control.envs.dispatching:DispatchingEnv",
}


def register_environments() -> None:
    """Register every shopfloor environment with Gymnasium (idempotent)."""
    for env_id, entry_point in ENVIRONMENTS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point)


register_environments()

__all__ = ["ENVIRONMENTS", "register_environments"]

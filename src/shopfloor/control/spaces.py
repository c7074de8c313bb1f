"""Observation layouts: a flat Box, or a goal-conditioned Dict of flat Boxes seen by the graph as one vector.

The exported graph always takes one flat ``observation`` vector. For a ``Dict`` space (``observation``,
``achieved_goal``, ``desired_goal`` of robot tasks) the parts are concatenated in the space's own key order — the
order stable-baselines3's ``CombinedExtractor`` concatenates them in — so ``flatten`` here and the policy agree.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def observation_keys(space: gym.Space) -> list[tuple[str, int]] | None:
    """``[(key, size), ...]`` of a Dict space of flat Boxes; ``None`` for a flat Box."""
    if isinstance(space, gym.spaces.Dict):
        return [(key, int(np.prod(sub.shape))) for key, sub in space.spaces.items()]
    return None


def flatten(observation: Any, keys: list[tuple[str, int]] | None) -> np.ndarray:
    """One observation (or a batch, rows first) as the flat vector(s) the graph takes."""
    if keys is None or not isinstance(observation, dict):
        return np.asarray(observation, dtype=np.float32)
    parts = [np.asarray(observation[key], dtype=np.float32) for key, _ in keys]
    return np.concatenate(parts, axis=-1)


def unflatten(flat: np.ndarray, keys: list[tuple[str, int]]) -> dict[str, np.ndarray]:
    """Flat rows ``(n, total)`` back to the Dict layout (each ``(n, size)``)."""
    out, start = {}, 0
    for key, size in keys:
        out[key] = flat[:, start:start + size]
        start += size
    return out


def space_bounds(space: gym.Space) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the flat observation."""
    keys = observation_keys(space)
    if keys is None:
        return space.low.reshape(-1), space.high.reshape(-1)
    return (np.concatenate([space.spaces[k].low.reshape(-1) for k, _ in keys]),
            np.concatenate([space.spaces[k].high.reshape(-1) for k, _ in keys]))


__all__ = ["flatten", "observation_keys", "space_bounds", "unflatten"]

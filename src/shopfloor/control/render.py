"""One seeded robot episode per controller for the report: the distance to the goal at every step and, where the
simulator renders offscreen, its frames (an animated GIF and a PNG strip).

It applies to goal-conditioned environments (a Dict observation with ``achieved_goal`` and ``desired_goal``, e.g.
panda-gym, whose PyBullet TinyRenderer draws on the CPU without a display). Rendering is best effort: an
environment that cannot render offscreen still gives its distance trace, and the episode says why it has no frames.
The episode is the evaluation's first seed, so it is the same episode the tables count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from shopfloor.core.errors import ConfigError

# panda-gym's camera, closer than its default (1.4 m at the base) so the cube is visible in a small frame
PANDA_CAMERA = {"render_width": 256, "render_height": 192, "render_distance": 0.9,
                "render_target_position": np.array([0.0, 0.0, 0.1])}
STRIP_FRAMES = 6


@dataclass
class RobotEpisode:
    """One controller's episode: ``distance`` to the goal at reset and after each step, ``success`` after each
    step, the environment's success ``threshold`` (None when it has none), the RGB ``frames`` (empty when the
    environment does not render) and a ``note`` saying why not."""

    seed: int
    distance: list[float]
    success: list[bool]
    threshold: float | None
    frames: list[np.ndarray] = field(default_factory=list)
    note: str | None = None


def is_goal_conditioned(space: Any) -> bool:
    """A Gymnasium Dict observation space with ``achieved_goal`` and ``desired_goal``."""
    spaces = getattr(space, "spaces", None)
    return isinstance(spaces, dict) and {"achieved_goal", "desired_goal"} <= set(spaces)


def _distance(obs: dict[str, np.ndarray]) -> float:
    return float(np.linalg.norm(np.asarray(obs["achieved_goal"]) - np.asarray(obs["desired_goal"])))


def _open(env_id: str, env_kwargs: dict[str, Any], render: bool) -> tuple[Any, str | None]:
    """The environment, with offscreen rendering when asked and possible (else without, and the reason)."""
    from .training import make_env

    if render:
        extra = {"render_mode": "rgb_array", **(PANDA_CAMERA if env_id.startswith("Panda") else {})}
        try:
            return make_env(env_id, {**env_kwargs, **extra}), None
        except Exception as exc:  # noqa: BLE001 - whatever the simulator refuses, the episode runs unrendered
            note = f"{env_id} does not render offscreen here ({exc}); no frames"
            return make_env(env_id, env_kwargs), note
    return make_env(env_id, env_kwargs), None


def record_episode(env_id: str, env_kwargs: dict[str, Any], act: Callable[[Any], Any], reset: Callable[[], None],
                   seed: int, render: bool = True) -> RobotEpisode:
    """Run ``act`` on episode ``seed`` of ``env_id`` (goal-conditioned), recording the distance to the goal per step
    and, if ``render``, one frame at reset and after each step."""
    env, note = _open(env_id, env_kwargs, render)
    frames: list[np.ndarray] = []

    def grab() -> None:
        nonlocal note
        if not render or note is not None:
            return
        try:
            frame = env.render()
        except Exception as exc:  # noqa: BLE001 - a renderer failing mid-episode leaves the trace intact
            frame, note = None, f"rendering failed ({exc}); no frames"
        if frame is None or np.ndim(frame) != 3:
            note = note or "the environment returned no RGB frame; no frames"
            return
        frames.append(np.asarray(frame, dtype=np.uint8)[..., :3].copy())

    try:
        if not is_goal_conditioned(env.observation_space):
            raise ConfigError(f"{env_id} is not goal-conditioned (no achieved_goal/desired_goal in its observation)")
        obs, _ = env.reset(seed=seed)
        reset()
        distance, success, done = [_distance(obs)], [], False
        grab()
        while not done:
            obs, _, terminated, truncated, info = env.step(act(obs))
            distance.append(_distance(obs))
            success.append(bool(info.get("is_success", False)))
            grab()
            done = terminated or truncated
        threshold = getattr(getattr(env.unwrapped, "task", None), "distance_threshold", None)
    finally:
        env.close()
    return RobotEpisode(seed, distance, success, None if threshold is None else float(threshold),
                        frames if note is None else [], note)


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 12.0, hold_last_s: float = 1.0) -> Path:
    """An animated GIF of ``frames`` (HxWx3 uint8) that loops, holding the last frame ``hold_last_s``."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to write")
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    durations = [int(1000 / fps)] * (len(images) - 1) + [int(1000 * hold_last_s)]
    path = Path(path)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=True)
    return path


def strip_indices(n_frames: int, count: int = STRIP_FRAMES) -> list[int]:
    """``count`` frame indices spread evenly from the first to the last frame (fewer for short episodes)."""
    if n_frames <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, n_frames - 1, min(count, n_frames)).round()})


__all__ = ["PANDA_CAMERA", "RobotEpisode", "is_goal_conditioned", "record_episode", "strip_indices", "write_gif"]

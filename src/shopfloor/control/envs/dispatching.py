"""``shopfloor/Dispatching-v0``: which job a machine runs next, with due dates and family set-up times.

One machine; ``jobs`` jobs arrive over time (Poisson, mean gap ``mean_interarrival``), each with a processing time
(uniform 1..10), a family (``families`` of them) and a due date (arrival + processing time · slack factor, uniform
``due_slack``). Switching to a job of another family first costs a set-up time (``setup_time`` · the family
distance, 1 or 2 between neighbours and far families). Whenever the machine is free and more than one job waits, the
controller picks a **dispatching rule** (action, ``Discrete(5)``) which chooses the next job:

====  ======  ===============================================================
 0    FIFO    first come, first served
 1    SPT     shortest processing time
 2    EDD     earliest due date
 3    SETUP   same family as the machine's set-up (earliest due among them), else EDD
 4    MSLACK  minimum slack (due - now - set-up - processing)
====  ======  ===============================================================

Observation (``Box``, float32, 14 values, documented by :data:`OBSERVATION_NAMES`): queue length / 10, time / 100,
the current family (one-hot), waiting jobs per family / 10, the share of waiting jobs already late, mean and least
slack / 20, mean and least processing time / 10, the set-up the EDD job would need / 10.

Reward: ``-tardiness / 10`` of the job just dispatched (its completion time is known when it starts), so the return
is minus the total tardiness / 10. The episode terminates when every job is done (no truncation: it always ends).
Final ``info``: ``episode_metrics`` (``mean_tardiness``, ``late_jobs``, ``violations`` = late jobs, ``makespan``) and
``is_success`` (at least 90 % of the jobs on time). A seed fixes the arrivals, so every rule sees the same jobs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from shopfloor.core.errors import ConfigError

RULES = ("FIFO", "SPT", "EDD", "SETUP", "MSLACK")
OBSERVATION_NAMES = ("queue_length", "time", "family_0", "family_1", "family_2", "waiting_0", "waiting_1",
                     "waiting_2", "late_share", "mean_slack", "least_slack", "mean_processing", "least_processing",
                     "edd_setup")
FAMILIES = 3


class DispatchingEnv(gym.Env):
    """A single machine with due dates and set-up times, dispatched by rule (see module docstring)."""

    metadata = {"render_modes": []}
    observation_names = OBSERVATION_NAMES
    action_names = RULES

    def __init__(self, jobs: int = 60, mean_interarrival: float = 7.0, setup_time: float = 3.0,
                 due_slack: tuple[float, float] = (1.5, 6.0)):
        if jobs < 2 or mean_interarrival <= 0 or setup_time < 0 or not 0 < due_slack[0] <= due_slack[1]:
            raise ConfigError("Dispatching-v0 settings are invalid: need jobs >= 2, mean_interarrival > 0, "
                              f"setup_time >= 0 and 0 < due_slack[0] <= due_slack[1]; got jobs={jobs}, "
                              f"mean_interarrival={mean_interarrival}, setup_time={setup_time}, "
                              f"due_slack={due_slack}. Fix them in --env-kwargs")
        self.jobs, self.mean_interarrival, self.setup_time = int(jobs), float(mean_interarrival), float(setup_time)
        self.due_slack = (float(due_slack[0]), float(due_slack[1]))
        low = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, -20, -20, 0, 0, 0], np.float32)
        high = np.array([20, 50, 1, 1, 1, 20, 20, 20, 1, 20, 20, 2, 2, 5], np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.Discrete(len(RULES))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        n = self.jobs
        self.arrival = np.cumsum(rng.exponential(self.mean_interarrival, n))
        self.processing = rng.uniform(1.0, 10.0, n)
        self.family = rng.integers(0, FAMILIES, n)
        self.due = self.arrival + self.processing * rng.uniform(*self.due_slack, n)
        self.time, self.current_family, self.next_arrival = 0.0, 0, 0
        self.waiting: list[int] = []
        self.tardiness = np.zeros(n)
        self.done_jobs = 0
        self._advance()
        return self._observation(), {}

    def setup(self, job: int) -> float:
        """Set-up time before ``job`` given the machine's current family."""
        distance = abs(int(self.family[job]) - self.current_family)
        return self.setup_time * distance

    def choose(self, rule: int) -> int:
        """The waiting job ``rule`` picks now."""
        w = self.waiting
        if rule == 0:
            return min(w, key=lambda j: self.arrival[j])
        if rule == 1:
            return min(w, key=lambda j: self.processing[j])
        if rule == 2:
            return min(w, key=lambda j: self.due[j])
        if rule == 3:
            same = [j for j in w if self.family[j] == self.current_family]
            return min(same or w, key=lambda j: self.due[j])
        return min(w, key=lambda j: self.due[j] - self.time - self.setup(j) - self.processing[j])

    def step(self, action):
        rule = int(np.asarray(action).reshape(-1)[0])
        if not 0 <= rule < len(RULES):
            raise ConfigError(f"Dispatching-v0 action must be a rule index 0..{len(RULES) - 1} ({', '.join(RULES)}), "
                              f"got {action!r}")
        reward = self._run(self.choose(rule))
        self._advance()
        while len(self.waiting) == 1:  # nothing to decide: run the only job
            reward += self._run(self.waiting[0])
            self._advance()
        terminated = self.done_jobs == self.jobs
        info: dict[str, Any] = {}
        if terminated:
            late = int((self.tardiness > 1e-9).sum())
            info["episode_metrics"] = {"mean_tardiness": float(self.tardiness.mean()), "late_jobs": late,
                                       "violations": late, "makespan": float(self.time)}
            info["is_success"] = bool(late <= 0.1 * self.jobs)
        return self._observation(), float(reward), bool(terminated), False, info

    # ----------------------------------------------------------------- parts
    def _run(self, job: int) -> float:
        self.waiting.remove(job)
        self.time += self.setup(job) + self.processing[job]
        self.current_family = int(self.family[job])
        self.tardiness[job] = max(0.0, self.time - self.due[job])
        self.done_jobs += 1
        return -self.tardiness[job] / 10.0

    def _advance(self) -> None:
        """Let arrivals in up to now; when nothing waits, idle until the next arrival."""
        while self.next_arrival < self.jobs and (self.arrival[self.next_arrival] <= self.time or not self.waiting):
            self.time = max(self.time, float(self.arrival[self.next_arrival]))
            self.waiting.append(self.next_arrival)
            self.next_arrival += 1

    def _observation(self) -> np.ndarray:
        w = self.waiting
        obs = np.zeros(len(OBSERVATION_NAMES), np.float32)
        obs[0] = len(w) / 10.0
        obs[1] = self.time / 100.0
        obs[2 + self.current_family] = 1.0
        if w:
            fam = self.family[w]
            for f in range(FAMILIES):
                obs[5 + f] = float((fam == f).sum()) / 10.0
            slack = self.due[w] - self.time - self.processing[w]
            obs[8] = float((slack < 0).mean())
            obs[9], obs[10] = slack.mean() / 20.0, slack.min() / 20.0
            obs[11], obs[12] = self.processing[w].mean() / 10.0, self.processing[w].min() / 10.0
            obs[13] = self.setup(min(w, key=lambda j: self.due[j])) / 10.0
        return np.clip(obs, self.observation_space.low, self.observation_space.high)


__all__ = ["DispatchingEnv", "OBSERVATION_NAMES", "RULES"]

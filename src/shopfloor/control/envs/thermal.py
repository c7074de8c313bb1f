"""``shopfloor/ThermalProcess-v0``: one heated zone (furnace, extruder barrel, curing oven) under temperature control.

Plant: first order plus dead time around ambient, exact zero-order-hold discretisation at ``dt`` seconds::

    T = ambient + y,   y[k+1] = a·y[k] + (1 - a)·(gain·u[k - n] - load_gain·load[k]),   a = exp(-dt / time_constant)

``u`` is the heater power (0..1) applied ``n = round(delay / dt)`` steps earlier (transport delay); ``load`` (0..1) is
a heat sink (cold product fed through the zone) that steps at random times. The temperature sensor adds Gaussian
noise (``noise_std`` °C); the load is measured too (``load_noise_std``).

Action (``Box(-1, 1, (1,))``): the heater command, -1 = 0 % power, +1 = 100 %. The actuator saturates at the bounds
and slews at most ``rate_limit`` per step (in action units): the applied action is
``clip(command, previous - rate_limit, previous + rate_limit)``. The previous applied action is observation 6.

Observation (``Box``, float32, ``8 + history`` values, all physical units, clipped to the documented bounds):
``[setpoint °C, measured temperature °C, error = setpoint - measured °C, measured load 0..1,
integral of the error °C·s (accumulated only while |error| < integral_band, clipped to ±integral_limit: the
anti-windup a PID would use), rate of the measured temperature °C/s (filtered: ``0.7·previous + 0.3·difference/dt``,
the slope of the baseline PID's filtered measurement), previous applied action, the ``history - 1`` actions before
it (newest first), the error and the temperature rate of the previous step]``. The action history tells a
controller what is already on its way through the delay; the last two values are the memory of the velocity-form
PID (:mod:`shopfloor.control.pid`), so its command is a function of the observation alone
(:data:`PID_OBSERVATION`, used by the residual policy).

Reward per step: ``-min(|setpoint - T| / 20, 5)`` (true temperature) ``- 0.05·|applied action change| / rate_limit``
``- (1 + (T - max_temperature) / 10)`` while ``T > max_temperature`` (a constraint violation: product damage).
Termination: ``T > trip_temperature`` trips the interlock (``terminated``, reward ``-5`` for every step left, so
ending early never pays). Truncation: after ``episode_steps`` steps.

Each episode (``reset(seed=...)``) draws the initial setpoint and load (started in steady state), ``setpoint_changes``
setpoint steps of ±20..60 °C, ``load_changes`` load steps and the noise sequence, all from the seed, so the same seed
gives the same episode whatever the controller does. ``randomize = r`` draws gain, time constant and delay each
uniformly within ±r of their nominal values per episode (domain randomisation). ``info`` carries the true
``temperature``, ``setpoint``, ``power``, ``load``, ``violation`` and, at the last step, ``is_success`` (no violation and
|error| <= ``tolerance`` over the last ``settle_steps`` steps) and ``episode_metrics``: ``iae`` (integrated absolute
error of the true temperature, °C·s), ``violations`` (over-temperature steps) and ``mean_abs_error`` (°C).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from shopfloor.core.errors import ConfigError

OBSERVATION_NAMES = ("setpoint", "temperature", "error", "load", "error_integral", "temperature_rate")
PREVIOUS_ACTION_INDEX = 6  # observation index of the previous applied action (rate limit in the exported graph)
PID_OBSERVATION = {"error": 2, "temperature_rate": 5, "previous_action": PREVIOUS_ACTION_INDEX,
                   "previous_error": -2, "previous_temperature_rate": -1}  # what a velocity-form PID reads
ERROR_SCALE = 20.0  # °C of error that cost 1 per step
MAX_ERROR_COST = 5.0


class ThermalProcessEnv(gym.Env):
    """A heated zone with transport delay, actuator limits, noise, load steps and setpoint changes (module doc)."""

    metadata = {"render_modes": []}
    previous_action_index = PREVIOUS_ACTION_INDEX

    def __init__(self, gain: float = 400.0, time_constant: float = 120.0, delay: float = 20.0,
                 randomize: float = 0.0, dt: float = 2.0, episode_steps: int = 300, ambient: float = 25.0,
                 load_gain: float = 60.0, noise_std: float = 0.5, load_noise_std: float = 0.02,
                 rate_limit: float = 0.1, setpoint_low: float = 120.0, setpoint_high: float = 220.0,
                 setpoint_changes: int = 2, load_changes: int = 2, max_temperature: float = 240.0,
                 trip_temperature: float = 280.0, tolerance: float = 3.0, settle_steps: int = 30,
                 history: int = 16, integral_limit: float = 600.0, integral_band: float = 10.0):
        problems = []
        for name, value in (("gain", gain), ("time_constant", time_constant), ("dt", dt), ("rate_limit", rate_limit),
                            ("tolerance", tolerance)):
            if not value > 0:
                problems.append(f"{name} must be > 0, got {value}")
        if delay < 0:
            problems.append(f"delay must be >= 0 s, got {delay}")
        if not 0 <= randomize < 1:
            problems.append(f"randomize must be in [0, 1) (a relative spread, 0.3 = ±30 %), got {randomize}")
        if episode_steps < settle_steps + 60:
            problems.append(f"episode_steps must be >= settle_steps + 60 = {settle_steps + 60}, got {episode_steps}")
        if not setpoint_low < setpoint_high < max_temperature < trip_temperature:
            problems.append("need setpoint_low < setpoint_high < max_temperature < trip_temperature, got "
                            f"{setpoint_low}, {setpoint_high}, {max_temperature}, {trip_temperature}")
        if setpoint_high - ambient + load_gain > gain * (1 - randomize):
            problems.append(f"the heater cannot hold setpoint_high {setpoint_high} °C at full load: gain "
                            f"{gain}·(1 - randomize) must exceed setpoint_high - ambient + load_gain")
        if history < 2 or noise_std < 0 or load_noise_std < 0:
            problems.append("history must be >= 2 and the noise levels >= 0")
        if problems:
            raise ConfigError("ThermalProcess-v0 settings are invalid:\n  " + "\n  ".join(problems)
                              + "\nFix them in --env-kwargs")
        self.nominal = {"gain": float(gain), "time_constant": float(time_constant), "delay": float(delay)}
        self.randomize, self.dt, self.episode_steps = float(randomize), float(dt), int(episode_steps)
        self.ambient, self.load_gain = float(ambient), float(load_gain)
        self.noise_std, self.load_noise_std, self.rate_limit = float(noise_std), float(load_noise_std), float(rate_limit)
        self.setpoint_low, self.setpoint_high = float(setpoint_low), float(setpoint_high)
        self.setpoint_changes, self.load_changes = int(setpoint_changes), int(load_changes)
        self.max_temperature, self.trip_temperature = float(max_temperature), float(trip_temperature)
        self.tolerance, self.settle_steps, self.history = float(tolerance), int(settle_steps), int(history)
        self.integral_limit, self.integral_band = float(integral_limit), float(integral_band)
        t_low, t_high = ambient - 50.0, trip_temperature + 100.0
        low = np.array([0.0, t_low, -(t_high - t_low), 0.0, -integral_limit, -50.0] + [-1.0] * history
                       + [-(t_high - t_low), -50.0], np.float32)
        high = np.array([t_high, t_high, t_high - t_low, 1.0, integral_limit, 50.0] + [1.0] * history
                        + [t_high - t_low, 50.0], np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.plant = dict(self.nominal)

    @property
    def observation_names(self) -> list[str]:
        """The name of each observation value, in order."""
        return [*OBSERVATION_NAMES, "previous_action", *(f"action_t-{i}" for i in range(2, self.history + 1)),
                "previous_error", "previous_temperature_rate"]

    @property
    def pid_observation(self) -> dict[str, int]:
        """Observation indices (non-negative) of what the velocity-form PID reads (:data:`PID_OBSERVATION`)."""
        size = self.observation_space.shape[0]
        return {name: index % size for name, index in PID_OBSERVATION.items()}

    # ----------------------------------------------------------------- episode
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rng, r = self.np_random, self.randomize
        self.plant = {k: v * (1.0 + (rng.uniform(-r, r) if r else 0.0)) for k, v in self.nominal.items()}
        self._a = math.exp(-self.dt / self.plant["time_constant"])
        self._delay_steps = int(round(self.plant["delay"] / self.dt))
        steps = self.episode_steps
        self.setpoints = np.empty(steps + 1)
        self.loads = np.empty(steps + 1)
        sp = rng.uniform(self.setpoint_low, self.setpoint_high)
        load = rng.uniform(0.0, 0.5)
        self.setpoints[:], self.loads[:] = sp, load
        latest = max(steps - self.settle_steps - 70, 21)
        for k in np.sort(rng.integers(20, latest, self.setpoint_changes)):
            step = rng.uniform(20.0, 60.0) * rng.choice([-1.0, 1.0])
            sp = float(self.setpoints[k] + step)
            if not self.setpoint_low <= sp <= self.setpoint_high:
                sp = float(self.setpoints[k] - step)
            self.setpoints[k:] = min(max(sp, self.setpoint_low), self.setpoint_high)
        for k in np.sort(rng.integers(20, max(steps - self.settle_steps - 40, 21), self.load_changes)):
            self.loads[k:] = rng.uniform(0.0, 1.0)
        self.noise = rng.normal(0.0, self.noise_std, steps + 1) if self.noise_std else np.zeros(steps + 1)
        self.load_noise = rng.normal(0.0, self.load_noise_std, steps + 1) if self.load_noise_std \
            else np.zeros(steps + 1)
        power = (self.setpoints[0] - self.ambient + self.load_gain * self.loads[0]) / self.plant["gain"]
        power = min(max(power, 0.0), 1.0)
        self._y = self.plant["gain"] * power - self.load_gain * self.loads[0]
        self._pipeline = [power] * self._delay_steps  # powers on their way through the delay, oldest first
        self._actions = [2.0 * power - 1.0] * self.history  # applied actions, newest first
        self._k, self._integral, self._rate, self._iae = 0, 0.0, 0.0, 0.0
        self._violations, self._settled = 0, 0
        self._measured = self.temperature + self.noise[0]
        self._previous = (self.setpoints[0] - self._measured, 0.0)  # (error, rate) of the step before: none yet
        return self._observation(), self._info()

    @property
    def temperature(self) -> float:
        """The true zone temperature (°C)."""
        return self.ambient + self._y

    def step(self, action):
        command = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        previous = self._actions[0]
        applied = min(max(command, previous - self.rate_limit), previous + self.rate_limit)
        self._actions = [applied] + self._actions[:-1]
        self._pipeline.append((applied + 1.0) / 2.0)
        power = self._pipeline.pop(0)
        k = self._k
        a = self._a
        self._y = a * self._y + (1.0 - a) * (self.plant["gain"] * power - self.load_gain * self.loads[k])
        self._k = k = k + 1
        temperature = self.temperature
        error = float(self.setpoints[k] - temperature)
        measured = temperature + float(self.noise[k])
        self._previous = (self.setpoints[k - 1] - self._measured, self._rate)
        self._rate = 0.7 * self._rate + 0.3 * (measured - self._measured) / self.dt
        self._measured = measured
        if abs(self.setpoints[k] - measured) < self.integral_band:  # conditional integration (anti-windup)
            self._integral = min(max(self._integral + (self.setpoints[k] - measured) * self.dt,
                                     -self.integral_limit), self.integral_limit)
        self._iae += abs(error) * self.dt
        violation = temperature > self.max_temperature
        self._violations += int(violation)
        reward = -min(abs(error) / ERROR_SCALE, MAX_ERROR_COST) - 0.05 * abs(applied - previous) / self.rate_limit
        if violation:
            reward -= 1.0 + (temperature - self.max_temperature) / 10.0
        terminated = temperature > self.trip_temperature
        if terminated:
            reward -= MAX_ERROR_COST * (self.episode_steps - k)
        truncated = k >= self.episode_steps and not terminated
        self._settled = self._settled + 1 if abs(error) <= self.tolerance else 0
        info = self._info(error=error, violation=violation)
        if terminated or truncated:
            info["is_success"] = bool(not terminated and self._violations == 0 and self._settled >= self.settle_steps)
            info["episode_metrics"] = {"iae": self._iae, "violations": self._violations,
                                       "mean_abs_error": self._iae / (k * self.dt)}
        return self._observation(), float(reward), bool(terminated), bool(truncated), info

    # ----------------------------------------------------------------- parts
    def _observation(self) -> np.ndarray:
        k = self._k
        setpoint = self.setpoints[k]
        load = min(max(self.loads[k] + self.load_noise[k], 0.0), 1.0)
        values = [setpoint, self._measured, setpoint - self._measured, load, self._integral, self._rate,
                  *self._actions, *self._previous]
        obs = np.asarray(values, dtype=np.float32)
        return np.clip(obs, self.observation_space.low, self.observation_space.high)

    def _info(self, error: float | None = None, violation: bool = False) -> dict[str, Any]:
        k = self._k
        return {"temperature": self.temperature, "setpoint": float(self.setpoints[k]),
                "power": float((self._actions[0] + 1.0) / 2.0), "load": float(self.loads[k]),
                "error": float(self.setpoints[k] - self.temperature) if error is None else error,
                "violation": bool(violation)}

    def step_response(self, power_from: float = 0.2, power_to: float = 0.5, steps: int = 400) -> np.ndarray:
        """An open-loop step test on the current plant, noise and load off: the true temperature after the heater
        power steps from ``power_from`` (steady state) to ``power_to`` at time 0 (the data SIMC tuning reads)."""
        a = math.exp(-self.dt / self.plant["time_constant"])
        n = int(round(self.plant["delay"] / self.dt))
        y = self.plant["gain"] * power_from
        out = []
        for k in range(steps):
            power = power_from if k < n else power_to
            y = a * y + (1.0 - a) * self.plant["gain"] * power
            out.append(self.ambient + y)
        return np.asarray(out)


__all__ = ["OBSERVATION_NAMES", "PID_OBSERVATION", "PREVIOUS_ACTION_INDEX", "ThermalProcessEnv"]

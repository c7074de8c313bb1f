"""The thermal baseline: a PID tuned by SIMC from a step test, then optimised on the nominal plant.

:class:`PID` is the discrete velocity-form PID a controls engineer would commission: proportional and integral on the
error, derivative on the filtered measurement (no derivative kick), the increment added to the **applied** previous
power read from the observation, so saturation and the rate limit never wind the integral up (bumpless by
construction). Gains are in the plant's units: ``kc`` in power (0..1) per °C, ``ti`` and ``td`` in seconds.

:func:`simc_from_step_test` fits first order plus dead time to an open-loop step test (Smith's two-point method,
28.3 % and 63.2 % of the rise) and applies Skogestad's SIMC PI rule with ``tau_c = theta``. :func:`tune_pid` starts
there and minimises the mean integrated absolute error (plus a heavy penalty per over-temperature step) over a few
seeded tuning episodes of the nominal plant with Nelder-Mead on the log-gains. The tuning seeds
(:data:`TUNING_SEEDS`) are far from the evaluation seeds, so the baseline is not tuned on the test episodes.

:func:`pid_command` is the same control law as a function of one observation: the environment's temperature rate is
the slope of the PID's filtered measurement (filter 0.3) and the observation carries the previous error and rate,
so the command needs no state (the base of the residual policy, computed the same way in the exported graph).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .envs.thermal import PID_OBSERVATION, PREVIOUS_ACTION_INDEX, ThermalProcessEnv

TUNING_SEEDS = tuple(range(1_000_000, 1_000_008))
VIOLATION_PENALTY = 200.0  # °C·s of IAE one over-temperature step costs in the tuning objective


class PID:
    """Velocity-form PID on :class:`ThermalProcessEnv` observations (see module docstring)."""

    def __init__(self, kc: float, ti: float, td: float = 0.0, dt: float = 2.0, derivative_filter: float = 0.3):
        self.kc, self.ti, self.td, self.dt = float(kc), float(ti), float(td), float(dt)
        self.alpha = float(derivative_filter)  # share of the new measurement in the filtered one
        self.reset()

    def reset(self) -> None:
        """Forget the previous error and measurement (call at the start of each episode)."""
        self._error: float | None = None
        self._filtered: float | None = None
        self._derivative = 0.0

    def act(self, observation: np.ndarray) -> np.ndarray:
        """The next heater command (-1..1) for one observation."""
        error, measured = float(observation[2]), float(observation[1])
        previous_power = (float(observation[PREVIOUS_ACTION_INDEX]) + 1.0) / 2.0
        if self._error is None:
            self._error, self._filtered = error, measured
        filtered = self._filtered + self.alpha * (measured - self._filtered)
        derivative = -self.kc * self.td * (filtered - self._filtered) / self.dt
        increment = self.kc * (error - self._error) + self.kc * self.dt / self.ti * error \
            + derivative - self._derivative
        self._error, self._filtered, self._derivative = error, filtered, derivative
        power = min(max(previous_power + increment, 0.0), 1.0)
        return np.array([2.0 * power - 1.0], dtype=np.float32)

    def gains(self) -> dict[str, float]:
        return {"kc": self.kc, "ti": self.ti, "td": self.td}


def velocity_pid(at: dict[str, Any], kc: Any, ti: Any, td: Any, dt: Any) -> Any:
    """The control law of :meth:`PID.act` (default derivative filter) on the observation's columns ``at`` (by the
    names of :data:`PID_OBSERVATION`; numpy arrays or torch tensors, so the exported graph computes the same): the
    previous power plus ``kc·Δerror + kc·dt/ti·error - kc·td·Δrate``, clipped to 0..1, as a -1..1 command."""
    increment = kc * (at["error"] - at["previous_error"]) + kc * dt / ti * at["error"] \
        - kc * td * (at["temperature_rate"] - at["previous_temperature_rate"])
    power = ((at["previous_action"] + 1.0) / 2.0 + increment).clip(0.0, 1.0)
    return 2.0 * power - 1.0


def pid_command(observations: np.ndarray, kc: float, ti: float, td: float, dt: float,
                indices: dict[str, int] | None = None) -> np.ndarray:
    """:func:`velocity_pid` for observation rows ``(n, size)`` -> commands ``(n, 1)``."""
    obs = np.asarray(observations, dtype=np.float64)
    return velocity_pid({name: obs[:, i:i + 1] for name, i in (indices or PID_OBSERVATION).items()}, kc, ti, td, dt)


def dead_zone(step: Any, width: float) -> Any:
    """Residual actions within ``±width`` are 0, the rest rescaled to reach ±1 (numpy arrays or torch tensors): the
    small output bias of an actor near steady state must not reach the plant, where the velocity-form PID would
    integrate it into an offset."""
    if not width:
        return step
    excess = abs(step) - width
    return (excess * (excess > 0)) * ((step > 0) * 1.0 - (step < 0) * 1.0) / (1.0 - width)


def residual_command(observations: np.ndarray, actions: np.ndarray, residual: dict[str, Any], low: np.ndarray,
                     high: np.ndarray) -> np.ndarray:
    """Residual mode: the PID's command plus ``scale`` x the (dead-zoned) agent action in [-1, 1], within bounds."""
    obs = np.asarray(observations, dtype=np.float64).reshape(len(observations), -1)
    base = pid_command(obs, residual["kc"], residual["ti"], residual["td"], residual["dt"], residual["indices"])
    step = dead_zone(np.clip(np.asarray(actions, np.float64).reshape(len(obs), -1), -1.0, 1.0),
                     residual.get("dead_zone", 0.0))
    return np.clip(base + residual["scale"] * step, low, high)


def fopdt_from_step(times: np.ndarray, response: np.ndarray, power_step: float) -> dict[str, float]:
    """Gain (°C per unit power), time constant and dead time (s) of a step response (Smith's two-point method)."""
    rise = response - response[0]
    total = rise[-1]
    if not abs(total) > 0:
        raise ValueError("the step test did not move the temperature")
    t28 = float(np.interp(0.283 * total, rise, times))
    t63 = float(np.interp(0.632 * total, rise, times))
    tau = 1.5 * (t63 - t28)
    return {"gain": float(total / power_step), "time_constant": tau, "delay": max(t63 - tau, 0.0)}


def simc_from_step_test(env: ThermalProcessEnv) -> dict[str, Any]:
    """Step test on ``env``'s current plant -> FOPDT model -> SIMC PI gains (``tau_c = theta``)."""
    power_from, power_to = 0.2, 0.5
    response = env.step_response(power_from, power_to)
    times = env.dt * (np.arange(len(response)) + 1.0)
    model = fopdt_from_step(times, response, power_to - power_from)
    theta = max(model["delay"], env.dt / 2.0)
    tau_c = theta
    kc = model["time_constant"] / (model["gain"] * (tau_c + theta))
    ti = min(model["time_constant"], 4.0 * (tau_c + theta))
    return {"model": model, "kc": kc, "ti": ti, "td": 0.0}


def run_episode(env: ThermalProcessEnv, controller: PID, seed: int) -> dict[str, float]:
    """One seeded episode under ``controller``: IAE (°C·s), violations, success, return."""
    observation, _ = env.reset(seed=seed)
    controller.reset()
    total = 0.0
    while True:
        observation, reward, terminated, truncated, info = env.step(controller.act(observation))
        total += reward
        if terminated or truncated:
            return {**info["episode_metrics"], "success": info["is_success"], "return": total}


def tune_pid(env_kwargs: dict[str, Any] | None = None, seeds: tuple[int, ...] = TUNING_SEEDS,
             max_evaluations: int = 120) -> dict[str, Any]:
    """SIMC start, then Nelder-Mead on log(kc, ti, td) over ``seeds`` of the nominal plant (randomisation off).

    Returns the gains, the SIMC gains and FOPDT fit, and the tuning objective before and after."""
    from scipy.optimize import minimize

    kwargs = {**(env_kwargs or {}), "randomize": 0.0}
    env = ThermalProcessEnv(**kwargs)
    env.reset(seed=seeds[0])
    simc = simc_from_step_test(env)

    def objective(log_gains: np.ndarray) -> float:
        kc, ti, td = (math.exp(float(v)) for v in log_gains)
        controller = PID(kc, ti, td, env.dt)
        runs = [run_episode(env, controller, s) for s in seeds]
        return float(np.mean([r["iae"] + VIOLATION_PENALTY * r["violations"] for r in runs]))

    start = np.log([simc["kc"], simc["ti"], env.dt])  # a small derivative time to start from
    simc_score = objective(np.log([simc["kc"], simc["ti"], 1e-9]))
    result = minimize(objective, start, method="Nelder-Mead",
                      options={"maxfev": max_evaluations, "xatol": 0.02, "fatol": 1.0})
    kc, ti, td = (math.exp(float(v)) for v in result.x)
    best = {"kc": kc, "ti": ti, "td": td}
    if simc_score <= result.fun:  # the optimiser never makes the commissioned controller worse
        best, score = {"kc": simc["kc"], "ti": simc["ti"], "td": 0.0}, simc_score
    else:
        score = float(result.fun)
    return {**best, "dt": env.dt, "simc": {k: simc[k] for k in ("kc", "ti", "td")}, "fopdt": simc["model"],
            "objective_simc": simc_score, "objective_tuned": score, "tuning_seeds": list(seeds),
            "evaluations": int(result.nfev)}


__all__ = ["PID", "dead_zone", "fopdt_from_step", "pid_command", "residual_command", "run_episode",
           "simc_from_step_test", "tune_pid",
           "velocity_pid"]

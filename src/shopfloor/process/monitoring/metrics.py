"""Fault detection metrics over runs: detection rate, false-alarm rate, detection delay.

- detection rate of a fault: the share of its samples (after the onset) that raise an alarm;
- false-alarm rate: the share of normal samples (normal runs, and faulty runs before their onset) that do;
- detection delay of a run: samples from the onset to the first of ``k`` consecutive alarms (``None``: never).
Faults named ``unobservable`` (TEP 3, 9, 15) are reported on their own and left out of the means.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..records import NORMAL


def detection_delay(alarms: np.ndarray, onset: int, k: int) -> int | None:
    """Samples after ``onset`` until the first run of ``k`` consecutive alarms starts (None: never)."""
    after = np.asarray(alarms[onset:], dtype=bool).astype(int)
    if len(after) < k:
        return None
    runs = np.convolve(after, np.ones(k, dtype=int), mode="valid")
    hits = np.flatnonzero(runs == k)
    return int(hits[0]) if len(hits) else None


def detection_metrics(runs: Sequence[tuple[np.ndarray, np.ndarray]], k: int,
                      unobservable: Sequence[str] = ()) -> dict[str, Any]:
    """Metrics of one detector over ``runs`` of (labels, alarms), the rows each run has scored.

    Returns ``false_alarm_rate``, ``n_normal``, ``per_fault`` {fault: detection_rate, delay (mean over the runs
    that detect it), missed_runs, n_samples}, ``mean_detection_rate`` and ``mean_delay`` over the observable
    faults, and ``unobservable`` (the same per-fault figures for those faults, not in the means)."""
    normal_alarms, per_fault = [], {}
    for labels, alarms in runs:
        labels, alarms = np.asarray(labels), np.asarray(alarms, dtype=bool)
        normal = labels == NORMAL
        normal_alarms.append(alarms[normal])
        faulty = np.flatnonzero(~normal)
        if not len(faulty):
            continue
        fault = str(labels[faulty[0]])
        entry = per_fault.setdefault(fault, {"hits": 0, "n": 0, "delays": [], "missed": 0})
        entry["hits"] += int(alarms[faulty].sum())
        entry["n"] += len(faulty)
        delay = detection_delay(alarms, int(faulty[0]), k)
        if delay is None:
            entry["missed"] += 1
        else:
            entry["delays"].append(delay)
    normal_all = np.concatenate(normal_alarms) if normal_alarms else np.zeros(0, dtype=bool)
    table = {fault: {"detection_rate": e["hits"] / e["n"] if e["n"] else None,
                     "delay": float(np.mean(e["delays"])) if e["delays"] else None,
                     "missed_runs": e["missed"], "n_samples": e["n"]}
             for fault, e in sorted(per_fault.items())}
    observable = {f: v for f, v in table.items() if f not in set(unobservable)}
    rates = [v["detection_rate"] for v in observable.values()]
    delays = [v["delay"] for v in observable.values() if v["delay"] is not None]
    return {
        "false_alarm_rate": float(normal_all.mean()) if len(normal_all) else None,
        "n_normal": int(len(normal_all)),
        "mean_detection_rate": float(np.mean(rates)) if rates else None,
        "mean_delay": float(np.mean(delays)) if delays else None,
        "n_faults": len(observable),
        "per_fault": observable,
        "unobservable": {f: v for f, v in table.items() if f in set(unobservable)},
        "consecutive_alarms": k,
    }


__all__ = ["detection_delay", "detection_metrics"]

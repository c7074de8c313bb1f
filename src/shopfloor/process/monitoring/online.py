"""Point-by-point scoring with the window kept as state (one deque of samples per run)."""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping, Sequence

import numpy as np

from shopfloor.core.errors import DataError


class OnlineMonitor:
    """Feed one sample at a time (:meth:`update`); each returns the row ``predict`` gives for the latest sample of
    the run's history so far, while only the last ``window`` samples of each run are kept."""

    def __init__(self, task: Any):
        self.task = task
        self.window = task.config.window
        self.variables = task.variables
        self._runs: dict[str, deque] = {}
        self._seen: dict[str, int] = {}

    def update(self, sample: Mapping[str, float] | Sequence[float], run: str = "run_1",
               time: float | None = None, explain: bool = False) -> dict[str, Any]:
        """Score ``sample`` (a mapping with every variable, or the values in the model's order) as run ``run``'s
        next sample; ``time`` defaults to the sample count."""
        if isinstance(sample, Mapping):
            missing = [v for v in self.variables if v not in sample]
            if missing:
                raise DataError(f"sample lacks variable(s) {missing[:10]}; this model reads {self.variables}")
            values = np.array([sample[v] for v in self.variables], dtype=np.float32)
        else:
            values = np.asarray(sample, dtype=np.float32).reshape(-1)
            if len(values) != len(self.variables):
                raise DataError(f"got {len(values)} values, this model reads {len(self.variables)} "
                                f"({', '.join(self.variables[:10])} ...)")
        if not np.isfinite(values).all():
            raise DataError("sample holds NaN or infinite values; skip it or fill it before scoring")
        history = self._runs.setdefault(run, deque(maxlen=self.window))
        history.append(values)
        self._seen[run] = self._seen.get(run, 0) + 1
        rows = np.stack(list(history))
        window = np.concatenate([np.repeat(rows[:1], self.window - len(rows), axis=0), rows])[None]
        outputs = self.task.run_windows(window.astype(np.float32))
        stamp = float(self._seen[run] if time is None else time)
        from shopfloor.core.task import to_jsonable

        return to_jsonable(self.task._row("stream", run, stamp, outputs, 0, len(rows) < self.window, explain))

    def reset(self, run: str | None = None) -> None:
        """Forget one run's state (or every run's)."""
        for key in [run] if run is not None else list(self._runs):
            self._runs.pop(key, None)
            self._seen.pop(key, None)


__all__ = ["OnlineMonitor"]

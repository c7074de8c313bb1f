"""`shopfloor demo`: every registered task's ``demo`` on built-in synthetic data, one after the other."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console

from shopfloor.core.errors import ConfigError
from shopfloor.core.registry import get_task, task_names


def run_demo(out: str | Path = "demo_out", only: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the demos and return their summaries (each has ``task``, key figures and ``report``)."""
    console = Console(stderr=True)
    out = Path(out)
    names = list(only) if only else task_names()
    unknown = sorted(set(names) - set(task_names()))
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; choose from {task_names()}")
    summaries = []
    for name in names:
        console.rule(f"[bold]demo: {name}")
        start = time.perf_counter()
        summary = get_task(name).demo(out / name)
        summary["seconds"] = round(time.perf_counter() - start, 1)
        console.print(f"{name}: done in {summary['seconds']} s; report at {summary.get('report')}")
        summaries.append(summary)
    return summaries

"""`shopfloor demo`: every registered task's ``demo`` on built-in synthetic data, one after the other, then the
same models on a simulated line: served over HTTP, fed the demo's images and sensor data, every decision
recorded."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console

from shopfloor.core.errors import ConfigError
from shopfloor.core.registry import get_task, task_names


def run_demo(out: str | Path = "demo_out", only: Sequence[str] | None = None,
             line: bool = True) -> list[dict[str, Any]]:
    """Run the demos and return their summaries (each has ``task``, key figures and ``report``); with ``line``,
    also serve the trained models and send them the demos' sample inputs (:func:`run_line`)."""
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
        console.print(f"{name}: done in {summary['seconds']} s; report at {summary.get('report')}", markup=False)
        if summary.get("comparison"):  # e.g. control: the trained policy beside the classical controller
            console.print(f"{name}: {summary['comparison']}", markup=False)
        summaries.append(summary)
    if line:
        console.rule("[bold]demo: on the line (HTTP server + records)")
        start = time.perf_counter()
        line_summary = run_line(summaries, out / "line", console)
        line_summary["seconds"] = round(time.perf_counter() - start, 1)
        summaries.append(line_summary)
    return summaries


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_line(summaries: Sequence[dict[str, Any]], out: Path, console: Console) -> dict[str, Any]:
    """Serve the demos' models on loopback (SQLite records), post each demo's sample inputs over HTTP as a line
    would, print the dashboard URL and a records summary, and stop the server."""
    import httpx
    import uvicorn

    from shopfloor.plant.records import RecordStore
    from shopfloor.plant.server import ServerSettings, create_app

    served = [s for s in summaries if s.get("model") and s.get("sample_inputs")]
    out.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{out / 'records.db'}"
    settings = ServerSettings(model_dirs=[Path(s["model"]) for s in served], model_names=[s["task"] for s in served],
                              db=db, device="cpu", inputs_dir=out / "inputs")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="demo-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    sent = failed = 0
    try:
        for _ in range(600):
            if server.started or not thread.is_alive():
                break
            time.sleep(0.1)
        if not server.started:
            raise ConfigError("the demo server did not start; run `shopfloor serve` on the demo models to see why")
        with httpx.Client(base_url=url, timeout=120) as client:
            for summary in served:
                for path in summary["sample_inputs"]:
                    with open(path, "rb") as fh:
                        r = client.post(f"/v1/models/{summary['task']}/predict",
                                        params={"source": f"demo-line/{summary['task']}"},
                                        files={"file": (Path(path).name, fh.read())})
                    sent += 1
                    if r.status_code != 200:
                        failed += 1
                        console.print(f"{summary['task']}: {r.status_code} {r.json().get('detail')}", markup=False)
        console.print(f"dashboard: {url}/  (records: {url}/v1/records, API docs: {url}/docs; stopped after the demo,"
                      f" start it again with `shopfloor serve` on the models)", markup=False)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    with RecordStore(db) as store:
        rows = store.summary()
    for row in rows:
        mean = f", mean score {row['mean_score']:.3f}" if row.get("mean_score") is not None else ""
        console.print(f"  {row['model']} from {row['source']}: {row['count']} x {row['label']}{mean}", markup=False)
    return {"task": "line (serve + records)", "requests": sent, "failed_requests": failed,
            "records": sum(r["count"] for r in rows), "report": f"{db} (shopfloor records export --db {db} ...)"}

"""The live dashboard at ``/`` of the model server: recent records, counts and rates per model and source, the
latest inspected images with their heatmaps, RUL per unit and alarms, served entirely by the package (plain HTML,
CSS and JavaScript in ``plant/static``: no CDN, no fonts, no build step), so it works on a plant network offline.

:func:`mount_dashboard` adds to the app that ``create_app`` builds:

- ``GET /`` and ``GET /static/{name}``: the page and its two assets (a fixed list; open, like ``/healthz``: they
  hold no data). The page sends the API key, when the server has keys, as ``Authorization: Bearer``; it takes it
  from ``/?key=...`` once (then removes it from the address bar) or from a form, and keeps it in sessionStorage.
- ``GET /v1/events``: Server-Sent Events, one ``record`` event per record committed after ``after_id`` (or the
  ``Last-Event-ID`` header; by default from now). The stream polls the record store for ids above its cursor
  every :data:`POLL_S` seconds, so it sees the records of every server worker, MQTT worker or other process that
  writes to the same database. Ids that a later id overtook (PostgreSQL commits out of id order) are looked for
  again for :data:`HOLE_TTL_S` seconds. A stream ends after :data:`STREAM_MAX_S` seconds (the page reconnects at
  once with its cursor, nothing is lost), so a dashboard left open never holds up a server shutdown for long. Not
  in the OpenAPI schema: a never-ending response would hang generated clients and fuzzers.
- ``GET /v1/dashboard/stats``: the served models, record totals per model/source/label (``RecordStore.summary``),
  and records per time bucket per (model, source) over a recent window.
- ``GET /v1/records/{record_id}/files/{kind}``: the input or heatmap file the store kept for that record (with
  ``--inputs-dir``). Only files referenced by a record, looked up by record id and checked to lie inside the
  store's ``inputs_dir``: no path ever comes from the request.

The data endpoints take the same API-key dependency as the rest of the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from .records import RecordStore, RecordStoreUnavailable

__all__ = ["ALARM_LABELS", "EventCursor", "mount_dashboard"]

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often an event stream looks for new records
HEARTBEAT_S = 15.0  # an SSE comment at least this often, so proxies keep the connection open
STREAM_MAX_S = 20.0  # a stream then ends; the page reconnects with its cursor
PAGE = 500  # records read per query while catching up
MAX_BACKLOG = 2000  # records sent at most per poll; more are skipped with a `gap` event
HOLE_TTL_S = 10.0  # how long an id that a later id overtook is looked for
MAX_HOLES = 512
MAX_SCAN = 10_000  # records read at most to draw the rate chart (the window is then marked partial)
MAX_BUCKETS = 500
MAX_ID = 2**63 - 1
ALARM_LABELS = ("anomalous", "failure")  # also: result.out_of_range true (the page applies the same rule)

ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
                (b"GIF89a", "image/gif"), (b"BM", "image/bmp"))


def _read_asset(name: str) -> bytes | None:
    try:
        return resources.files("shopfloor.plant").joinpath("static", name).read_bytes()
    except (FileNotFoundError, OSError):
        return None


def _media_type(head: bytes) -> str:
    for magic, media in _IMAGE_MAGIC:
        if head.startswith(magic):
            return media
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


class EventCursor:
    """Where one event stream stands: the highest record id it sent, and the ids below it not seen yet."""

    def __init__(self, last_id: int) -> None:
        self.last_id = last_id
        self.holes: dict[int, float] = {}  # id -> when it was first missed (time.monotonic)

    def poll(self, store: RecordStore) -> tuple[list[dict], dict | None]:
        """Records committed since the last poll, oldest first, and a ``gap`` note when some had to be skipped."""
        found = self._late(store) if self.holes else []
        newest = store.query(limit=1)
        top = newest[0]["id"] if newest else 0
        gap = None
        if top > self.last_id:
            fresh: list[dict] = []
            before = None
            while len(fresh) < MAX_BACKLOG:
                want = min(PAGE, (before or top + 1) - self.last_id - 1)
                if want < 1:
                    break
                page = store.query(limit=want, before_id=before)
                fresh.extend(r for r in page if r["id"] > self.last_id)
                if len(page) < want or page[-1]["id"] <= self.last_id + 1:
                    break
                before = page[-1]["id"]
            else:
                oldest = min(r["id"] for r in fresh)
                gap = {"after_id": self.last_id, "before_id": oldest,
                       "detail": f"more than {MAX_BACKLOG} records arrived at once; the live view skipped the "
                                 f"records with ids {self.last_id + 1}..{oldest - 1} (the counts resync shortly)"}
                self.last_id = oldest - 1
            ids = {r["id"] for r in fresh}
            now = time.monotonic()
            high = max(ids, default=self.last_id)
            for missing in range(max(self.last_id + 1, high - MAX_HOLES), high):
                if missing not in ids:
                    self.holes[missing] = now
            self.last_id = max(self.last_id, high)
            found.extend(fresh)
        if len(self.holes) > MAX_HOLES:
            for stale in sorted(self.holes)[:len(self.holes) - MAX_HOLES]:
                del self.holes[stale]
        found.sort(key=lambda r: r["id"])
        return found, gap

    def _late(self, store: RecordStore) -> list[dict]:
        now = time.monotonic()
        for hole, since in list(self.holes.items()):
            if now - since > HOLE_TTL_S:
                del self.holes[hole]  # rolled back (or an id the database skipped): it will never come
        if not self.holes:
            return []
        low, high = min(self.holes), max(self.holes)
        page = store.query(limit=min(high - low + 1, PAGE), before_id=high + 1)
        late = [r for r in page if r["id"] in self.holes]
        for r in late:
            del self.holes[r["id"]]
        return late


def _sse(event: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'), allow_nan=False)}\n\n"


def _bucket_series(rows: Iterator[dict], start: float, bucket_s: int, n: int) -> dict[tuple, list[int]]:
    series: dict[tuple, list[int]] = {}
    for r in rows:
        t = datetime.fromisoformat(r["created"]).timestamp()
        i = int((t - start) // bucket_s)
        if 0 <= i < n:
            series.setdefault((r["model"], r["source"]), [0] * n)[i] += 1
    return series


def mount_dashboard(app: FastAPI, store: Callable[[], RecordStore], served: Mapping[str, Any],
                    authorised: Callable[..., None]) -> None:
    """Add the dashboard page and its data endpoints to ``app``.

    ``store`` returns the app's open record store (it opens in the lifespan), ``served`` maps model names to the
    served models (``.task.name``, ``.task.input_kind``), ``authorised`` is the app's API-key dependency.
    """
    assets = {name: _read_asset(name) for name in [*ASSETS, "index.html"]}
    missing = sorted(name for name, data in assets.items() if data is None)
    if missing:
        log.warning("dashboard assets %s are missing from this installation (reinstall shopfloor)", missing)

    def asset(name: str, media_type: str) -> Response:
        data = assets.get(name)
        if data is None:
            raise HTTPException(503, f"the dashboard file {name} is missing from this shopfloor installation: "
                                "reinstall shopfloor (pip install --force-reinstall shopfloor)")
        return Response(data, media_type=media_type, headers={
            "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
            "Referrer-Policy": "no-referrer"})

    @app.get("/", include_in_schema=False)
    def dashboard_page() -> Response:
        return asset("index.html", "text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    def dashboard_asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, f"no dashboard file {name!r}; there are {', '.join(sorted(ASSETS))}")
        return asset(name, ASSETS[name])

    @app.get("/v1/events", include_in_schema=False, dependencies=[Depends(authorised)])
    async def events(request: Request, after_id: int | None = Query(None, ge=0, le=MAX_ID)):
        """Server-Sent Events: ``record`` (a record, as ``/v1/records`` gives it; the event id is the stream's
        cursor), ``hello`` (the cursor it starts from), ``gap`` (records skipped), ``problem`` (the store does not
        answer; the stream retries)."""
        if after_id is None:
            header = request.headers.get("last-event-id", "").strip()
            if header:
                if not header.isdigit() or int(header) > MAX_ID:
                    raise HTTPException(422, f"Last-Event-ID {header[:40]!r} is not a record id")
                after_id = int(header)
        if after_id is None:
            newest = await run_in_threadpool(store().query, limit=1)
            after_id = newest[0]["id"] if newest else 0
        cursor = EventCursor(after_id)

        async def stream():
            started = last_sent = time.monotonic()
            yield "retry: 2000\n" + _sse("hello", {"last_id": cursor.last_id, "poll_s": POLL_S,
                                                   "stream_max_s": STREAM_MAX_S}, cursor.last_id)
            while time.monotonic() - started < STREAM_MAX_S:
                if await request.is_disconnected():
                    return
                try:
                    records, gap = await run_in_threadpool(cursor.poll, store())
                except RecordStoreUnavailable as e:
                    yield _sse("problem", {"title": "Record store unavailable", "detail": str(e)})
                    last_sent = time.monotonic()
                    await asyncio.sleep(2.0)
                    continue
                if gap is not None:
                    yield _sse("gap", gap)
                for record in records:
                    yield _sse("record", record, cursor.last_id)
                if records or gap:
                    last_sent = time.monotonic()
                elif time.monotonic() - last_sent > HEARTBEAT_S:
                    yield ": keep-alive\n\n"
                    last_sent = time.monotonic()
                await asyncio.sleep(POLL_S)
            yield _sse("bye", {"last_id": cursor.last_id, "detail": "reconnect with after_id"}, cursor.last_id)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={
            "Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no", "Connection": "keep-alive"})

    @app.get("/v1/dashboard/stats", tags=["dashboard"], dependencies=[Depends(authorised)])
    def dashboard_stats(window_s: int = Query(900, ge=60, le=7 * 86400),
                        bucket_s: int = Query(30, ge=1, le=86400)) -> dict[str, Any]:
        """The served models, record totals per model/source/label, and records per ``bucket_s`` seconds per
        (model, source) over the last ``window_s`` seconds (``partial`` when the window held more records than
        the chart reads; ``counted_from`` then says where the counted part starts)."""
        n = math.ceil(window_s / bucket_s)
        if n > MAX_BUCKETS:
            raise HTTPException(422, f"window_s/bucket_s gives {n} buckets; at most {MAX_BUCKETS}: widen bucket_s")
        s = store()
        newest = s.query(limit=1)
        last_id = newest[0]["id"] if newest else 0
        now = time.time()
        start = (math.floor(now / bucket_s) + 1 - n) * bucket_s  # the last bucket holds now
        since = datetime.fromtimestamp(start, tz=timezone.utc)
        rows: list[dict] = []
        partial, before = False, last_id + 1
        while before > 1:
            page = s.query(since=since, limit=1000, before_id=before)
            rows.extend(page)
            if len(page) < 1000:
                break
            before = page[-1]["id"]
            if len(rows) >= MAX_SCAN:
                partial = True
                break
        series = _bucket_series(iter(rows), start, bucket_s, n)
        models = [{"name": name, "task": getattr(m.task, "name", None),
                   "input_kind": getattr(m.task, "input_kind", None)} for name, m in served.items()]
        return {"now": now, "last_id": last_id, "window_s": window_s, "bucket_s": bucket_s, "start": start,
                "buckets": n, "partial": partial, "counted_from": rows[-1]["created"] if partial else None,
                "models": models, "alarm_labels": list(ALARM_LABELS), "totals": s.summary(),
                "series": [{"model": model, "source": source, "counts": counts}
                           for (model, source), counts in sorted(series.items(), key=lambda kv: (kv[0][0],
                                                                                                 kv[0][1] or ""))]}

    @app.get("/v1/records/{record_id}/files/{kind}", tags=["records"], dependencies=[Depends(authorised)],
             responses={200: {"content": {"image/png": {}, "application/octet-stream": {}}}})
    def record_file(kind: Literal["input", "heatmap"], record_id: int = PathParam(..., ge=1, le=MAX_ID)) -> Response:
        """The input or heatmap file kept for a record (the server keeps them with ``--inputs-dir``)."""
        s = store()
        record = s.get(record_id)
        if record is None:
            raise HTTPException(404, f"no record {record_id}")
        stored = record.get(f"{kind}_file")
        root = s.inputs_dir
        if not stored or root is None:
            raise HTTPException(404, f"record {record_id} has no stored {kind}: the server keeps inputs and "
                                "heatmaps only with --inputs-dir (and --keep-inputs may have removed it)")
        path = Path(stored).resolve()
        if not path.is_relative_to(root):
            log.warning("record %d references %s outside the inputs folder %s; not served", record_id, path, root)
            raise HTTPException(404, f"record {record_id}'s {kind} file is not in the inputs folder; not served")
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise HTTPException(404, f"record {record_id}'s {kind} file is no longer on disk (removed by "
                                "--keep-inputs or by hand)") from None
        media = _media_type(data[:16])
        disposition = "inline" if media.startswith("image/") else "attachment"
        return Response(data, media_type=media, headers={
            "X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=86400",
            "Content-Disposition": f'{disposition}; filename="record-{record_id}-{kind}"',
            "Content-Security-Policy": "default-src 'none'; sandbox"})

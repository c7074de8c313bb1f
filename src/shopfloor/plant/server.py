"""The model server behind ``shopfloor serve``: every task through one generic predict endpoint, every decision
recorded.

- ``POST /v1/models/{name}/predict``: the task's natural input, by the kind it declares (``Task.input_kind``):
  multipart upload(s) or a raw body (image, CSV, .npy, .wav...), or JSON rows / a JSON array. The response is
  what ``predict`` returns, each row with its ``record_id``, plus the model's artifact hash. ``?explain=true``
  adds the explanation (PNG as a data URI, attributions as JSON).
- ``POST /v1/models/{name}/recommend``: recommended settings from a model whose task recommends
  (process-optimisation), JSON body as :class:`RecommendRequest`.
- ``GET /v1/models``, ``GET /v1/records``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics`` (Prometheus),
  OpenAPI at ``/docs``.
- Concurrent requests to one model are gathered into micro-batches (:class:`MicroBatcher`) when the task gives
  one result row per input; others run one request at a time per model.
- Errors are ``application/problem+json`` with a message that says what to fix, never a stack trace.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from shopfloor.core.errors import ArtifactError, ConfigError, DataError, ShopfloorError
from shopfloor.core.registry import load
from shopfloor.core.task import Task, to_jsonable

from .inputs import from_json, input_files, kind_help, parse_json
from .records import RecordStore, RecordStoreUnavailable, label_and_score

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"


# ----------------------------------------------------------------- settings and models
class ServerSettings(BaseModel):
    """How the server runs; validated once at start."""

    model_dirs: list[Path]
    model_names: list[str] = Field(default_factory=list, description="name of each model (default: its folder name)")
    db: str = "sqlite:///shopfloor.db"
    api_key_hashes: list[str] = Field(default_factory=list, description="SHA-256 hex of each accepted API key")
    max_upload_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    max_batch: int = Field(16, ge=1)
    max_wait_ms: float = Field(5.0, ge=0)
    runners: int = Field(2, ge=1, le=8, description="batches of one model in flight at once")
    device: str = "auto"
    precision: str = Field("auto", description="auto | fp32 | int8 (auto: int8 where it passed its accuracy gate)")
    inputs_dir: Path | None = None
    keep_inputs: int | None = None


def hash_key(key: str) -> str:
    """What is stored of an API key: its SHA-256."""
    return hashlib.sha256(key.strip().encode()).hexdigest()


def read_api_key_file(path: str | Path) -> list[str]:
    """API keys from a file, one per line: a key in clear (hashed at once, never kept) or ``sha256:<hex>``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--api-key-file {path} does not exist")
    hashes = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("sha256:"):
            digest = line.removeprefix("sha256:").lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError(f"{path}: 'sha256:' must be followed by 64 hex digits")
            hashes.append(digest)
        elif len(line) < 16:
            raise ConfigError(f"{path}: an API key must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        else:
            hashes.append(hash_key(line))
    if not hashes:
        raise ConfigError(f"--api-key-file {path} holds no key")
    return hashes


@dataclass
class ServedModel:
    """One loaded model and its batcher."""

    name: str
    path: Path
    task: Task
    artifact_hash: str
    batcher: "MicroBatcher"

    def describe(self) -> dict[str, Any]:
        manifest = self.task._artifact.manifest if self.task._artifact else {}
        state = manifest.get("state", {})
        return to_jsonable({
            "name": self.name, "task": self.task.name, "artifact_hash": self.artifact_hash,
            "input_kind": self.task.input_kind, "input_suffixes": list(self.task.input_suffixes),
            "accepts": kind_help(self.task), "classes": state.get("classes"), "input": state.get("input"),
            "metrics": manifest.get("metrics", {}), "warnings": state.get("warnings", []),
        })


# ----------------------------------------------------------------- micro-batching
@dataclass
class _Job:
    inputs: list[Any]
    explain: bool
    out_dir: Path | None
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """Gathers concurrent requests to one model into one ``predict`` call (at most ``max_batch`` inputs, waiting at
    most ``max_wait_ms`` for company), so HTTP throughput stays close to in-process throughput.

    Only for tasks that give exactly one row per input (images, signals): their rows are split back by position.
    Other tasks (tables: one row per record) are never merged: each request is its own model call.

    ``runners`` batches may be in flight at once (ONNX Runtime sessions are thread-safe): while one batch is in
    its serial steps (upsampling maps, building rows) the next is already being scored, so the cores do not idle
    between batches.
    """

    def __init__(self, task: Task, max_batch: int, max_wait_ms: float, on_batch: Any = None, runners: int = 1):
        self.task = task
        self.on_batch = on_batch  # called with the number of inputs of every model call
        self.largest_batch = 0
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.merge = task.input_kind in ("image", "signal")
        self.queue: queue.Queue[_Job | None] = queue.Queue()
        self.threads = [threading.Thread(target=self._run, name=f"batcher-{task.name}-{i}", daemon=True)
                        for i in range(max(1, runners))]
        for thread in self.threads:
            thread.start()

    def submit(self, inputs: list[Any], explain: bool = False, out_dir: Path | None = None) -> list[dict[str, Any]]:
        """Predict ``inputs`` (possibly together with other requests); raises what ``predict`` raises."""
        job = _Job(inputs, explain, out_dir)
        self.queue.put(job)
        return job.future.result()

    def depth(self) -> int:
        return self.queue.qsize()

    def close(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join(timeout=5)

    def _gather(self, first: _Job) -> list[_Job]:
        jobs, size = [first], len(first.inputs)
        if not self.merge or first.explain:
            return jobs
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self.queue.get(timeout=max(remaining, 0)) if remaining > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if job is None or job.explain or size + len(job.inputs) > self.max_batch:
                self.queue.put(job)  # handled on its own next round (or stops the loop)
                break
            jobs.append(job)
            size += len(job.inputs)
        return jobs

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            jobs = self._gather(first)
            try:
                inputs = [x for job in jobs for x in job.inputs]
                self.largest_batch = max(self.largest_batch, len(inputs))
                if self.on_batch is not None:
                    self.on_batch(len(inputs))
                rows = self.task.predict(inputs, out_dir=first.out_dir, explain=first.explain)
                if len(jobs) > 1 and len(rows) != len(inputs):
                    raise RuntimeError(f"{self.task.name} returned {len(rows)} rows for {len(inputs)} inputs")
                start = 0
                for job in jobs:
                    n = len(job.inputs) if len(jobs) > 1 else len(rows)
                    job.future.set_result(rows[start:start + n])
                    start += n
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting requests
                if len(jobs) > 1 and isinstance(exc, DataError):
                    for job in jobs:  # one request's bad input must not fail its neighbours: retry alone
                        self._alone(job)
                else:
                    for job in jobs:
                        job.future.set_exception(exc)

    def _alone(self, job: _Job) -> None:
        try:
            job.future.set_result(self.task.predict(job.inputs, out_dir=job.out_dir, explain=job.explain))
        except BaseException as exc:  # noqa: BLE001
            job.future.set_exception(exc)


# ----------------------------------------------------------------- metrics
class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps in one process do not collide)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("shopfloor_requests_total", "HTTP requests", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("shopfloor_predict_seconds", "predict request latency", ["model"],
                                 registry=self.registry)
        self.predictions = Counter("shopfloor_predictions_total", "predictions by label", ["model", "label"],
                                   registry=self.registry)
        self.out_of_range = Counter("shopfloor_out_of_range_total", "predictions flagged out of the training range",
                                    ["model"], registry=self.registry)
        self.batch = Histogram("shopfloor_request_inputs", "inputs per predict request", ["model"],
                               buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.model_batch = Histogram("shopfloor_batch_inputs", "inputs per model call (micro-batches)", ["model"],
                                     buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.queue_depth = Gauge("shopfloor_queue_depth", "requests waiting per model", ["model"],
                                 registry=self.registry)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# ----------------------------------------------------------------- responses
class PredictResponse(BaseModel):
    """What ``predict`` returned, each row with the id of its record, and the model that answered."""

    model: str
    task: str
    artifact_hash: str
    record_ids: list[int]
    predictions: list[dict[str, Any]]


class RecommendRequest(BaseModel):
    """What to recommend settings for (see ``shopfloor recommend``): the context held fixed, the objectives, the
    constraints (``part_weight<=12.5``) and bounds (``{"melt_temp": "220:250"}``)."""

    model_config = {"extra": "forbid"}
    fix: dict[str, Any] = Field(default_factory=dict)
    minimise: list[str] = Field(default_factory=list)
    maximise: list[str] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)
    bounds: dict[str, str] = Field(default_factory=dict)
    n: int = Field(5, ge=1, le=100)
    trials: int = Field(400, ge=8, le=5000)
    penalty: float = Field(1.0, ge=0)
    seed: int = 0


def problem(status: int, title: str, detail: str) -> JSONResponse:
    """An RFC 9457 problem response."""
    return JSONResponse({"type": "about:blank", "title": title, "status": status, "detail": detail},
                        status_code=status, media_type=PROBLEM)



def _embed_files(rows: list[dict[str, Any]], folder: Path) -> None:
    """Explanation files written under ``folder`` become data URIs in the rows (PNG) so the response carries them."""
    for row in rows:
        for key, value in list(row.items()):
            if isinstance(value, str) and value.endswith(".png") and Path(value).is_file() \
                    and Path(value).resolve().is_relative_to(folder.resolve()):
                row[key] = "data:image/png;base64," + base64.b64encode(Path(value).read_bytes()).decode()


def _kept_files(settings: ServerSettings, files: list[tuple[bytes, str | None, str | None]],
                rows: list[dict[str, Any]], i: int) -> dict[str, bytes]:
    """With ``inputs_dir``, the input bytes (one file per row) and the heatmap PNG of row ``i`` for the store."""
    if settings.inputs_dir is None:
        return {}
    kept: dict[str, bytes] = {}
    if files and len(files) == len(rows):
        kept["input_bytes"] = files[i][0]
    heatmap = rows[i].get("heatmap")
    prefix = "data:image/png;base64,"
    if isinstance(heatmap, str) and heatmap.startswith(prefix):
        kept["heatmap_png"] = base64.b64decode(heatmap[len(prefix):])
    return kept


def _client_names(message: str, names: dict[str, str]) -> str:
    """An error message with the temporary upload paths replaced by the names the client sent."""
    for path, name in sorted(names.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(path, repr(name) if name != Path(path).name else name)
    return message


def _rename_inputs(rows: list[dict[str, Any]], names: dict[str, str]) -> None:
    """Temporary upload paths in the rows back to the names the client sent."""
    for row in rows:
        for key, value in list(row.items()):
            if isinstance(value, str) and value in names:
                row[key] = names[value]


# ----------------------------------------------------------------- the app
def create_app(settings: ServerSettings) -> FastAPI:
    """The FastAPI app serving ``settings.model_dirs``; models and the record store open in its lifespan."""
    metrics = Metrics()
    served: dict[str, ServedModel] = {}
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["store"] = RecordStore(settings.db, inputs_dir=settings.inputs_dir, keep_inputs=settings.keep_inputs)
        if settings.model_names and len(settings.model_names) != len(settings.model_dirs):
            raise ConfigError(f"{len(settings.model_names)} model names for {len(settings.model_dirs)} model dirs")
        for i, model_dir in enumerate(settings.model_dirs):
            name = settings.model_names[i] if settings.model_names else Path(model_dir).resolve().name
            if name in served:
                raise ConfigError(f"two models are named {name!r} (the model directory's name); rename one folder")
            task = load(model_dir, device=settings.device, precision=settings.precision)
            task.training.progress = False
            artifact_hash = task._artifact.manifest["manifest_sha256"]
            served[name] = ServedModel(name, Path(model_dir), task, artifact_hash,
                                       MicroBatcher(task, settings.max_batch, settings.max_wait_ms,
                                                    metrics.model_batch.labels(name).observe, settings.runners))
        yield
        for model in served.values():
            model.batcher.close()
        state["store"].close()

    app = FastAPI(title="shopfloor", version=_version(), lifespan=lifespan,
                  description="Deep learning for the factory floor: predictions recorded for traceability.")
    app.state.served = served
    app.state.metrics = metrics
    app.state.settings = settings

    def store() -> RecordStore:
        return state["store"]

    def authorised(request: Request) -> None:
        if not settings.api_key_hashes:
            return
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        digest = hash_key(key) if scheme.lower() == "bearer" and key else ""
        if not any(hmac.compare_digest(digest, h) for h in settings.api_key_hashes):
            raise HTTPException(401, "a valid API key is required: send the header 'Authorization: Bearer <key>'")

    def model_named(name: str) -> ServedModel:
        if name not in served:
            raise HTTPException(404, f"no model named {name!r}; served: {', '.join(sorted(served)) or 'none'}")
        return served[name]

    # ---- errors: one place maps our errors to HTTP
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        metrics.requests.labels(request.url.path.split("/")[-1] or "/", str(exc.status_code)).inc()
        return problem(exc.status_code, _TITLES.get(exc.status_code, "Error"), str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return problem(422, "Invalid request", where)

    @app.exception_handler(ShopfloorError)
    async def user_error(request: Request, exc: ShopfloorError):
        if isinstance(exc, RecordStoreUnavailable):
            return problem(503, "Record store unavailable", f"the record store is unavailable, so nothing was "
                           f"recorded; retry when it answers again ({exc})")
        if isinstance(exc, ArtifactError):
            return problem(500, "Model directory problem", str(exc))
        return problem(422 if isinstance(exc, DataError) else 400, "Input not accepted", str(exc))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("internal error on %s", request.url.path)
        return problem(500, "Internal error", f"{type(exc).__name__}: the server could not handle this request; "
                       "it was logged. This is a bug in shopfloor, not in your input")

    # ---- endpoints
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz():
        """Models loaded and the record store reachable; 503 otherwise."""
        if not served:
            return problem(503, "Not ready", "no model is loaded")
        if not store().ping():
            return problem(503, "Not ready", "the record store does not answer: check that the database at "
                           f"{_redact(settings.db)} is running and reachable")
        return {"status": "ready", "models": sorted(served)}

    @app.get("/metrics", tags=["health"])
    def prometheus() -> Response:
        """Prometheus metrics: requests, latency, predictions by label, out-of-range rate, batch sizes, queues."""
        for model in served.values():
            metrics.queue_depth.labels(model.name).set(model.batcher.depth())
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", tags=["models"], dependencies=[Depends(authorised)])
    def models() -> list[dict[str, Any]]:
        """Every served model: name, task, what it accepts, classes, input spec, artifact hash, metrics."""
        return [model.describe() for model in served.values()]

    @app.get("/v1/records", tags=["records"], dependencies=[Depends(authorised)])
    def records(model: str | None = None, source: str | None = None, label: str | None = None,
                since: datetime | None = None, until: datetime | None = None,
                limit: int = Query(100, ge=1, le=1000), before_id: int | None = Query(None, ge=1, le=2**63 - 1)):
        """Prediction records, newest first; page with ``before_id`` (the smallest id of the previous page)."""
        for field_name, value in (("model", model), ("source", source), ("label", label)):
            if value is not None and "\x00" in value:  # PostgreSQL text cannot hold NUL; no record has one
                raise HTTPException(422, f"{field_name} contains a NUL character, which no record can hold; "
                                    "remove it")
        rows = store().query(model=model, source=source, label=label, since=since, until=until, limit=limit,
                             before_id=before_id)
        return {"records": rows, "next_before_id": rows[-1]["id"] if len(rows) == limit else None}

    @app.post("/v1/models/{name}/predict", tags=["models"], response_model=PredictResponse,
              dependencies=[Depends(authorised)],
              openapi_extra={"requestBody": {"content": {
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
                  "application/json": {"schema": {}},
                  "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def predict(name: str, request: Request, explain: bool = False, source: str | None = None):
        """The model's prediction for the request's input(s), by the kind of input the task declares."""
        model = model_named(name)
        source = source or request.headers.get("x-shopfloor-source")
        files, payload = await _read_body(request, settings.max_upload_bytes)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_predict, model, files, payload, explain, source,
                                       request.headers.get("idempotency-key"))

    def _predict(model: ServedModel, files: list[tuple[bytes, str | None, str | None]], payload: Any,
                 explain: bool, source: str | None, idempotency: str | None) -> PredictResponse:
        import tempfile

        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="shopfloor-explain-") as out:
            out_dir = Path(out) if explain else None
            if files:
                with input_files(model.task, files) as paths:
                    fingerprints = [hashlib.sha256(data).hexdigest() for data, _, _ in files]
                    names = {str(p): (f[1] or p.name) for p, f in zip(paths, files)}
                    try:
                        rows = model.batcher.submit([str(p) for p in paths], explain, out_dir)
                    except DataError as exc:  # name the files as the client sent them, not our temporary copies
                        raise DataError(_client_names(str(exc), names)) from None
                    _rename_inputs(rows, names)
            else:
                fingerprints = [hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()]
                rows = model.batcher.submit([from_json(model.task, payload)], explain, out_dir)
            rows = to_jsonable(rows)
            if out_dir is not None:
                _embed_files(rows, out_dir)
        latency_ms = (time.perf_counter() - started) * 1000.0
        metrics.latency.labels(model.name).observe(latency_ms / 1000.0)
        metrics.batch.labels(model.name).observe(len(files) or 1)
        records = []
        for i, row in enumerate(rows):
            label, score = label_and_score(row)
            records.append({"model": model.name, "artifact_hash": model.artifact_hash, "result": row,
                            "input_fingerprint": fingerprints[min(i, len(fingerprints) - 1)], "source": source,
                            "label": label, "score": score, "latency_ms": latency_ms,
                            "key": f"{idempotency}:{i}" if idempotency else None,
                            **_kept_files(settings, files, rows, i)})
            metrics.predictions.labels(model.name, label or "none").inc()
            if row.get("out_of_range"):
                metrics.out_of_range.labels(model.name).inc()
        ids = [record_id for record_id, _ in store().add_many(records)]
        for row, record_id in zip(rows, ids):
            row["record_id"] = record_id
        metrics.requests.labels("predict", "200").inc()
        return PredictResponse(model=model.name, task=model.task.name, artifact_hash=model.artifact_hash,
                               record_ids=ids, predictions=rows)

    @app.post("/v1/models/{name}/recommend", tags=["models"], dependencies=[Depends(authorised)])
    async def recommend(name: str, body: RecommendRequest):
        """Recommended settings from a model whose task recommends (process-optimisation): the same search as
        ``shopfloor recommend``, through the served model's graph. Not recorded (nothing was produced yet)."""
        model = model_named(name)
        if not callable(getattr(model.task, "recommend", None)):
            raise HTTPException(404, f"model {name!r} is a {model.task.name} model, which does not recommend "
                                "settings; serve a process-optimisation model")
        from starlette.concurrency import run_in_threadpool

        result = await run_in_threadpool(lambda: model.task.recommend(**body.model_dump()))
        metrics.requests.labels("recommend", "200").inc()
        return {"model": name, "task": model.task.name, "artifact_hash": model.artifact_hash, **result}

    from .dashboard import mount_dashboard  # the live dashboard at / and its data endpoints
    mount_dashboard(app, store, served, authorised)
    return app


async def _read_body(request: Request, limit: int) -> tuple[list[tuple[bytes, str | None, str | None]], Any]:
    """The uploaded files (multipart or a raw body) or the JSON payload, refusing bodies over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the request body is {int(declared):,} bytes; this server accepts at most "
                            f"{limit:,} (--max-upload-mb)")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_part_size=limit)
        files = []
        for _, value in form.multi_items():
            if hasattr(value, "read"):
                data = await value.read()
                files.append((data, value.filename, value.content_type))
        if not files:
            raise HTTPException(422, "the multipart body holds no file: send the input as a file part (-F file=@...)")
        if sum(len(d) for d, _, _ in files) > limit:
            raise HTTPException(413, f"the uploaded files exceed {limit:,} bytes (--max-upload-mb)")
        return files, None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise HTTPException(413, f"the request body exceeds {limit:,} bytes (--max-upload-mb)")
    if not body:
        raise HTTPException(422, "the request body is empty: send the input as a file, JSON rows or a JSON array")
    if content_type == "application/json" or (not content_type and body[:1] in (b"{", b"[")):
        return [], parse_json(bytes(body))
    return [(bytes(body), None, content_type or None)], None


_TITLES = {400: "Bad request", 401: "Unauthorized", 404: "Not found", 413: "Payload too large", 422: "Invalid input",
           503: "Service unavailable"}


def _redact(url: str) -> str:
    """A database URL without its password."""
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':')[0]}:***@{tail}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("shopfloor")
    except PackageNotFoundError:
        return "0.1.0"


SETTINGS_ENV = "SHOPFLOOR_SERVE_SETTINGS"


def app_from_env() -> FastAPI:
    """The app for uvicorn's multi-worker mode (each worker process builds its own from the settings the CLI
    put in ``$SHOPFLOOR_SERVE_SETTINGS``)."""
    import os

    return create_app(ServerSettings.model_validate_json(os.environ[SETTINGS_ENV]))


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server on this machine."""
    import ipaddress

    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["SETTINGS_ENV", "MicroBatcher", "app_from_env", "PredictResponse", "ServerSettings", "create_app", "hash_key", "is_loopback",
           "read_api_key_file"]


"""Score a large archive of input files on a Ray cluster: ``shopfloor predict MODEL FOLDER --engine ray``.

Ray Data reads the list of file paths and ``map_batches`` hands batches to a pool of actors. Each actor opens the
model directory once (:func:`shopfloor.core.registry.load`: the same verified artifact, the same ONNX graph through
:mod:`shopfloor.core.runtime`) and scores its batch with the task's own ``predict``, which decodes each file through
the task's one decode function. There is no second inference path: the rows are those the local engine writes,
in input order.

Inputs are files and folders (a folder's files with the task's suffixes, sorted, as the local engine lists them)
that every Ray node can read at the same path (a shared or mounted file system). ``s3://`` archives are not read
directly: mount the bucket (e.g. s3fs, mountpoint-s3) or copy it first.

Ray is an optional dependency (``pip install 'shopfloor[ray]'``); without it this module raises a
:class:`~shopfloor.core.errors.ConfigError` saying so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

from shopfloor.core.errors import ConfigError, DataError, ShopfloorError
from shopfloor.core.registry import load
from shopfloor.core.task import to_jsonable

ENGINES = ("local", "ray")
DEFAULT_BATCH = 64  # files per map_batches call: large enough to amortise the hand-over, small in memory


def require_ray():
    """The ``ray`` module (with Ray Data), or a :class:`ConfigError` naming what to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ConfigError("--engine ray needs Ray with Ray Data, which is not installed: pip install "
                          "'shopfloor[ray]' (or pip install 'ray[data]>=2.9'); or use --engine local") from exc
    return ray


def list_inputs(inputs: Sequence[str | Path], suffixes: Sequence[str]) -> list[str]:
    """Files and folders as one list of file paths: a folder gives its files with ``suffixes`` (sorted, hidden files
    left out, as the local engine lists a folder); missing inputs and ``s3://`` URLs are refused, all listed."""
    out: list[str] = []
    problems: list[str] = []
    wanted = tuple(s.lower() for s in suffixes)
    for item in inputs:
        text = str(item)
        if "://" in text:
            problems.append(f"{text}: URLs are not read by the Ray engine; mount the bucket (s3fs, mountpoint-s3) "
                            "or copy it to a folder every Ray node can read, and pass that folder")
            continue
        path = Path(text)
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                           and (not wanted or p.suffix.lower() in wanted))
            if not found:
                problems.append(f"folder {path} holds no input files ({', '.join(wanted) or 'any'})")
            out.extend(found)
        elif path.exists():
            out.append(text)
        else:
            problems.append(f"{path} does not exist")
    if problems:
        raise DataError("cannot score these inputs with the Ray engine:\n  " + "\n  ".join(problems))
    return out


class _Scorer:
    """A Ray Data actor: opens the model directory once, then scores batches of file paths with ``predict``."""

    def __init__(self, model_dir: str, device: str, precision: str, strict: bool, key_file: str | None):
        self.task = load(model_dir, device=device, strict=strict, key_file=key_file, precision=precision)
        self.task.training.progress = False

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        paths = [str(p) for p in batch["path"]]
        try:
            rows = [json.dumps(to_jsonable(r)) for r in self.task.predict(paths, skip_bad=True)]
            failure = ""
        except ShopfloorError as exc:  # e.g. strict: inputs out of the training range; listed by the driver
            rows, failure = [""] * len(paths), str(exc)
        return {"index": batch["index"], "row": rows, "failure": [failure] * len(paths)}


def predict_on_ray(model_dir: str | Path, inputs: Sequence[str | Path], address: str | None = None,
                   device: str = "cpu", precision: str = "auto", strict: bool = False, key_file: str | Path | None = None,
                   skip_bad: bool = False, batch_size: int = DEFAULT_BATCH, workers: int | None = None,
                   cpus_per_worker: float = 1.0, progress: bool = False) -> list[dict[str, Any]]:
    """The rows ``load(model_dir).predict(inputs)`` gives, computed on a Ray cluster (see module docstring).

    ``device`` and ``precision`` as for :func:`~shopfloor.core.registry.load`. ``address``: the cluster (``ray://host:10001``, ``host:6379`` or ``auto``); None joins the Ray instance this
    process already started, or starts a local one. ``workers``: actors (default: the cluster's CPUs divided by
    ``cpus_per_worker``). Unreadable inputs refuse the run, all listed, unless ``skip_bad`` (then they come back as
    ``{"input", "skipped": True, "error"}`` rows, as from the local engine)."""
    ray = require_ray()
    probe = load(model_dir, device="cpu", strict=strict, key_file=key_file)  # a bad directory fails here, once
    paths = list_inputs(inputs, probe.input_suffixes)
    del probe
    started = False
    if address is not None:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        started = True
    elif not ray.is_initialized():
        ray.init(logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
        started = True
    try:
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = progress
        context.execution_options.preserve_order = True
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_worker))
        records = ray.data.from_items([{"index": i, "path": p} for i, p in enumerate(paths)])
        scored = records.map_batches(
            _Scorer, fn_constructor_args=(str(model_dir), device, precision, strict,
                                                   None if key_file is None else str(key_file)),
            batch_size=batch_size, concurrency=min(workers, max(1, -(-len(paths) // batch_size))),
            num_cpus=cpus_per_worker, batch_format="numpy")
        out = sorted(scored.take_all(), key=lambda r: int(r["index"]))
    finally:
        if started:
            ray.shutdown()
    failures = sorted({str(r["failure"]) for r in out if r["failure"]})
    if failures:
        raise DataError("\n".join(failures))
    rows = [json.loads(str(r["row"])) for r in out]
    bad = [r for r in rows if r.get("skipped")]
    if bad and not skip_bad:
        shown = "\n  ".join(f"{r['input']}: {r['error']}" for r in bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(f"{len(bad)} input(s) could not be read:\n  {shown}{more}\nFix or remove them, or pass "
                        "--skip-bad to score the rest")
    return rows

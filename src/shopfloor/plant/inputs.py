"""From what arrives over the network to what a task's ``predict`` takes, by the task's declared input kind.

A request or message carries either a file (bytes, with a name or content type, or recognised by its first
bytes) or JSON. Files are written to a private temporary folder with their suffix and handed to ``predict`` as
paths, so they go through the task's own reader (the one decode path: bit depth, EXIF, layout checks). JSON is
accepted where the kind has a natural JSON form: ``table`` (rows ``[{column: value}]`` or ``{"rows": [...]}``)
becomes a DataFrame, ``signal`` (``[x, ...]`` or ``[[x, y], ...]``, samples first) a float array.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from shopfloor.core.errors import DataError
from shopfloor.core.task import INPUT_KINDS, Task

# the first bytes of the file types the tasks read
MAGIC = (
    (b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"BM", ".bmp"), (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"), (b"\x93NUMPY", ".npy"), (b"RIFF", ".wav"), (b"PAR1", ".parquet"),
    (b"MATLAB", ".mat"), (b"fLaC", ".flac"),
)
CONTENT_TYPES = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/bmp": ".bmp", "image/tiff": ".tif", "text/csv": ".csv",
    "application/x-npy": ".npy", "audio/wav": ".wav", "audio/x-wav": ".wav", "application/vnd.apache.parquet": ".parquet",
    "audio/flac": ".flac", "audio/x-flac": ".flac",
}


def kind_help(task: Task) -> str:
    """What this task accepts, for error messages and the API docs."""
    suffixes = ", ".join(task.input_suffixes) or "any"
    return f"{task.name} takes {INPUT_KINDS.get(task.input_kind, task.input_kind)} (files: {suffixes})"


def file_suffix(data: bytes, filename: str | None = None, content_type: str | None = None) -> str:
    """The suffix to read ``data`` with: from its name, else its content type, else its first bytes (text: CSV)."""
    if filename and Path(filename).suffix:
        return Path(filename).suffix.lower()
    if content_type and content_type.split(";")[0].strip().lower() in CONTENT_TYPES:
        return CONTENT_TYPES[content_type.split(";")[0].strip().lower()]
    for magic, suffix in MAGIC:
        if data.startswith(magic):
            return suffix
    try:
        data[:4096].decode("utf-8")
        return ".csv"
    except UnicodeDecodeError:
        return ""


def from_json(task: Task, payload: Any) -> Any:
    """A JSON body as the task's ``predict`` input, or a DataError that says what this task takes."""
    if task.input_kind == "table":
        import pandas as pd

        rows = payload.get("rows") if isinstance(payload, dict) else payload
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise DataError(f"expected JSON rows [{{column: value}}, ...] or {{\"rows\": [...]}}; {kind_help(task)}")
        return pd.DataFrame(rows)
    if task.input_kind == "signal":
        values = payload.get("signal") if isinstance(payload, dict) else payload
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"expected a JSON array of numbers (samples,) or (samples, channels); {exc}") from None
        if array.ndim not in (1, 2) or array.size == 0:
            raise DataError(f"expected a JSON array (samples,) or (samples, channels); got shape {array.shape}")
        return array
    raise DataError(f"JSON bodies are not accepted here: {kind_help(task)}; send the file instead")


def parse_json(data: bytes) -> Any:
    """JSON bytes, or a DataError saying where the JSON is broken."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"the body is not valid JSON: {exc}") from None


@contextmanager
def input_files(task: Task, files: list[tuple[bytes, str | None, str | None]]) -> Iterator[list[Path]]:
    """Write uploaded ``(bytes, filename, content_type)`` to a temporary folder (removed afterwards) and yield
    their paths; a file type the task does not read is refused up front."""
    with tempfile.TemporaryDirectory(prefix="shopfloor-input-") as folder:
        paths = []
        for i, (data, filename, content_type) in enumerate(files):
            suffix = file_suffix(data, filename, content_type)
            if task.input_suffixes and suffix not in task.input_suffixes:
                raise DataError(f"{filename or f'input {i}'}: cannot read a {suffix or 'file of unknown type'} "
                                f"here; {kind_help(task)}")
            stem = Path(filename).stem if filename else f"input_{i}"
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80] or f"input_{i}"
            path = Path(folder) / f"{i:04d}_{safe}{suffix}"
            path.write_bytes(data)
            paths.append(path)
        yield paths

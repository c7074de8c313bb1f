"""What the command line shows and where: results on stdout (JSON, JSONL, CSV), everything else on stderr.

Also the checks that run before long work starts (output paths writable, --devices readable), so no result is
lost at the end of a training because of a typo in ``--json``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from shopfloor.core.errors import ConfigError
from shopfloor.core.quiet import is_verbose, set_verbose
from shopfloor.core.task import to_jsonable

# stderr: tables, notes, warnings, progress. stdout (results) is written with plain sys.stdout.write.
console = Console(stderr=True, highlight=False)
RESULT_FORMATS = ("json", "jsonl", "csv")
MAX_TABLE_ROWS = 20
_state = {"quiet": False}


def say(text: str, style: str | None = None) -> None:
    """A line on stderr, printed as written (no rich markup: a path with ``[left]`` stays intact)."""
    if not _state["quiet"]:
        console.print(text, style=style, markup=False, soft_wrap=True)


def show(table: Table) -> None:
    """A table on stderr, unless --quiet."""
    if not _state["quiet"]:
        console.print(table)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr (always, even with --quiet) and exit."""
    import typer

    console.print("error: ", style="bold red", end="")
    console.print(message, markup=False, soft_wrap=True)
    raise typer.Exit(code)


def setup_console(verbose: bool = False, quiet: bool = False, fresh: bool = False) -> None:
    """Route the ``shopfloor`` logger and Python warnings to stderr; ``verbose`` shows library chatter too,
    ``quiet`` keeps only warnings and errors. ``fresh`` (the start of a command line) forgets an earlier
    invocation's ``--quiet`` in the same process; otherwise a command's ``--quiet`` adds to the global one."""
    from rich.logging import RichHandler

    if verbose:
        set_verbose(True)
    if quiet or fresh:
        _state["quiet"] = quiet
    logger = logging.getLogger("shopfloor")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.addHandler(RichHandler(console=console, show_time=False, show_path=False, markup=False))
        logger.propagate = False
    level = logging.DEBUG if is_verbose() else logging.WARNING if _state["quiet"] else logging.INFO
    logger.setLevel(level)
    if not is_verbose():
        warnings.showwarning = _log_warning


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Warnings as one readable line each on stderr (with --verbose: Python's own format, file and line)."""
    logging.getLogger("shopfloor").warning("%s", message)


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    """Scalar metrics as a two-column table."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
        elif isinstance(value, (int, str)) and key != "report":
            table.add_row(key, str(value))
    return table


def per_group_table(groups: dict[str, dict[str, Any]], title: str) -> Table:
    """One row per class / defect type / mode."""
    table = Table(title=title)
    columns = sorted({k for v in groups.values() for k in v}, key=lambda c: (c == "support", c))
    table.add_column("class")
    for c in columns:
        table.add_column(c, justify="right")
    for name, values in groups.items():
        table.add_row(name, *[f"{values[c]:.4f}" if isinstance(values.get(c), float) else str(values.get(c, ""))
                              for c in columns])
    return table


def show_metrics(metrics: dict[str, Any], title: str) -> None:
    """Scalar metrics as one table, then every per-group dict (per_class, per_type...) as another."""
    show(metrics_table(metrics, title))
    for key, value in metrics.items():
        if key.startswith("per_") and isinstance(value, dict) and value and all(
                isinstance(v, dict) for v in value.values()):
            show(per_group_table(value, key.replace("_", " ")))


def rows_table(rows: Sequence[dict[str, Any]], title: str) -> Table:
    """The scalar fields of the first rows (at most MAX_TABLE_ROWS) as a table."""
    keys = list(dict.fromkeys(k for r in rows[:MAX_TABLE_ROWS] for k, v in r.items()
                              if isinstance(v, (str, int, float)) and not isinstance(v, bool) or k == "skipped"))
    more = f" (first {MAX_TABLE_ROWS} of {len(rows)})" if len(rows) > MAX_TABLE_ROWS else ""
    table = Table(title=title + more)
    for k in keys:
        table.add_column(k)
    for r in rows[:MAX_TABLE_ROWS]:
        table.add_row(*[f"{r[k]:.4f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys])
    return table


def format_results(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """Result rows as JSON (a list), JSON lines, or CSV (nested values as JSON text)."""
    rows = to_jsonable(list(rows))
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    if fmt == "csv":
        keys = list(dict.fromkeys(k for r in rows for k in r))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
        return buffer.getvalue()
    raise ConfigError(f"unknown --format {fmt!r}; choose one of: {', '.join(RESULT_FORMATS)}")


def write_result(payload: Any, path: Path | None, fmt: str = "json") -> None:
    """Write results to ``path`` (``-`` or ``None``: stdout)."""
    text = format_results(payload, fmt) if isinstance(payload, list) else json.dumps(to_jsonable(payload),
                                                                                      indent=2) + "\n"
    if path is None or str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    say(f"wrote {path}")


# ----------------------------------------------------------------- checks before long work
def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_file(path: Path | None, option: str) -> None:
    """``path`` can be written as a file: not a folder, and its first existing parent is a writable folder."""
    if path is None or str(path) == "-":
        return
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name (e.g. {path / 'result.json'})")
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise ConfigError(f"{option} {path}: {base} is a file, not a folder; choose another path")
    if not os.access(base, os.W_OK):
        raise ConfigError(f"{option} {path}: no permission to write in {base}; choose a writable place")


def check_output_dir(path: Path | None, option: str) -> None:
    """``path`` can be used as an output folder: not an existing file, and creatable/writable."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file; give a folder (it is created if missing)")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise ConfigError(f"{option} {path}: {base} is a file, not a folder; choose another path")
    if not os.access(base, os.W_OK):
        raise ConfigError(f"{option} {path}: no permission to write in {base}; choose a writable place")


def parse_devices(devices: str | None) -> int | str | None:
    """--devices: a count (2), 'auto', or -1 for all."""
    if devices is None:
        return None
    text = devices.strip()
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--devices takes a number of devices (2), 'auto' or -1 for all; got {devices!r}") from None
    if value == 0 or value < -1:
        raise ConfigError(f"--devices {value}: give at least 1 device, -1 for all, or 'auto'")
    return value

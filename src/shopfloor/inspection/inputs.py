"""What the inspection tasks check about a batch of images, in one place for both of them.

- **Training ranges** of per-image intensity statistics (:data:`~shopfloor.inspection.images.INTENSITY_COLUMNS`:
  the mean and standard deviation of each image's gray level in the model frame) are stored at fit in
  ``state["input_ranges"]`` (:class:`shopfloor.core.ranges.InputRanges`); ``predict`` and ``evaluate`` flag the
  images far outside them (an all-white frame, 10x the contrast, another camera's exposure) through
  :meth:`Task.flag_out_of_range <shopfloor.core.task.Task.flag_out_of_range>`: a warning, or a refusal when
  ``task.strict``. Models saved before the ranges existed flag nothing, and their rows carry no flag.
- **Bad inputs** of a batch go through :func:`shopfloor.core.task.read_inputs`: all listed in one refusal, or
  skipped (``skip_bad``) and returned as rows ``{"input", "skipped": True, "error"}``.
"""

from __future__ import annotations

from typing import Any, Sequence

from shopfloor.core.errors import DataError
from shopfloor.core.ranges import InputRanges
from shopfloor.core.task import Task, read_inputs

from .images import INTENSITY_COLUMNS, FrameInfo, ImageSpec, intensity_stats, warn_stretched

RANGES_KEY = "input_ranges"


def fit_input_ranges(infos: Sequence[FrameInfo]) -> dict[str, Any]:
    """The training ranges of the intensity statistics of ``infos``, for ``state["input_ranges"]``."""
    return InputRanges.fit(intensity_stats(infos), list(INTENSITY_COLUMNS)).to_state()


def check_ranges(task: Task, names: Sequence[str], infos: Sequence[FrameInfo]) -> list[list[str]]:
    """Flag (warn about, or with ``task.strict`` refuse) the images far outside the training ranges."""
    if not names:
        return []
    return task.flag_out_of_range(RANGES_KEY, list(names), intensity_stats(infos))


def has_ranges(task: Task) -> bool:
    """Whether the model stored training ranges (models saved before they existed did not)."""
    return bool(task.state.get(RANGES_KEY))


def mark_rows(task: Task, rows: Sequence[dict[str, Any]], flagged: Sequence[list[str]]) -> None:
    """``out_of_range`` / ``out_of_range_columns`` on each row, when the model has ranges to check against (a model
    saved before them leaves its rows as they were: nothing was checked, so nothing is claimed)."""
    if has_ranges(task):
        task.mark_out_of_range(rows, flagged)


def settle_bad_inputs(n: int, errors: dict[int, DataError], names: Sequence[str], skip_bad: bool,
                      key: str | None = None) -> dict[int, dict[str, Any]]:
    """Refuse the batch listing every input in ``errors`` (index -> error), or with ``skip_bad`` return their rows
    by index: ``{"input", "skipped": True, "error"}`` (plus ``key``, the task's usual name for the input)."""
    if not errors:
        return {}

    def check(i: int) -> int:
        if i in errors:
            raise errors[i]
        return i

    _, rows = read_inputs(list(range(n)), check, skip_bad=skip_bad, name=lambda i: names[i])
    out: dict[int, dict[str, Any]] = {}
    for i, row in zip(sorted(errors), rows):
        out[i] = {key: row["input"], **row} if key and key != "input" else row
    return out


def finish_predictions(task: Task, rows: dict[int, dict[str, Any]], errors: dict[int, DataError],
                       names: Sequence[str], infos: dict[int, FrameInfo] | Sequence[FrameInfo], spec: ImageSpec,
                       skip_bad: bool, key: str | None = None) -> list[dict[str, Any]]:
    """The rows of one ``predict`` call in input order: bad inputs refused or skipped (:func:`settle_bad_inputs`),
    stretched images warned about once, rows far outside the training ranges marked."""
    skipped = settle_bad_inputs(len(names), errors, names, skip_bad, key=key)
    good = sorted(rows)
    warn_stretched([infos[i] for i in good], [names[i] for i in good], spec)
    mark_rows(task, [rows[i] for i in good], check_ranges(task, [names[i] for i in good], [infos[i] for i in good]))
    return [rows[i] if i in rows else skipped[i] for i in range(len(names))]

"""The data-quality report: ``report.html`` with pictures of the items concerned, and the JSON of every finding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..report import Report, image_grid_figure
from ..task import to_jsonable
from .check import SHOWN, Finding, QualityResult

PICTURES = 24  # pictures per finding in the report
PAIR_FINDINGS = ("split_leakage", "conflicting_duplicates", "exact_duplicates", "near_duplicates")


def write_quality_json(result: QualityResult, path: str | Path) -> Path:
    """Every finding, the label issues (``suspected_label_errors``) and the duplicate pairs as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(result.to_json()), indent=2))
    return path


def write_quality_report(result: QualityResult, out_dir: str | Path, title: str = "Data quality") -> Path:
    """``report.html`` (and its PNGs) under ``out_dir``: a summary table, then each finding with what to do, the
    items concerned and, for images, their pictures."""
    report = Report(out_dir, title)
    data = result.data
    report.text(f"{len(data.names)} items, {len(data.classes)} classes; splits: "
                + ", ".join(f"{s} ({(data.splits or []).count(s)})" for s in sorted(set(data.splits or []))))
    for note in data.notes:
        report.text(note)
    report.table([{"severity": f.severity, "check": f.check, "count": len(f.items), "summary": f.summary}
                  for f in result.findings] or [{"result": "no problems found"}], "Findings")
    if result.class_counts:
        report.table([{"class": c, **{s: counts[c] for s, counts in result.class_counts.items()}}
                      for c in data.classes], "Class counts")
    for n, finding in enumerate(result.findings):
        _finding_section(report, result, finding, n)
    return report.write()


def _finding_section(report: Report, result: QualityResult, finding: Finding, n: int) -> None:
    report.heading(f"{finding.severity}: {finding.check.replace('_', ' ')}")
    report.text(finding.summary)
    report.text(f"What to do: {finding.action}")
    shown = finding.items[:SHOWN]
    report.table([{k: _cell(v) for k, v in item.items()} for item in shown])
    if len(finding.items) > SHOWN:
        report.text(f"... and {len(finding.items) - SHOWN} more (all of them are in the JSON, --json FILE)")
    picture = result.data.picture
    if picture is None:
        return
    images, titles = [], []
    if finding.check in PAIR_FINDINGS:
        for item in finding.items[: PICTURES // 2]:
            for side in ("a", "b"):
                images.append(_safe_picture(picture, item[side]))
                label = item.get(f"label_{side}", "")
                split = item.get(f"split_{side}", "")
                titles.append(f"{Path(item[side]).name}\n{label} {split}".strip())
    elif "name" in (finding.items[0] if finding.items else {}):
        for item in finding.items[:PICTURES]:
            images.append(_safe_picture(picture, item["name"]))
            caption = f"{item['given']} -> {item['suggested']}" if "given" in item else ", ".join(
                f"{k} {v}" for k, v in item.items() if k != "name")
            titles.append(f"{Path(item['name']).name}\n{caption}")
    if images:
        report.figure(image_grid_figure(images, titles, cols=6 if finding.check not in PAIR_FINDINGS else 4),
                      f"finding_{n:02d}_{finding.check}", finding.summary)


def _safe_picture(picture: Any, name: str) -> np.ndarray:
    try:
        return picture(name)
    except Exception:  # a picture that cannot be drawn must not lose the report
        return np.zeros((8, 8, 3), dtype=np.uint8)


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value[:6]) + (" ..." if len(value) > 6 else "")
    return value

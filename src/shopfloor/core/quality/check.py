"""Run every data-quality check on a :class:`QualityData` and say, for each finding, what to do about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .columns import column_issues, duplicate_rows, outliers
from .data import QualityData
from .duplicates import DuplicatePair, duplicate_groups, find_duplicates
from .labels import LabelIssue, fold_count, out_of_fold_probabilities, rank_label_issues

IMBALANCE_RATIO = 3.0  # largest / smallest class above this is reported
FEW_PER_CLASS = 10  # classes with fewer items are reported
EXPOSURE_CLIPPED = 0.5  # more than this share of pixels at black or white
SHOWN = 50  # items listed per finding in the report (the JSON has all)
LABEL_ACTIONS = {
    "image": "Look at each, most suspicious first: relabel the ones that are wrong (move the file to the right class "
             "folder), remove the ones that show no part or no defect",
    "table": "Check the records, most suspicious first, against the plant's log: fix the wrong labels. A simple "
             "out-of-fold model doubts records it cannot explain, so a record whose outcome depends on a pattern "
             "it misses (or on a cause not in the table) is listed too: treat the list as where to look first",
}


@dataclass
class Finding:
    """One problem found: ``check`` (its kind), ``severity`` (error | warning | info), a one-line ``summary``, what
    to do (``action``) and the ``items`` concerned (dicts naming them)."""

    check: str
    severity: str
    summary: str
    action: str
    items: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "severity": self.severity, "summary": self.summary, "action": self.action,
                "count": len(self.items), "items": self.items}


@dataclass
class QualityResult:
    """Everything a check found: the findings, the duplicate pairs, the label issues (with every item's label
    quality) and the class counts per split."""

    data: QualityData
    findings: list[Finding]
    duplicates: list[DuplicatePair]
    label_issues: list[LabelIssue]
    label_quality: np.ndarray | None
    class_counts: dict[str, dict[str, int]]
    settings: dict[str, Any]

    def suspected_label_errors(self) -> list[dict[str, Any]]:
        """``[{"path", "given", "suggested", "score"}]``, most suspicious first (score: label quality, 0..1)."""
        names, classes = self.data.names, self.data.classes
        return [{"path": names[i.index], "given": classes[i.given], "suggested": classes[i.suggested],
                 "score": round(i.score, 6)} for i in self.label_issues]

    def to_json(self) -> dict[str, Any]:
        names, splits = self.data.names, self.data.splits or []
        return {
            "kind": self.data.kind, "n_items": len(names), "classes": self.data.classes,
            "class_counts": self.class_counts, "settings": self.settings, "notes": self.data.notes,
            "findings": [f.to_json() for f in self.findings],
            "suspected_label_errors": self.suspected_label_errors(),
            "duplicates": [{"a": names[p.a], "b": names[p.b], "similarity": round(p.similarity, 6),
                            "exact": p.exact, "across_splits": splits[p.a] != splits[p.b]} for p in self.duplicates],
        }


def run_checks(data: QualityData, folds: int = 5, seed: int = 0, method: str = "self_confidence") -> QualityResult:
    """Every check that ``data`` has the material for (see :mod:`shopfloor.core.quality`)."""
    findings: list[Finding] = []
    counts = _class_counts(data)
    findings += _balance_findings(data, counts)
    pairs = find_duplicates(data.image_facts.pixel_hash if data.image_facts else None, data.embeddings,
                            data.signatures) if data.kind != "table" else []
    findings += _duplicate_findings(data, pairs)
    issues, quality, note = _label_issues(data, folds, seed, method)
    if note:
        data.notes.append(note)
    if issues:
        findings.append(Finding(
            "label_errors", "warning", f"{len(issues)} item(s) whose label the out-of-fold model doubts "
            "(confident learning)", LABEL_ACTIONS.get(data.kind, LABEL_ACTIONS["image"]),
            [{"name": data.names[i.index], "given": data.classes[i.given], "suggested": data.classes[i.suggested],
              "score": round(i.score, 4)} for i in issues]))
    if data.image_facts is not None:
        findings += _image_findings(data)
    if data.table is not None:
        findings += _table_findings(data)
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order.get(f.severity, 3))
    return QualityResult(data, findings, pairs, issues, quality, counts,
                         {"folds": folds, "seed": seed, "label_quality_method": method})


def _class_counts(data: QualityData) -> dict[str, dict[str, int]]:
    if data.labels is None or not data.classes:
        return {}
    out: dict[str, dict[str, int]] = {}
    for split in sorted(set(data.splits or [])):
        mask = np.asarray([s == split for s in data.splits or []]) & (np.asarray(data.labels) >= 0)
        labels = np.asarray(data.labels)[mask]
        out[split] = {c: int((labels == k).sum()) for k, c in enumerate(data.classes)}
    return out


def _balance_findings(data: QualityData, counts: dict[str, dict[str, int]]) -> list[Finding]:
    findings = []
    for split, per_class in counts.items():
        present = {c: n for c, n in per_class.items() if n}
        missing = [c for c, n in per_class.items() if not n]
        if missing:
            findings.append(Finding("missing_classes", "error", f"split {split!r} has no items of {missing}",
                                    f"Add items of these classes to {split}, or its scores will not cover them",
                                    [{"split": split, "class": c} for c in missing]))
        if len(present) >= 2:
            ratio = max(present.values()) / min(present.values())
            if ratio > IMBALANCE_RATIO:
                findings.append(Finding(
                    "class_balance", "warning", f"split {split!r} is imbalanced: the largest class has {ratio:.1f}x "
                    f"the items of the smallest", "Collect more of the small classes; training balances the loss "
                    "or the sampling, and judge the model by macro F1 / per-class recall, not accuracy",
                    [{"split": split, "class": c, "count": n} for c, n in sorted(present.items(), key=lambda x: x[1])]))
        few = {c: n for c, n in present.items() if n < FEW_PER_CLASS}
        if few:
            findings.append(Finding("few_items", "warning", f"split {split!r}: {len(few)} class(es) with fewer than "
                                    f"{FEW_PER_CLASS} items", "Collect more of these classes (dozens per class); "
                                    "scores on a handful of items are noise",
                                    [{"split": split, "class": c, "count": n} for c, n in few.items()]))
    return findings


def _duplicate_findings(data: QualityData, pairs: list[DuplicatePair]) -> list[Finding]:
    if not pairs:
        return []
    names, splits, labels = data.names, data.splits or [], data.labels
    findings = []

    def row(p: DuplicatePair) -> dict[str, Any]:
        item = {"a": names[p.a], "b": names[p.b], "similarity": round(p.similarity, 4), "exact": p.exact}
        if labels is not None and data.classes:
            item.update(label_a=_class(data, p.a), label_b=_class(data, p.b))
        if splits[p.a] != splits[p.b]:
            item.update(split_a=splits[p.a], split_b=splits[p.b])
        return item

    cross = [p for p in pairs if splits[p.a] != splits[p.b]]
    if cross:
        findings.append(Finding(
            "split_leakage", "error", f"{len(cross)} duplicate pair(s) across splits ({', '.join(sorted(set(splits)))})"
            ": the test score counts these items as unseen", "Remove one of each pair from the test split (or move "
            "both into the same split), then evaluate again", [row(p) for p in cross]))
    conflicting = [p for p in pairs if labels is not None and labels[p.a] >= 0 and labels[p.b] >= 0
                   and labels[p.a] != labels[p.b]]
    if conflicting:
        findings.append(Finding("conflicting_duplicates", "error", f"{len(conflicting)} duplicate pair(s) carry "
                                "different labels", "Decide the right class for each and keep one copy",
                                [row(p) for p in conflicting]))
    exact = [p for p in pairs if p.exact]
    near = [p for p in pairs if not p.exact]
    groups = duplicate_groups(len(names), pairs)
    extra = sum(len(g) - 1 for g in groups)
    if exact:
        findings.append(Finding("exact_duplicates", "warning", f"{len(exact)} pair(s) of identical images",
                                f"Keep one of each: the {extra} extra copies in all duplicate groups weigh those "
                                "items double in training and inflate test scores", [row(p) for p in exact]))
    if near:
        findings.append(Finding("near_duplicates", "warning", f"{len(near)} pair(s) of near-identical items (same "
                                "picture re-encoded, resized or shifted)", "Look at the pairs: keep one of each "
                                "unless they are truly different parts", [row(p) for p in near]))
    return findings


def _class(data: QualityData, i: int) -> str:
    label = int(data.labels[i]) if data.labels is not None else -1
    return data.classes[label] if 0 <= label < len(data.classes) else ""


def _label_issues(data: QualityData, folds: int, seed: int, method: str
                  ) -> tuple[list[LabelIssue], np.ndarray | None, str | None]:
    if data.labels is None or len(data.classes) < 2:
        return [], None, None
    labels = np.asarray(data.labels)
    known = np.flatnonzero(labels >= 0)
    counts = np.bincount(labels[known], minlength=len(data.classes))
    if (counts[counts > 0] < 2).any() or (counts > 0).sum() < 2:
        return [], None, ("label check skipped: it needs at least 2 classes with 2 or more items each "
                          f"(counts {counts.tolist()})")
    if data.pred_probs is not None:
        probs, how = np.asarray(data.pred_probs)[known], "out-of-fold probabilities given by the task"
    elif data.embeddings is not None:
        probs = out_of_fold_probabilities(data.embeddings[known], labels[known], len(data.classes), folds, seed)
        how = (f"out-of-fold probabilities of a logistic regression on the embeddings, "
               f"{fold_count(labels[known], folds)} folds")
    else:
        return [], None, "label check skipped: the task gave neither embeddings nor out-of-fold probabilities"
    issues, scores = rank_label_issues(labels[known], probs, method)
    issues = [LabelIssue(int(known[i.index]), i.given, i.suggested, i.score, i.flagged) for i in issues]
    quality = np.full(len(labels), np.nan)
    quality[known] = scores
    return issues, quality, f"label check: cleanlab {method} on {how}"


def _image_findings(data: QualityData) -> list[Finding]:
    facts = data.image_facts
    assert facts is not None
    names = data.names
    findings = []
    for key, kind, what, action in (
        ("size", "size_mix", "image sizes", "Resizing to one input size stretches or shrinks some parts more than "
         "others: crop or rescale at the source so a part spans the same pixels, or train with --keep-aspect true"),
        ("bit_depth", "bit_depth_mix", "bit depths / formats", "Mixed 8/16-bit images are scaled by different "
         "ranges: export all images from the camera the same way"),
        ("colour", "colour_mix", "colour kinds (gray / colour / palette)", "Gray images are replicated to three "
         "channels: if the line camera is gray, convert the colour ones (or the other way round)"),
    ):
        values = [v for v in facts.categorical[key] if v]
        kinds = {v: values.count(v) for v in sorted(set(values))}
        if len(kinds) > 1:
            common = max(kinds, key=kinds.get)  # type: ignore[arg-type]
            odd = [{"name": n, key: v} for n, v in zip(names, facts.categorical[key]) if v and v != common]
            findings.append(Finding(kind, "info", f"{len(kinds)} {what}: " + ", ".join(
                f"{v} ({n})" for v, n in sorted(kinds.items(), key=lambda x: -x[1])[:6]), action, odd))
    groups = _label_groups(data)
    sharp = facts.numeric["sharpness"]
    blurred = _group_outliers(np.log1p(sharp), groups, "low")
    if len(blurred):
        findings.append(Finding("blur", "warning", f"{len(blurred)} image(s) much blurrier than the rest of their "
                                "class (sharpness, the variance of the Laplacian, below the class median by > 3.5 "
                                "robust z)", "Check focus and motion blur at the camera; remove images where the "
                                "defect cannot be seen", [{"name": names[i], "class": _class(data, i), "sharpness":
                                                           round(float(sharp[i]), 2)} for i in blurred]))
    bright = facts.numeric["brightness"]
    clipped = facts.numeric["dark_fraction"] + facts.numeric["bright_fraction"]
    odd = sorted(set(_group_outliers(bright, groups, "both").tolist())
                 | set(np.flatnonzero(clipped > EXPOSURE_CLIPPED).tolist()), key=lambda i: -clipped[i])
    if odd:
        findings.append(Finding("exposure", "warning", f"{len(odd)} image(s) under- or over-exposed (mean gray level "
                                "far from their class's median by > 3.5 robust z, or more than "
                                f"{EXPOSURE_CLIPPED:.0%} of pixels clipped at black or white)", "Fix lighting and "
                                "exposure at the camera; keep such images only if the line really produces them",
                                [{"name": names[i], "class": _class(data, i), "brightness": round(float(bright[i]), 1),
                                  "clipped_fraction": round(float(clipped[i]), 4)} for i in odd]))
    return findings


def _label_groups(data: QualityData) -> list[np.ndarray]:
    """Items per class (blur and exposure are judged within a class: a dark class is no exposure problem), or all
    items together without labels."""
    if data.labels is None or not data.classes:
        return [np.arange(len(data.names))]
    labels = np.asarray(data.labels)
    return [np.flatnonzero(labels == k) for k in np.unique(labels)]


def _group_outliers(values: np.ndarray, groups: list[np.ndarray], side: str) -> np.ndarray:
    hits = [g[outliers(values[g], side)] for g in groups if len(g) >= 8]
    return np.concatenate(hits) if hits else np.zeros(0, dtype=np.int64)


def _table_findings(data: QualityData) -> list[Finding]:
    frame = data.table
    findings = []
    issues = column_issues(frame, data.time_column)
    actions = {
        "constant": ("constant_columns", "warning", "Drop them: a column with one value carries no information "
                     "(or the sensor is stuck: check it)"),
        "mostly_missing": ("mostly_missing_columns", "warning", "Drop them, or fix the logging; imputing more than "
                           "half of a column invents the data"),
        "drifting": ("drifting_columns", "info", "A sensor that drifts over the records (calibration, wear, a "
                     "process change) moves the inputs away from what the model learnt: check it, recalibrate, or "
                     "train on recent data and monitor it"),
    }
    for kind, (check, severity, action) in actions.items():
        hits = [i for i in issues if i.kind == kind]
        if hits:
            findings.append(Finding(check, severity, f"{len(hits)} {kind.replace('_', '-')} column(s): "
                                    + ", ".join(h.column for h in hits[:8]), action,
                                    [{"column": h.column, **h.detail} for h in hits]))
    value_columns = [c for c in frame.columns if c != data.time_column]
    dup, conflicting = duplicate_rows(frame[value_columns], data.labels)
    if dup:
        findings.append(Finding("duplicate_rows", "warning", f"{sum(len(g) for g in dup)} records in {len(dup)} "
                                "group(s) of identical rows", "Remove repeated records (a logger writing twice, "
                                "a merged export); if they are real repeats, split them into the same fold",
                                [{"rows": [data.names[i] for i in g]} for g in dup]))
    if conflicting:
        findings.append(Finding("conflicting_rows", "error", f"{len(conflicting)} group(s) of identical rows with "
                                "different labels", "Check the labels of these records: the same inputs cannot "
                                "have two outcomes unless a measured cause is missing from the table",
                                [{"rows": [data.names[i] for i in g],
                                  "labels": [_class(data, i) for i in g]} for g in conflicting]))
    return findings

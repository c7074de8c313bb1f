"""What to label next: rank unlabelled items by the value of labelling them, and read back what a labeller wrote.

Selection follows diverse mini-batch active learning (Zhdanov 2019): keep the ``prefilter`` x n most uncertain
items (margin between the two most probable classes), cluster them into n groups by their embeddings (k-means
weighted by uncertainty), and take from each group the item nearest its centre. The n items are then uncertain
*and* unlike each other, so a batch is not spent on near-copies of one confusing part.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shopfloor.core.errors import DataError

from .duplicates import centred_embeddings

LABEL_COLUMNS = ("path", "label")


def margin_uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - (p_top1 - p_top2) per row: 1 when the two best classes tie, 0 when the model is sure."""
    p = np.sort(np.asarray(probs, dtype=np.float64), axis=1)
    if p.shape[1] < 2:
        return np.zeros(len(p))
    return 1.0 - (p[:, -1] - p[:, -2])


def select_for_labelling(probs: np.ndarray, embeddings: np.ndarray | None, n: int, prefilter: int = 10,
                         seed: int = 0, diverse: bool = True) -> np.ndarray:
    """Indices of the ``n`` items most worth labelling, most uncertain first (see the module docstring). Without
    embeddings, or with ``diverse=False``: the ``n`` most uncertain."""
    uncertainty = margin_uncertainty(probs)
    n = min(int(n), len(uncertainty))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-uncertainty, kind="stable")
    if not diverse or embeddings is None or n == len(uncertainty):
        return order[:n]
    from sklearn.cluster import KMeans

    candidates = order[: min(len(order), max(n, prefilter * n))]
    x = centred_embeddings(np.asarray(embeddings)[candidates])
    weights = uncertainty[candidates] + 1e-6
    km = KMeans(n_clusters=n, n_init=1, random_state=seed).fit(x, sample_weight=weights)
    chosen = []
    for cluster in range(n):
        members = np.flatnonzero(km.labels_ == cluster)
        if not len(members):
            continue
        dist = np.linalg.norm(x[members] - km.cluster_centers_[cluster], axis=1)
        chosen.append(candidates[members[np.argmin(dist)]])
    if len(chosen) < n:  # empty clusters: fill with the next most uncertain
        rest = [i for i in candidates if i not in set(chosen)]
        chosen += rest[: n - len(chosen)]
    chosen = np.asarray(chosen, dtype=np.int64)
    return chosen[np.argsort(-uncertainty[chosen], kind="stable")]


@dataclass(frozen=True)
class NewLabel:
    """One row a labeller filled in: the item (a path) and its class."""

    path: Path
    label: str


def read_label_csv(path: str | Path) -> list[NewLabel]:
    """The labelled rows of a CSV with ``path`` and ``label`` columns (what `shopfloor suggest` writes, filled in).
    Rows left without a label are skipped; relative paths are taken from the CSV's folder. Missing columns, files
    that do not exist and one path given two labels are refused, all listed together."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels file {path} does not exist; pass the CSV written by `shopfloor suggest` with its "
                        "label column filled in")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in LABEL_COLUMNS if c not in columns]
        if missing:
            raise DataError(f"{path} has columns {columns}; expected at least {list(LABEL_COLUMNS)} (missing "
                            f"{missing}). Use the CSV written by `shopfloor suggest`, or write path,label rows")
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    problems: list[str] = []
    given: dict[Path, str] = {}
    for line, row in enumerate(rows, start=2):
        if not row["label"]:
            continue
        item = Path(row["path"])
        item = item if item.is_absolute() else path.parent / item
        if not item.is_file():
            problems.append(f"line {line}: {row['path']} does not exist")
        elif item in given and given[item] != row["label"]:
            problems.append(f"line {line}: {row['path']} is labelled both {given[item]!r} and {row['label']!r}")
        given[item] = row["label"]
    if problems:
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise DataError(f"{len(problems)} problem(s) in {path}:\n  " + "\n  ".join(problems[:10]) + more
                        + "\nFix the rows (paths are relative to the CSV's folder) and try again")
    if not given:
        raise DataError(f"{path} has no labelled rows ({len(rows)} rows, every label empty): fill in the label "
                        "column first")
    return [NewLabel(p, label) for p, label in given.items()]

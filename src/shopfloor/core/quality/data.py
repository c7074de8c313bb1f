"""What a data-quality check runs on: :class:`QualityData`, filled by an application (images, tables) and read by
the generic checks, plus the per-image facts and the embedding cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

NUMERIC_IMAGE_FACTS = ("sharpness", "brightness", "contrast", "dark_fraction", "bright_fraction", "colourfulness")
CATEGORICAL_IMAGE_FACTS = ("size", "bit_depth", "colour")


@dataclass
class ImageFacts:
    """Per-image facts, one entry per item: content hashes (``digest`` of the file bytes, ``pixel_hash`` of the
    decoded 8-bit pixels), the categorical ``size`` / ``bit_depth`` / ``colour`` and the numeric
    :data:`NUMERIC_IMAGE_FACTS` (sharpness: variance of the Laplacian; brightness/contrast: mean/std gray level;
    dark/bright fraction: share of clipped pixels; colourfulness: mean difference between channels)."""

    digest: list[str]
    pixel_hash: list[str]
    categorical: dict[str, list[str]]
    numeric: dict[str, np.ndarray]

    @classmethod
    def empty(cls, n: int) -> "ImageFacts":
        """Facts for ``n`` items, to be filled with :meth:`set`."""
        return cls([""] * n, [""] * n, {k: [""] * n for k in CATEGORICAL_IMAGE_FACTS},
                   {k: np.full(n, np.nan) for k in NUMERIC_IMAGE_FACTS})

    def set(self, i: int, digest: str, pixel_hash: str, **values: Any) -> None:
        """Fill item ``i``."""
        self.digest[i], self.pixel_hash[i] = digest, pixel_hash
        for key, value in values.items():
            if key in self.categorical:
                self.categorical[key][i] = str(value)
            else:
                self.numeric[key][i] = float(value)


@dataclass
class QualityData:
    """One data set as the generic checks see it (see :mod:`shopfloor.core.quality`).

    ``names``: one per item (a file path, or ``row 12``); ``splits``: the split of each item (``all`` when the data
    has none; ``train``/``test``: leakage between them is looked for); ``labels``: class index per item (-1:
    unlabelled) into ``classes``; ``embeddings``: one vector per item (near duplicates, out-of-fold
    probabilities); ``signatures``: a small picture of each item (a gray thumbnail), compared by correlation for
    near duplicates; ``pred_probs``: out-of-fold class probabilities when the application has its own (else they
    are cross-fitted on the embeddings); ``image_facts`` for images; ``table`` (a pandas DataFrame of the input
    columns, in record order) for tables and sensor data, with ``time_column`` when one orders the records;
    ``picture``: name -> small RGB array for the report; ``notes``: how the data was read."""

    kind: str
    names: list[str]
    splits: list[str] | None = None
    labels: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    embeddings: np.ndarray | None = None
    signatures: np.ndarray | None = None
    pred_probs: np.ndarray | None = None
    image_facts: ImageFacts | None = None
    table: Any = None
    time_column: str | None = None
    picture: Callable[[str], np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.names)
        if self.splits is None:
            self.splits = ["all"] * n
        for what, value in (("splits", self.splits), ("labels", self.labels), ("embeddings", self.embeddings), ("signatures", self.signatures),
                            ("pred_probs", self.pred_probs)):
            if value is not None and len(value) != n:
                raise ValueError(f"QualityData.{what} has {len(value)} entries for {n} items")


def _cache_file(cache_dir: str | Path, model_name: str) -> Path:
    return Path(cache_dir) / f"embeddings-{model_name}.npz"


def read_embedding_cache(cache_dir: str | Path | None, model_name: str) -> dict[str, np.ndarray]:
    """Embeddings kept by :func:`write_embedding_cache`: content digest -> vector (empty when none or unreadable)."""
    if not cache_dir:
        return {}
    path = _cache_file(cache_dir, model_name)
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as stored:
            return dict(zip(stored["keys"].tolist(), stored["vectors"]))
    except (OSError, ValueError, KeyError):
        return {}  # a damaged cache is recomputed, never trusted


def write_embedding_cache(cache_dir: str | Path, model_name: str, cache: dict[str, np.ndarray]) -> Path:
    """Keep embeddings by content digest under ``cache_dir`` (one .npz per embedding model)."""
    path = _cache_file(cache_dir, model_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(cache)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, keys=np.asarray(keys), vectors=np.stack([cache[k] for k in keys]).astype(np.float32))
    tmp.replace(path)
    return path

"""Exact and near duplicates: groups of identical content keys, and nearest neighbours (faiss) of two descriptors.

- ``embeddings`` (what the content is: pooled backbone features), compared by cosine similarity after centring;
- ``signatures`` (what the picture looks like: a small gray thumbnail, zero mean, unit length), by correlation.

A pair is a near duplicate when its embeddings are nearly the same (>= ``threshold``), or when its thumbnails
correlate >= ``signature_threshold`` and the embeddings agree at least loosely (>= ``SIGNATURE_EMBEDDING_FLOOR``).
Measured on NEU (see the README's check section): re-encoding a texture as JPEG or halving its resolution moves the
backbone features of fine textures a lot (cosine down to 0.4) while their thumbnails stay > 0.99; two different
smooth NEU images can also share a thumbnail (> 0.99) but not their features. Pairs in two different splits
(``train`` and ``test``) are leakage: the test score counts them as seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

NEAR_DUPLICATE_SIMILARITY = 0.95  # cosine similarity of centred embeddings (see the module docstring)
SIGNATURE_SIMILARITY = 0.995  # correlation of gray thumbnails
SIGNATURE_EMBEDDING_FLOOR = 0.5  # ... together with at least this embedding similarity


@dataclass(frozen=True)
class DuplicatePair:
    """Items ``a`` < ``b`` (indices) that are the same content (``exact``) or look the same (``similarity``)."""

    a: int
    b: int
    similarity: float
    exact: bool


def exact_pairs(keys: Sequence[str]) -> list[DuplicatePair]:
    """Every pair of items with the same non-empty content key (file digest or decoded-pixel hash)."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key:
            groups.setdefault(key, []).append(i)
    return [DuplicatePair(g[i], g[j], 1.0, True) for g in groups.values() if len(g) > 1
            for i in range(len(g)) for j in range(i + 1, len(g))]


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32 contiguous (what faiss takes)."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def centred_embeddings(vectors: np.ndarray) -> np.ndarray:
    """Embeddings minus their mean, unit length: cosine similarity then compares what differs between items
    rather than what every image of the set shares (pooled CNN features are all positive)."""
    x = np.asarray(vectors, dtype=np.float32)
    return normalise_rows(x - x.mean(axis=0, keepdims=True))


def nearest_neighbours(vectors: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, indices) of each item's ``k`` nearest other items by cosine similarity (exact search with
    faiss on unit vectors; the item itself is left out)."""
    import faiss

    x = normalise_rows(vectors)
    k = min(k, len(x) - 1)
    if k < 1:
        return np.zeros((len(x), 0), np.float32), np.zeros((len(x), 0), np.int64)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, idx = index.search(x, k + 1)
    keep = idx != np.arange(len(x))[:, None]
    # drop the item itself (normally the first hit; ties with exact copies can reorder it)
    sims = np.stack([row[m][:k] for row, m in zip(sims, keep)])
    idx = np.stack([row[m][:k] for row, m in zip(idx, keep)])
    return sims, idx


def _candidate_pairs(vectors: np.ndarray, threshold: float, k: int) -> dict[tuple[int, int], float]:
    sims, idx = nearest_neighbours(vectors, k)
    found: dict[tuple[int, int], float] = {}
    for i in range(len(idx)):
        for s, j in zip(sims[i], idx[i]):
            if j >= 0 and s >= threshold:
                key = (min(i, int(j)), max(i, int(j)))
                found[key] = max(found.get(key, -1.0), float(s))
    return found


def near_pairs(embeddings: np.ndarray | None, signatures: np.ndarray | None = None,
               threshold: float = NEAR_DUPLICATE_SIMILARITY, signature_threshold: float = SIGNATURE_SIMILARITY,
               k: int = 10) -> list[DuplicatePair]:
    """Near-duplicate pairs by the rule of the module docstring, among each item's ``k`` nearest neighbours by
    either descriptor; ``similarity`` is the embedding similarity (or the thumbnail correlation without
    embeddings), most similar first."""
    n = len(embeddings) if embeddings is not None else len(signatures) if signatures is not None else 0
    if n < 2:
        return []
    emb = centred_embeddings(embeddings) if embeddings is not None else None
    sig = normalise_rows(signatures) if signatures is not None else None
    found: dict[tuple[int, int], float] = {}
    if emb is not None:
        found.update(_candidate_pairs(emb, threshold, k))
    if sig is not None:
        for (a, b), s in _candidate_pairs(sig, signature_threshold, k).items():
            if (a, b) in found:
                continue
            if emb is None:
                found[(a, b)] = s
            elif float(emb[a] @ emb[b]) >= SIGNATURE_EMBEDDING_FLOOR:
                found[(a, b)] = float(emb[a] @ emb[b])
    pairs = [DuplicatePair(a, b, min(s, 1.0), False) for (a, b), s in found.items()]
    return sorted(pairs, key=lambda p: (-p.similarity, p.a, p.b))


def find_duplicates(keys: Sequence[str] | None, embeddings: np.ndarray | None,
                    signatures: np.ndarray | None = None) -> list[DuplicatePair]:
    """Exact pairs (same key) and near pairs (:func:`near_pairs`), each pair once: exact ones first."""
    exact = exact_pairs(keys) if keys is not None else []
    seen = {(p.a, p.b) for p in exact}
    return exact + [p for p in near_pairs(embeddings, signatures) if (p.a, p.b) not in seen]


def duplicate_groups(n: int, pairs: Sequence[DuplicatePair]) -> list[list[int]]:
    """Connected groups of items linked by ``pairs`` (union-find), largest first."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for p in pairs:
        parent[root(p.a)] = root(p.b)
    groups: dict[int, list[int]] = {}
    for p in pairs:
        for i in (p.a, p.b):
            members = groups.setdefault(root(i), [])
            if i not in members:
                members.append(i)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))

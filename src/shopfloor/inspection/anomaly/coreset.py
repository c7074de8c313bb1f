"""Greedy (k-center) coreset selection with bounded memory and time.

Distances are computed on a fixed Gaussian random projection of the features (32 dimensions by
default: Johnson-Lindenstrauss keeps the geometry well enough for selection and it is several times
faster than the full dimension) and in chunks, so the extra memory beyond the features themselves is
one float per point plus one chunk of projected rows.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm


def random_projection(features: torch.Tensor, dim: int, seed: int = 0, chunk: int = 65536) -> torch.Tensor:
    """Project ``[N, C]`` features to ``[N, dim]`` with a seeded Gaussian matrix (no-op if ``dim >= C``)."""
    n, c = features.shape
    if dim >= c:
        return features.float()
    gen = torch.Generator().manual_seed(seed)
    matrix = torch.randn(c, dim, generator=gen) / dim ** 0.5
    out = torch.empty(n, dim)
    for start in range(0, n, chunk):
        out[start:start + chunk] = features[start:start + chunk].float() @ matrix
    return out


def greedy_coreset(features: torch.Tensor | np.ndarray, size: int, projection_dim: int = 32, seed: int = 0,
                   chunk: int = 262144, progress: bool = False) -> torch.Tensor:
    """Indices of ``size`` points chosen by greedy farthest-point selection.

    Starts from a seeded random point, then repeatedly adds the point farthest from the selected
    set. ``features``: ``[N, C]``; returns a LongTensor ``[size]`` of unique indices.
    """
    feats = torch.as_tensor(features)
    n = feats.shape[0]
    size = int(min(max(size, 1), n))
    if size == n:
        return torch.arange(n)
    proj = random_projection(feats, projection_dim, seed=seed)
    sq = torch.empty(n)
    for start in range(0, n, chunk):
        block = proj[start:start + chunk]
        sq[start:start + chunk] = (block * block).sum(dim=1)
    min_dist = torch.full((n,), float("inf"))
    selected = torch.empty(size, dtype=torch.long)
    current = int(torch.randint(n, (1,), generator=torch.Generator().manual_seed(seed)).item())
    with torch.no_grad():
        for i in tqdm(range(size), desc="coreset", disable=not progress, leave=False, mininterval=1.0):
            selected[i] = current
            centre = proj[current]
            centre_sq = sq[current]
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                d = sq[start:stop] - 2.0 * (proj[start:stop] @ centre) + centre_sq
                torch.minimum(min_dist[start:stop], d, out=min_dist[start:stop])
            current = int(torch.argmax(min_dist).item())
    return selected

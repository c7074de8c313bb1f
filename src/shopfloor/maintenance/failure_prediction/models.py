"""Models for tables: the in-graph feature step (derived features, scaling, one-hot) and an MLP."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

_OPS = {"*": 0, "/": 1, "-": 2, "+": 3}


class TabularFeatures(nn.Module):
    """Raw numeric values and category indices -> the MLP's input vector, inside the exported graph.

    Derived features ``left op right`` are computed from the raw numeric columns; every numeric
    feature is standardised with the fitted ``mean``/``std`` buffers and, with ``n_bins`` > 0, also
    encoded piecewise-linearly (Gorishniy, Rubachev & Babenko 2022, "On embeddings for numerical
    features in tabular deep learning"): component t is ``clamp((x - left_t) / width_t, 0, 1)``.
    With quantile bins that is the paper's PLE-Q. With tree bins (in the spirit of its PLE-T) the split
    points of small decision trees fitted to the targets (:func:`tree_splits`; the ``n_bins`` with the
    largest impurity decrease per feature) become near-steps, so the MLP gets the sharp, axis-aligned
    limits trees find, and combines them smoothly. Each categorical column is one-hot encoded.

    Numeric input, derived features, scaling and bins are computed in float64, and tree splits sit
    midway between adjacent distinct training values with a step narrower than their gap: process
    limits are often stated on derived quantities (``process − air < 8.6 K``) and in float32 the
    difference of two temperatures near 300 K lands on the wrong side of such a limit for a visible
    share of records. Only the encoded features are cast to float32 for the MLP.

    ``crosses`` (feature index, categorical column) pairs add one feature per category: the feature
    where the record has that category, else 0 (a feature cross as in wide-and-deep models), so a
    threshold that depends on the category (overstrain limits per product quality) gets its own bins.
    ``ordinal_crosses`` pairs with an ordered categorical column add the feature where the record's
    category is at least the k-th (k = 1 .. size − 2; the top one is already a plain cross), so records
    of a rare upper category share a limit learned mostly from the one below (the one or two type-H
    overstrain failures of AI4I are then caught by the limit the type-M ones teach).
    Feature indices count raw numeric columns first, then derived features.
    """

    def __init__(self, n_numeric: int, derived: Sequence[tuple[int, str, int]] = (),
                 category_sizes: Sequence[int] = (), n_bins: int = 0, crosses: Sequence[tuple[int, int]] = (),
                 ordinal_crosses: Sequence[tuple[int, int]] = ()):
        super().__init__()
        self.category_sizes = list(category_sizes)
        self.derived = [(int(a), _OPS[op], int(b)) for a, op, b in derived]
        self.crosses = [(int(f), int(c)) for f, c in crosses]
        self.ordinal_crosses = [(int(f), int(c)) for f, c in ordinal_crosses]
        n_features = (n_numeric + len(derived) + sum(self.category_sizes[c] for _, c in self.crosses)
                      + sum(max(self.category_sizes[c] - 2, 0) for _, c in self.ordinal_crosses))
        self.n_bins = n_bins
        self.n_numeric = n_numeric
        self.register_buffer("mean", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("std", torch.ones(n_features, dtype=torch.float64))
        self.register_buffer("bin_left", torch.zeros(n_features, n_bins, dtype=torch.float64))
        self.register_buffer("bin_width", torch.ones(n_features, n_bins, dtype=torch.float64))
        for j, size in enumerate(self.category_sizes):
            self.register_buffer(f"categories_{j}", torch.arange(size), persistent=False)

    @property
    def out_features(self) -> int:
        return len(self.mean) * (1 + self.n_bins) + sum(self.category_sizes)

    def unscaled(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Raw numeric columns, derived features and crosses, before scaling (float64)."""
        numeric = numeric.to(torch.float64)
        columns = [numeric]
        for a, op, b in self.derived:
            left, right = numeric[:, a:a + 1], numeric[:, b:b + 1]
            if op == 0:
                columns.append(left * right)
            elif op == 1:
                columns.append(left / right)
            elif op == 2:
                columns.append(left - right)
            else:
                columns.append(left + right)
        values = torch.cat(columns, dim=1)
        crossed = [values]
        for f, c in self.crosses:
            crossed.append(values[:, f:f + 1] * self.one_hot(categorical, c))
        for f, c in self.ordinal_crosses:
            for k in range(1, self.category_sizes[c] - 1):
                crossed.append(values[:, f:f + 1] * (categorical[:, c:c + 1] >= k).to(torch.float64))
        return torch.cat(crossed, dim=1)

    def one_hot(self, categorical: torch.Tensor, column: int) -> torch.Tensor:
        known = getattr(self, f"categories_{column}")
        return (categorical[:, column:column + 1] == known.unsqueeze(0)).to(torch.float64)

    def fit(self, numeric: torch.Tensor, categorical: torch.Tensor, targets: torch.Tensor | None = None,
            seed: int = 0) -> None:
        """Set the scaling and bin buffers from training values (tree bins when ``targets`` are given)."""
        values = self.unscaled(numeric, categorical)
        self.mean.copy_(values.mean(dim=0))
        std = values.std(dim=0)
        self.std.copy_(torch.where(std > 1e-12, std, torch.ones_like(std)))  # a constant feature stays unscaled
        if not self.n_bins:
            return
        if targets is None:
            edges = torch.quantile(values, torch.linspace(0, 1, self.n_bins + 1, dtype=torch.float64), dim=0).T
            self.bin_left.copy_(edges[:, :-1])
            self.bin_width.copy_((edges[:, 1:] - edges[:, :-1]).clamp_min(1e-12))
            return
        x, y = values.numpy(), targets.numpy().reshape(len(values), -1)
        own_limits = range(self.n_numeric, x.shape[1])  # derived features and crosses
        for j, (splits, gains) in enumerate(tree_splits(x, y, self.n_bins, seed, own_limits)):
            keep = np.sort(splits[np.argsort(-gains)[: self.n_bins]])
            distinct = np.unique(x[:, j])
            upper = distinct[np.minimum(np.searchsorted(distinct, keep, side="right"), len(distinct) - 1)]
            lower = distinct[np.maximum(np.searchsorted(distinct, keep, side="right") - 1, 0)]
            half = np.minimum(0.01 * float(self.std[j]), 0.25 * (upper - lower))
            left = np.full(self.n_bins, 1e300)
            width = np.ones(self.n_bins)
            left[: len(keep)] = keep - half
            width[: len(keep)] = np.maximum(2 * half, 1e-300)
            self.bin_left[j] = torch.from_numpy(left)
            self.bin_width[j] = torch.from_numpy(width)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        values = self.unscaled(numeric, categorical)
        parts = [(values - self.mean) / self.std]
        if self.n_bins:
            position = (values.unsqueeze(2) - self.bin_left) / self.bin_width
            parts.append(torch.minimum(torch.relu(position), torch.ones_like(position)).flatten(1))
        parts += [self.one_hot(categorical, j) for j in range(len(self.category_sizes))]
        return torch.cat(parts, dim=1).to(torch.float32)


def tree_splits(x: np.ndarray, y: np.ndarray, max_leaves: int, seed: int = 0,
                own_limits: Sequence[int] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per feature, the split points (and their impurity decrease) of decision trees fitted per target column.

    Two kinds of tree per target: one over all features, so conditional limits (speed < 1380 rpm *when*
    the temperature gap is small) are found, and, for the features in ``own_limits`` (default: all),
    one per feature alone with its two strongest splits (as in the paper's PLE-T), so a limit that the
    joint tree reaches through another feature is still found on this one (the overstrain limit type M
    and H records share, shadowed by the type-M cross). :class:`TabularFeatures` gives derived features
    and crosses their own limits, not raw columns: a raw limit on its own (torque < 13 Nm) is only a
    proxy of the derived one (power < 3500 W) and generalises worse. Trees compute in
    float32, so they are fitted on the ranks of each feature's distinct float64 values, and a split
    between ranks r and r+1 is mapped back to the midpoint of those two values.
    """
    from sklearn.tree import DecisionTreeClassifier

    distinct = [np.unique(x[:, j]) for j in range(x.shape[1])]
    ranks = np.stack([np.searchsorted(d, x[:, j]) for j, d in enumerate(distinct)], axis=1).astype(np.float32)
    found: list[dict[float, float]] = [{} for _ in distinct]

    def collect(tree: DecisionTreeClassifier, columns: Sequence[int]) -> None:
        t = tree.tree_
        for node in np.flatnonzero(t.feature >= 0):
            j, r = columns[int(t.feature[node])], int(np.floor(t.threshold[node]))
            d = distinct[j]
            split = float((d[r] + d[min(r + 1, len(d) - 1)]) / 2)
            left, right = t.children_left[node], t.children_right[node]
            gain = (t.weighted_n_node_samples[node] * t.impurity[node]
                    - t.weighted_n_node_samples[left] * t.impurity[left]
                    - t.weighted_n_node_samples[right] * t.impurity[right])
            found[j][split] = found[j].get(split, 0.0) + float(gain)

    for k in range(y.shape[1]):
        if len(np.unique(y[:, k])) < 2:
            continue
        options = dict(max_leaf_nodes=max_leaves + 1, min_samples_leaf=max(1, len(x) // 2000),
                       class_weight="balanced", random_state=seed)
        collect(DecisionTreeClassifier(**options).fit(ranks, y[:, k]), range(x.shape[1]))
        for j in range(x.shape[1]) if own_limits is None else own_limits:
            if len(distinct[j]) > 1:  # the feature's two strongest limits on its own
                collect(DecisionTreeClassifier(**{**options, "max_leaf_nodes": 3}).fit(ranks[:, j:j + 1], y[:, k]), [j])
    return [(np.array(list(f)), np.array(list(f.values()))) for f in found]


class TabularMLP(nn.Module):
    """Plain MLP: ``hidden`` layers of Linear -> SiLU -> Dropout, then a linear output."""

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (128, 128, 64),
                 dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.SiLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TabularNet(nn.Module):
    """Feature step + MLP: (numeric, categorical) -> one logit per output.

    With ``wide``, a linear layer on the same encoded features is added to the MLP's logits (the "wide"
    part of wide-and-deep models, Cheng et al. 2016). On near-step bin features, a limit (``power <
    3500 W``), an OR of limits or an AND of two is one weight per step plus a bias, which a linear
    layer learns from a handful of records; the MLP adds the smooth part. It starts at zero.
    """

    def __init__(self, features: TabularFeatures, n_outputs: int, hidden: Sequence[int] = (128, 128),
                 dropout: float = 0.1, wide: bool = False):
        super().__init__()
        self.features = features
        self.mlp = TabularMLP(features.out_features, n_outputs, hidden, dropout)
        self.wide = nn.Linear(features.out_features, n_outputs) if wide else None
        if self.wide is not None:
            nn.init.zeros_(self.wide.weight)
            nn.init.zeros_(self.wide.bias)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        encoded = self.features(numeric, categorical)
        logits = self.mlp(encoded)
        return logits + self.wide(encoded) if self.wide is not None else logits


class PackedInput(nn.Module):
    """Training view of a :class:`TabularNet`: one float tensor [numeric | categorical codes] in."""

    def __init__(self, net: TabularNet, n_numeric: int):
        super().__init__()
        self.net = net
        self.n_numeric = n_numeric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, : self.n_numeric].double(), x[:, self.n_numeric:].round().long())


class FailureEnsemble(nn.Module):
    """The exported failure predictor: the members' combined probabilities and the thresholded alarms.

    Outputs: failure probability (batch,), mode probabilities (batch, modes), failure alarm
    (batch,) and mode alarms (batch, modes) as int64 0/1. Output 0 is the failure target; the
    failure alarm also fires when a mode alarm of a mode flagged in ``mode_in_alarm`` fires.
    ``thresholds`` and ``mode_in_alarm`` are chosen on validation data and stored as buffers.
    """

    def __init__(self, members: Sequence[TabularNet], n_outputs: int):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.n_modes = max(n_outputs - 1, 0)
        self.register_buffer("thresholds", torch.full((n_outputs,), 0.5))
        self.register_buffer("mode_in_alarm", torch.zeros(max(n_outputs - 1, 0)))

    def probabilities(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Sigmoid of the members' mean logit: as sharp as one member where they agree, so thresholds
        chosen on out-of-fold estimates (the mean logit of the members that held a record out) carry
        over to the ensemble."""
        return torch.sigmoid(torch.stack([m(numeric, categorical) for m in self.members]).mean(dim=0))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor):
        probabilities = self.probabilities(numeric, categorical)
        alarms = (probabilities >= self.thresholds).to(torch.int64)
        modes = alarms[:, 1:]
        from_modes = (modes * self.mode_in_alarm.to(torch.int64)).amax(dim=1, keepdim=True) if self.n_modes else alarms[:, :1]
        failure = torch.maximum(alarms[:, 0], from_modes[:, 0])
        return probabilities[:, 0], probabilities[:, 1:], failure, modes

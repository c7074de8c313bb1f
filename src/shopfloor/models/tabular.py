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
    With quantile bins that is the paper's PLE-Q. With tree bins (PLE-T) the split points of a small
    decision tree fitted per feature to the targets become near-steps (width 1% of the feature's
    standard deviation), so the MLP gets the sharp, axis-aligned thresholds trees find, and combines
    them smoothly. Each categorical column is one-hot encoded.

    ``crosses`` (feature index, categorical column) pairs add one feature per category: the feature
    where the record has that category, else 0 (a feature cross as in wide-and-deep models), so a
    threshold that depends on the category (overstrain limits per product quality) gets its own bins.
    Feature indices count raw numeric columns first, then derived features.
    """

    def __init__(self, n_numeric: int, derived: Sequence[tuple[int, str, int]] = (),
                 category_sizes: Sequence[int] = (), n_bins: int = 0, crosses: Sequence[tuple[int, int]] = ()):
        super().__init__()
        self.category_sizes = list(category_sizes)
        self.derived = [(int(a), _OPS[op], int(b)) for a, op, b in derived]
        self.crosses = [(int(f), int(c)) for f, c in crosses]
        n_features = n_numeric + len(derived) + sum(self.category_sizes[c] for _, c in self.crosses)
        self.n_bins = n_bins
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("bin_left", torch.zeros(n_features, n_bins))
        self.register_buffer("bin_width", torch.ones(n_features, n_bins))
        for j, size in enumerate(self.category_sizes):
            self.register_buffer(f"categories_{j}", torch.arange(size), persistent=False)

    @property
    def out_features(self) -> int:
        return len(self.mean) * (1 + self.n_bins) + sum(self.category_sizes)

    def unscaled(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Raw numeric columns, derived features and crosses, before scaling."""
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
        return torch.cat(crossed, dim=1)

    def one_hot(self, categorical: torch.Tensor, column: int) -> torch.Tensor:
        known = getattr(self, f"categories_{column}")
        return (categorical[:, column:column + 1] == known.unsqueeze(0)).float()

    def fit(self, numeric: torch.Tensor, categorical: torch.Tensor, targets: torch.Tensor | None = None,
            seed: int = 0) -> None:
        """Set the scaling and bin buffers from training values (tree bins when ``targets`` are given)."""
        values = self.unscaled(numeric, categorical).double()
        self.mean.copy_(values.mean(dim=0).float())
        self.std.copy_(values.std(dim=0).clamp_min(1e-8).float())
        if not self.n_bins:
            return
        if targets is None:
            edges = torch.quantile(values, torch.linspace(0, 1, self.n_bins + 1, dtype=torch.float64), dim=0).T
            self.bin_left.copy_(edges[:, :-1].float())
            self.bin_width.copy_((edges[:, 1:] - edges[:, :-1]).clamp_min(1e-6).float())
            return
        from sklearn.tree import DecisionTreeClassifier

        x, y = values.numpy(), targets.numpy()
        for j in range(x.shape[1]):
            tree = DecisionTreeClassifier(max_leaf_nodes=self.n_bins + 1, min_samples_leaf=max(1, len(x) // 2000),
                                          random_state=seed)
            tree.fit(x[:, j:j + 1], y)
            splits = np.unique(tree.tree_.threshold[tree.tree_.feature >= 0])[: self.n_bins]
            half = 0.01 * float(self.std[j])
            left = np.full(self.n_bins, 1e30)
            left[: len(splits)] = splits - half
            self.bin_left[j] = torch.from_numpy(left).float()
            self.bin_width[j] = 2 * half

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        values = self.unscaled(numeric, categorical)
        parts = [(values - self.mean) / self.std]
        if self.n_bins:
            position = (values.unsqueeze(2) - self.bin_left) / self.bin_width
            parts.append(position.clamp(0.0, 1.0).flatten(1))
        parts += [self.one_hot(categorical, j) for j in range(len(self.category_sizes))]
        return torch.cat(parts, dim=1)


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
    """Feature step + MLP: (numeric, categorical) -> one logit per output."""

    def __init__(self, features: TabularFeatures, n_outputs: int, hidden: Sequence[int] = (128, 128),
                 dropout: float = 0.1):
        super().__init__()
        self.features = features
        self.mlp = TabularMLP(features.out_features, n_outputs, hidden, dropout)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(numeric, categorical))


class PackedInput(nn.Module):
    """Training view of a :class:`TabularNet`: one float tensor [numeric | categorical codes] in."""

    def __init__(self, net: TabularNet, n_numeric: int):
        super().__init__()
        self.net = net
        self.n_numeric = n_numeric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, : self.n_numeric], x[:, self.n_numeric:].round().long())


class FailureEnsemble(nn.Module):
    """The exported failure predictor: the members' mean probabilities and the thresholded alarms.

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
        return torch.stack([torch.sigmoid(m(numeric, categorical)) for m in self.members]).mean(dim=0)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor):
        probabilities = self.probabilities(numeric, categorical)
        alarms = (probabilities >= self.thresholds).to(torch.int64)
        modes = alarms[:, 1:]
        from_modes = (modes * self.mode_in_alarm.to(torch.int64)).amax(dim=1, keepdim=True) if self.n_modes else alarms[:, :1]
        failure = torch.maximum(alarms[:, 0], from_modes[:, 0])
        return probabilities[:, 0], probabilities[:, 1:], failure, modes

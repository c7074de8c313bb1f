"""The surrogate: a deep ensemble of MLPs with uncertainty, input scaling inside the graph.

:class:`SurrogateEnsemble` is a plain ``nn.Module`` (fitted state in buffers, exported to ONNX as it is). It takes
the raw inputs — ``numeric`` (settings then numeric context) and ``categorical`` (codes) — takes the log of the
positive, wide-ranging columns, standardises and one-hot encodes them, and runs ``M`` MLP members side by side
(batched weights), one network per member and result. Each member predicts, for every numeric result, a mean and a log-variance (Gaussian, in the
standardised and possibly log-transformed space) and, for every class result, logits. The graph returns, per
numeric result, the mixture's ``mean`` and ``std`` in the result's own units, the ``lower``/``upper`` ends of the
central ``interval`` (default 90%) and ``model_std`` (the members' disagreement alone, the epistemic part that
grows away from the data); per class result, the mean class ``probabilities`` and their spread across members.

:func:`train_ensemble` fits all members in one Lightning run (:mod:`shopfloor.core.training`); members differ
by their random initialisation (optionally also by bootstrap weights), so they disagree where the data does not
pin them down; early stopping (and the checkpoint kept) on the held-out groups' (new jobs') or records' error of the
ensemble mean. The numeric loss is β-NLL (β = 0.5, Seitzer et al.
2022), which keeps the means sharp while the variances are learnt.

>>> graph = SurrogateEnsemble(n_numeric=3, category_sizes=[2], n_regression=1, class_sizes=[], members=2)
>>> out = graph.outputs(torch.zeros(4, 3), torch.zeros(4, 1, dtype=torch.int64))
>>> sorted(out), out["mean"].shape
(['lower', 'mean', 'model_std', 'std', 'upper'], torch.Size([4, 1]))
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from scipy.stats import norm
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shopfloor.core.config import TrainingConfig
from shopfloor.core.training import SupervisedModule, fit_supervised

LOG_RATIO = 10.0  # a positive column whose max/min reaches this is modelled on a log scale (auto)
# numeric results are held inside their training range widened by this fraction of its span (in the log space
# where the result is logged): a new job whose geometry lies outside the records cannot make an MLP extrapolate,
# then exponentiate, into absurd values (LEGO grouped CV: a warpage of 192 predicted where the truth was 1.97)
RANGE_MARGIN = 0.1
REGRESSION_OUTPUTS = ("mean", "std", "model_std", "lower", "upper")
CLASS_OUTPUTS = ("probabilities", "probability_std")


def log_columns(values: np.ndarray, mode: str) -> np.ndarray:
    """Which columns of ``values`` to model on a log scale: positive ones spanning a factor of LOG_RATIO."""
    values = np.asarray(values, dtype=np.float64)
    if mode == "none" or values.size == 0:
        return np.zeros(values.shape[1], dtype=bool)
    low, high = values.min(axis=0), values.max(axis=0)
    return (low > 0) & (high >= LOG_RATIO * np.maximum(low, 1e-300))


class SurrogateEnsemble(nn.Module):
    """Deep ensemble surrogate (see module docstring); buffers hold the scaling, set by :meth:`fit_scaling`."""

    def __init__(self, n_numeric: int, category_sizes: Sequence[int], n_regression: int, class_sizes: Sequence[int],
                 members: int = 5, hidden: Sequence[int] = (64, 64), interval: float = 0.9):
        super().__init__()
        self.n_numeric, self.n_regression = n_numeric, n_regression
        self.category_sizes, self.class_sizes = list(category_sizes), list(class_sizes)
        self.members = members
        for name, size in (("in_log", n_numeric), ("in_mean", n_numeric), ("in_std", n_numeric),
                           ("out_log", n_regression), ("out_mean", n_regression), ("out_std", n_regression),
                           ("out_low", n_regression), ("out_high", n_regression)):
            initial = {"std": 1.0, "low": -1e30, "high": 1e30}.get(name.split("_")[1], 0.0)
            self.register_buffer(name, torch.full((size,), initial))
        # variance scaling of each numeric result, fitted on held-out records after training (calibration)
        self.register_buffer("variance_scale", torch.ones(n_regression))
        self.register_buffer("z", torch.tensor(float(norm.ppf(0.5 + interval / 2))))
        for j, size in enumerate(self.category_sizes):
            self.register_buffer(f"onehot_{j}", torch.eye(size))
        d_in = n_numeric + sum(self.category_sizes)
        # one network per result and member (no shared trunk: an easy result cannot crowd out a hard one)
        self.heads = n_regression + len(self.class_sizes)
        self.head_width = max([2, *self.class_sizes])
        sizes = [d_in, *hidden, self.head_width]
        networks = members * self.heads
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            w = torch.empty(networks, a, b)
            for m in range(networks):
                nn.init.kaiming_uniform_(w[m].T, a=math.sqrt(5))
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.empty(networks, 1, b).uniform_(-1 / math.sqrt(a), 1 / math.sqrt(a))))
        self.activation = nn.SiLU()

    # ----------------------------------------------------------------- scaling
    def fit_scaling(self, numeric: np.ndarray, regression_targets: np.ndarray, log_mode: str = "auto") -> None:
        """Set the input and output scaling from training data (log where :func:`log_columns` says so) and the
        range the numeric results are held to (training min/max widened by RANGE_MARGIN of the span, in the log
        space where logged)."""
        def fill(prefix: str, log: np.ndarray, values: np.ndarray) -> None:
            v = np.where(log, np.log(np.maximum(values, 1e-30)), values)
            low, high = v.min(axis=0), v.max(axis=0)
            margin = RANGE_MARGIN * (high - low)
            named = {"log": log, "mean": v.mean(axis=0), "std": np.maximum(v.std(axis=0), 1e-6),
                     "low": low - margin, "high": high + margin}
            for name, value in named.items():
                if hasattr(self, f"{prefix}_{name}"):
                    getattr(self, f"{prefix}_{name}").copy_(torch.tensor(value, dtype=torch.float32))

        fill("in", log_columns(numeric, log_mode), numeric)
        if self.n_regression:
            fill("out", log_columns(regression_targets, log_mode), regression_targets)

    def features(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Raw inputs -> the members' input: log where chosen, standardised, then one-hot categories."""
        x = numeric.float()
        x = torch.where(self.in_log > 0.5, torch.log(torch.clamp(x, min=1e-30)), x)
        parts = [(x - self.in_mean) / self.in_std]
        for j in range(len(self.category_sizes)):
            parts.append(getattr(self, f"onehot_{j}")[categorical[:, j]])
        return torch.cat(parts, dim=1)

    def scale_targets(self, regression_targets: torch.Tensor) -> torch.Tensor:
        """Numeric results in the members' (log where chosen, standardised) space."""
        t = torch.where(self.out_log > 0.5, torch.log(torch.clamp(regression_targets, min=1e-30)), regression_targets)
        return (t - self.out_mean) / self.out_std

    # ----------------------------------------------------------------- members
    def member_outputs(self, features: torch.Tensor) -> torch.Tensor:
        """(members, batch, outputs): every member on the same features; outputs are the numeric results' means,
        then their log-variances, then each class result's logits."""
        h = features.unsqueeze(0)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.matmul(h, w) + b
            if i < last:
                h = self.activation(h)
        m, r = self.members, self.n_regression
        blocks = [h[k * m:(k + 1) * m] for k in range(self.heads)]
        parts = []
        if r:
            parts.append(torch.stack([blocks[j][..., 0] for j in range(r)], dim=-1))
            parts.append(torch.stack([blocks[j][..., 1] for j in range(r)], dim=-1))
        parts.extend(blocks[r + k][..., :size] for k, size in enumerate(self.class_sizes))
        return torch.cat(parts, dim=-1)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The graph's outputs, in the order of :meth:`output_names`."""
        named = self.outputs(numeric, categorical)
        return tuple(named[name] for name in self.output_names())

    def outputs(self, numeric: torch.Tensor, categorical: torch.Tensor) -> dict[str, torch.Tensor]:
        """The outputs by name (see module docstring)."""
        out = self.member_outputs(self.features(numeric, categorical))
        result: dict[str, torch.Tensor] = {}
        r = self.n_regression
        if r:
            mu = out[..., :r]
            var = torch.exp(torch.clamp(out[..., r:2 * r], -12.0, 6.0))
            mean = mu.mean(dim=0)
            model_var = ((mu - mean) ** 2).mean(dim=0)
            total_var = (var.mean(dim=0) + model_var) * self.variance_scale
            t, s = mean * self.out_std + self.out_mean, torch.sqrt(total_var) * self.out_std
            t = torch.minimum(torch.maximum(t, self.out_low), self.out_high)  # within the (widened) training range
            s_model = torch.sqrt(model_var) * self.out_std
            logged = self.out_log > 0.5
            t_exp = torch.clamp(t, max=80.0)
            centre = torch.exp(torch.minimum(t_exp + s * s / 2, self.out_high))
            result["mean"] = torch.where(logged, centre, t)
            result["std"] = torch.where(logged, centre * torch.sqrt((torch.exp(torch.clamp(s * s, max=20.0)) - 1.0)), s)
            result["model_std"] = torch.where(logged, torch.exp(t_exp) * s_model, s_model)
            result["lower"] = torch.where(logged, torch.exp(t_exp - self.z * s), t - self.z * s)
            result["upper"] = torch.where(logged, torch.exp(torch.clamp(t + self.z * s, max=80.0)), t + self.z * s)
        if self.class_sizes:
            probabilities, spreads = [], []
            start = 2 * r
            for size in self.class_sizes:
                p = torch.softmax(out[..., start:start + size], dim=-1)
                probabilities.append(p.mean(dim=0))
                spreads.append(p.std(dim=0, unbiased=False))
                start += size
            result["probabilities"] = torch.cat(probabilities, dim=1)
            result["probability_std"] = torch.cat(spreads, dim=1)
        return result

    def output_names(self) -> list[str]:
        """The graph's output names, in order."""
        return [*(REGRESSION_OUTPUTS if self.n_regression else ()), *(CLASS_OUTPUTS if self.class_sizes else ())]


class _MemberOutputs(nn.Module):
    """What Lightning trains: the members on precomputed features (the graph's own ``features``)."""

    def __init__(self, graph: SurrogateEnsemble):
        super().__init__()
        self.graph = graph

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.graph.member_outputs(features)


class EnsembleLoss(nn.Module):
    """β-NLL of the numeric results plus cross-entropy of the class results, per member, weighted by each member's
    bootstrap weights. Targets: ``[scaled numeric results, class indices, member weights]``."""

    def __init__(self, n_regression: int, class_sizes: Sequence[int], members: int, beta: float = 0.5):
        super().__init__()
        self.n_regression, self.class_sizes, self.members, self.beta = n_regression, list(class_sizes), members, beta

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r, m = self.n_regression, self.members
        weights = y[:, -m:].T  # (members, batch)
        loss = torch.zeros_like(weights)
        if r:
            mu, logvar = out[..., :r], torch.clamp(out[..., r:2 * r], -12.0, 6.0)
            target = y[:, :r].unsqueeze(0)
            nll = 0.5 * (logvar + (target - mu) ** 2 / torch.exp(logvar))
            loss = loss + (nll * torch.exp(logvar).detach() ** self.beta).mean(dim=-1)
        start, column = 2 * r, r
        for size in self.class_sizes:
            logits = out[..., start:start + size]
            labels = y[:, column].long().unsqueeze(0).expand(m, -1)
            ce = nn.functional.cross_entropy(logits.reshape(-1, size), labels.reshape(-1), reduction="none")
            loss = loss + ce.view(m, -1)
            start, column = start + size, column + 1
        return (loss * weights).sum() / weights.sum().clamp(min=1.0)


class EnsembleModule(SupervisedModule):
    """The supervised glue, also logging ``val_score`` (the ensemble mean's squared error on the scaled numeric
    results plus the mean probabilities' cross-entropy): the checkpoint is chosen on it, not on the NLL, whose
    minimum comes early for results with little noise (their variances keep shrinking) and would leave the
    others under-fitted."""

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self.model(x)
        loss = self.loss(out, y)
        r = self.loss.n_regression
        score = torch.zeros((), device=out.device)
        if r:
            score = score + ((out[..., :r].mean(dim=0) - y[:, :r]) ** 2).mean()
        start, column = 2 * r, r
        for size in self.loss.class_sizes:
            p = torch.softmax(out[..., start:start + size], dim=-1).mean(dim=0)
            score = score + nn.functional.nll_loss(torch.log(p.clamp(min=1e-7)), y[:, column].long())
            start, column = start + size, column + 1
        self.log("val_loss", loss, on_epoch=True, batch_size=y.shape[0], sync_dist=True)
        self.log("val_score", score, prog_bar=True, on_epoch=True, batch_size=y.shape[0], sync_dist=True)
        return loss


def calibrate_variance(graph: SurrogateEnsemble, features: torch.Tensor, scaled_targets: torch.Tensor) -> list[float]:
    """Scale each numeric result's predictive variance so that the held-out records' standardised squared errors
    average 1 (variance scaling); clipped to [0.25, 100]. Returns the scales."""
    with torch.no_grad():
        out = graph.member_outputs(features)
        r = graph.n_regression
        mu, var = out[..., :r], torch.exp(torch.clamp(out[..., r:2 * r], -12.0, 6.0))
        mean = mu.mean(dim=0)
        total = var.mean(dim=0) + ((mu - mean) ** 2).mean(dim=0)
        scale = (((scaled_targets - mean) ** 2) / total).mean(dim=0).clamp(0.25, 100.0)
        graph.variance_scale.copy_(scale)
    return scale.tolist()


def validation_rows(n: int, groups: np.ndarray | None, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the rows held out for early stopping: whole groups (new jobs) when there are groups."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    if groups is not None and len(np.unique(groups)) >= 4:
        names = rng.permutation(np.unique(groups))
        for name in names:
            if mask.mean() >= fraction:
                break
            mask |= groups == name
        return mask
    mask[rng.permutation(n)[: max(1, int(round(fraction * n)))]] = True
    return mask


def train_ensemble(graph: SurrogateEnsemble, numeric: np.ndarray, categorical: np.ndarray, targets: np.ndarray,
                   groups: np.ndarray | None, config: TrainingConfig, log_mode: str = "auto",
                   log_dir: str | Path | None = None, bootstrap: bool = False) -> dict[str, Any]:
    """Fit ``graph``'s scaling and members on the training rows; returns the fit summary. With ``bootstrap``
    every member weighs each record by its own Poisson(1) draw; without, members differ by initialisation."""
    r = graph.n_regression
    graph.fit_scaling(numeric, targets[:, :r].astype(np.float64), log_mode)
    with torch.no_grad():
        features = graph.features(torch.from_numpy(numeric), torch.from_numpy(categorical))
        scaled = graph.scale_targets(torch.from_numpy(targets[:, :r])) if r else torch.zeros(len(targets), 0)
    rng = np.random.default_rng(config.seed)
    weights = (torch.from_numpy(rng.poisson(1.0, size=(len(targets), graph.members)).astype(np.float32)) if bootstrap
               else torch.ones(len(targets), graph.members))
    y = torch.cat([scaled, torch.from_numpy(targets[:, r:]), weights], dim=1)
    held = validation_rows(len(targets), groups, config.val_fraction, config.seed)
    y_val = y[held].clone()
    y_val[:, -graph.members:] = 1.0  # every member is judged on every held-out record
    generator = torch.Generator().manual_seed(config.seed)
    train = DataLoader(TensorDataset(features[~held], y[~held]), batch_size=config.batch_size, shuffle=True,
                       generator=generator)
    val = DataLoader(TensorDataset(features[held], y_val), batch_size=4096)
    module = EnsembleModule(_MemberOutputs(graph), EnsembleLoss(r, graph.class_sizes, graph.members), config,
                            task_kind="regression")
    summary = fit_supervised(module, train, val, config, log_dir, monitor="val_score")
    graph.eval()
    if r and held.any():
        summary["variance_scale"] = calibrate_variance(graph, features[held], scaled[held])
    summary["validation_rows"] = int(held.sum())
    return summary

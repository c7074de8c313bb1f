"""Fitting the monitoring graph's networks: standardisation, PCA and the autoencoder of one calibration fold, the
statistics a fold's model gives on the data it did not fit, and the fault classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from shopfloor.core.task import batched
from shopfloor.core.training import SupervisedModule, fit_supervised

from ..records import LABEL, RUN, ProcessRecords
from .fitting import Segment, fit_pca, segment_windows, split_normal
from .networks import MonitoringGraph

MonitoringConfig = Any  # the task's settings (task.MonitoringConfig; not imported here: task imports this module)


def loader(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """Whole-batch indexing of in-memory tensors."""
    dataset = TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)) if shuffle \
        else SequentialSampler(dataset)
    return DataLoader(dataset, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None)


class Standardized(nn.Module):
    """Trains a sub-network of the graph on standardised windows (the graph standardises inside itself)."""

    def __init__(self, graph: MonitoringGraph, part: str):
        super().__init__()
        self.graph, self.part = graph, part

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        z = self.graph.standardize(window)
        return self.graph.autoencoder(z) if self.part == "autoencoder" else self.graph.classifier(z)


class StandardizedMSE(nn.Module):
    """MSE between the reconstruction (standardised units) and the standardised target window."""

    def __init__(self, graph: MonitoringGraph):
        super().__init__()
        self.graph = graph

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((reconstruction - self.graph.standardize(target)) ** 2).mean()


def fit_detectors(cfg: MonitoringConfig, raw: np.ndarray, fit_part: list[Segment], held: list[Segment],
                   log_dir: Path | None, epochs: int | None = None) -> tuple[MonitoringGraph, dict[str, Any]]:
    """Standardisation, PCA and the autoencoder fitted on ``fit_part`` (early stopping on ``held``; with
    ``epochs`` and no ``held``: that many epochs, the final cross-fitted model)."""
    fit_rows = np.concatenate([s.rows for s in fit_part])
    mean, std = raw[fit_rows].astype(np.float64).mean(0), raw[fit_rows].astype(np.float64).std(0)
    std = np.where(std > 0, std, 1.0)
    loadings, eigenvalues = fit_pca(((raw[fit_rows] - mean) / std).astype(np.float32), cfg.pca_variance)
    graph = MonitoringGraph(raw.shape[1], int(loadings.shape[1]), cfg.window, cfg.detector, cfg.hidden,
                            cfg.latent, 0, cfg.statistic)
    graph.standardize.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
    graph.standardize.std.copy_(torch.as_tensor(std, dtype=torch.float32))
    graph.pca.loadings.copy_(torch.as_tensor(loadings))
    graph.pca.eigenvalues.copy_(torch.as_tensor(eigenvalues))
    train_w = segment_windows(raw, fit_part, cfg.window)
    held_w = segment_windows(raw, held, cfg.window) if held else train_w
    summary = fit_autoencoder(cfg, graph, train_w, held_w, log_dir, epochs)
    return graph.eval(), summary


def fit_autoencoder(cfg: MonitoringConfig, graph: MonitoringGraph, train_w: np.ndarray, held_w: np.ndarray,
                     log_dir: Path | None, epochs: int | None = None) -> dict[str, Any]:
    noise = cfg.input_noise * graph.standardize.std
    train_cfg = cfg.training if epochs is None else cfg.training.model_copy(
        update={"epochs": epochs, "patience": epochs + 1})

    def add_noise(x: torch.Tensor) -> torch.Tensor:
        return x + noise.to(x.device) * torch.randn_like(x)

    module = SupervisedModule(Standardized(graph, "autoencoder"), StandardizedMSE(graph), train_cfg,
                              train_transform=add_noise, task_kind="regression")
    return fit_supervised(module, loader(train_w, train_w, train_cfg.batch_size, True, train_cfg.seed),
                          loader(held_w, held_w, 1024, False, 0), train_cfg,
                          log_dir / "autoencoder" if log_dir is not None else None)


def held_statistics(graph: MonitoringGraph, raw: np.ndarray, segments: list[Segment]) -> dict[str, np.ndarray]:
    """Unnormalised statistics of held-out data: residual features and reconstruction error per window, T2/SPE
    per sample."""
    windows = segment_windows(raw, segments, graph.window)
    with torch.no_grad():
        z = graph.standardize(torch.as_tensor(raw[np.concatenate([s.rows for s in segments])]))
        t2, spe, _, _ = graph.pca(z)
        features, reconstruction = [], []
        for sl in batched(len(windows), 1024):
            zw = graph.standardize(torch.as_tensor(windows[sl]))
            features.append(graph.features.raw(graph.residual(zw)))
            reconstruction.append(graph.reconstruction_parts(zw).sum(-1))
    return {"features": torch.cat(features).numpy(), "reconstruction": torch.cat(reconstruction).numpy(),
            "t2": t2.numpy(), "spe": spe.numpy()}


def fit_classifier(cfg: MonitoringConfig, graph: MonitoringGraph, records: ProcessRecords, raw: np.ndarray,
                   classes: list[str], log_dir: Path | None) -> dict[str, Any]:
    """Train the classifier on windows inside each stretch of one label; the late share of each is validation."""
    labels = records.frame[LABEL].to_numpy()
    train_x, train_y, val_x, val_y = [], [], [], []
    for rows in records.frame.groupby(RUN, sort=False).indices.values():
        breaks = np.flatnonzero(labels[rows][1:] != labels[rows][:-1]) + 1
        for block in np.split(rows, breaks):
            fit_part, held = split_normal([Segment("", block)], cfg.training.val_fraction, cfg.window)
            y = classes.index(labels[block[0]])
            for part, xs, ys in ((fit_part, train_x, train_y), (held, val_x, val_y)):
                w = segment_windows(raw, part, cfg.window)
                xs.append(w)
                ys.append(np.full(len(w), y, dtype=np.int64))
    x, y = np.concatenate(train_x), np.concatenate(train_y)
    vx, vy = np.concatenate(val_x), np.concatenate(val_y)
    if not len(vx):
        vx, vy = x, y
    train_cfg = cfg.training.model_copy(update={"epochs": cfg.classifier_epochs,
                                                "patience": min(cfg.training.patience, 8)})
    counts = np.bincount(y, minlength=len(classes)).astype(np.float32)
    weights = torch.as_tensor(counts.sum() / np.maximum(counts, 1) / len(classes))
    module = SupervisedModule(Standardized(graph, "classifier"), nn.CrossEntropyLoss(weight=weights),
                              train_cfg, task_kind="classification")
    summary = fit_supervised(module, loader(x, y, train_cfg.batch_size, True, train_cfg.seed),
                             loader(vx, vy, 1024, False, 0), train_cfg,
                             log_dir / "classifier" if log_dir is not None else None)
    with torch.no_grad():
        predicted = torch.cat([module(torch.as_tensor(vx[sl])).argmax(1) for sl in batched(len(vx), 1024)])
    return {"classifier_val_accuracy": float((predicted.numpy() == vy).mean()),
            "classifier_epochs": summary["epochs_run"], "n_classifier_windows": int(len(x))}


__all__ = ["StandardizedMSE", "Standardized", "fit_autoencoder", "fit_classifier", "fit_detectors", "held_statistics",
           "loader"]

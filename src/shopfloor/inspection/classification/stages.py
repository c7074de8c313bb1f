"""The training stages of defect classification, each usable on its own by the task and by the auto-configuration.

- :func:`train_head`: the linear head on pooled features of the frozen pretrained network (computed once through
  ONNX Runtime, with augmented views);
- :func:`finetune`: end-to-end training of the whole network (``all``), of its last stage only (``top``), or of a
  network trained from scratch (``simple-cnn``);
- :func:`view_logits`: logits of images and their flips through ONNX Runtime (validation figures, calibration).

Class balance: ``balanced`` samples every class equally often (a seeded weighted sampler) instead of weighting the
loss, so the two are never applied together.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from shopfloor.core.config import TrainingConfig
from shopfloor.core.runtime import OnnxModel, export_onnx
from shopfloor.core.task import batched
from shopfloor.core.training import SupervisedModule, fit_supervised

from ..augment import ImageAugmenter
from .calibration import FLIPS
from .dataset import ImageArrayDataset
from .models import EfficientNetClassifier, FeatureOutput

DEPTHS = ("head", "top", "all")  # how much of a pretrained network trains, cheapest first


def class_loss(counts: np.ndarray, weighting: str, sampler_on: bool) -> nn.Module:
    """Cross-entropy, with balanced class weights unless the sampler already balances the classes."""
    weights = None
    if weighting == "balanced" and not sampler_on:
        counts = np.asarray(counts, dtype=np.float32)
        weights = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=weights)


def loaders(train_ds, val_ds, cfg: TrainingConfig, labels: np.ndarray | None = None) -> tuple[DataLoader, DataLoader]:
    """Seeded training loader (shuffled, or class-balanced sampling when ``labels`` is given) and validation loader."""
    generator = torch.Generator().manual_seed(cfg.seed)
    if labels is not None:
        counts = np.bincount(labels)
        weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
        sampler = WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)
        train = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                           drop_last=len(train_ds) > cfg.batch_size)
    else:
        train = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                           num_workers=cfg.num_workers, drop_last=len(train_ds) > cfg.batch_size)
    return train, DataLoader(val_ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers)


def feature_views(extractor: OnnxModel, images: np.ndarray, labels: np.ndarray, augmenter: ImageAugmenter,
                  views: int, progress: bool, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features of the original images plus ``views`` augmented copies of each."""
    from tqdm.auto import tqdm

    feats, labs = [], []
    n_batches = len(list(batched(len(images), batch_size)))
    with tqdm(total=n_batches * (views + 1), desc="extracting features", disable=not progress, leave=False) as bar:
        for view in range(views + 1):
            for sl in batched(len(images), batch_size):
                x = torch.from_numpy(images[sl]).permute(0, 3, 1, 2).float()
                if view:
                    x = augmenter(x)
                feats.append(extractor.run(image=x.numpy())["features"])
                labs.append(labels[sl])
                bar.update()
    return torch.from_numpy(np.concatenate(feats)), torch.from_numpy(np.concatenate(labs)).long()


def train_head(model: EfficientNetClassifier, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
               loss: nn.Module, cfg: TrainingConfig, augmenter: ImageAugmenter, views: int, balanced: bool,
               log_dir: Path | None) -> dict[str, Any]:
    """Train ``model.head`` on frozen pooled features of ``train`` (+ ``views`` augmented copies); returns the
    Lightning summary."""
    extractor = OnnxModel(export_onnx(FeatureOutput(model).eval(), (example_batch(train[0]),), ["image"],
                                      ["features"]), device=cfg.device)
    train_x, train_y = feature_views(extractor, train[0], train[1], augmenter, views, cfg.progress)
    val_x, _ = feature_views(extractor, val[0], val[1], augmenter, 0, cfg.progress)
    head = SupervisedModule(model.head, loss, cfg, task_kind="classification")
    train_loader, val_loader = loaders(TensorDataset(train_x, train_y),
                                       TensorDataset(val_x, torch.as_tensor(val[1]).long()), cfg,
                                       train_y.numpy() if balanced else None)
    return fit_supervised(head, train_loader, val_loader, cfg, log_dir)


def top_modules(model: EfficientNetClassifier) -> list[nn.Module]:
    """The last stage of an EfficientNet (from its last stride-2 block: stride 32) with its conv head and the
    classifier head: what ``top`` fine-tunes."""
    blocks = list(model.backbone._blocks)
    starts = [i for i, b in enumerate(blocks) if max(_stride(b._depthwise_conv)) > 1]
    first = starts[-1] if starts else 0
    return blocks[first:] + [model.backbone._conv_head, model.backbone._bn1, model.head]


def _stride(conv: nn.Module) -> tuple[int, ...]:
    stride = conv.stride
    return tuple(stride) if isinstance(stride, (tuple, list)) else (stride,)


class PartlyFrozen(nn.Module):
    """Trains only ``trainable`` sub-modules of ``model``; the rest keeps its weights and BatchNorm statistics
    (stays in eval mode while training)."""

    def __init__(self, model: nn.Module, trainable: Sequence[nn.Module]):
        super().__init__()
        self.model = model
        self._trainable = list(trainable)  # a plain list: not registered twice
        for p in model.parameters():
            p.requires_grad_(False)
        for module in self._trainable:
            for p in module.parameters():
                p.requires_grad_(True)

    def train(self, mode: bool = True) -> "PartlyFrozen":
        super().train(mode)
        if mode:
            self.model.eval()
            for module in self._trainable:
                module.train()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def release(self) -> nn.Module:
        """The wrapped model with every parameter trainable again (as saved and exported)."""
        for p in self.model.parameters():
            p.requires_grad_(True)
        return self.model


def trainable_view(model: nn.Module, depth: str) -> nn.Module:
    """``model`` as trained at ``depth`` (``all``: itself; ``top``: :class:`PartlyFrozen` on its last stage)."""
    if depth == "top" and isinstance(model, EfficientNetClassifier):
        return PartlyFrozen(model, top_modules(model))
    return model


def seconds_per_image(model: nn.Module, depth: str, images: np.ndarray, augmenter: ImageAugmenter,
                      loss: nn.Module, batch_size: int) -> float:
    """Measured training seconds per image at ``depth`` (one forward + backward on a batch, after a warm-up), on a
    copy: a training step would move ``model``'s BatchNorm statistics."""
    model = copy.deepcopy(model)
    net = trainable_view(model, depth)
    net.train()
    x = torch.from_numpy(images[:batch_size]).permute(0, 3, 1, 2).float()
    y = torch.zeros(len(x), dtype=torch.long)
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        loss(net(augmenter(x)), y).backward()
        best = min(best, time.perf_counter() - start)
    return best / len(x)


def finetune(model: nn.Module, depth: str, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
             loss: nn.Module, cfg: TrainingConfig, augmenter: ImageAugmenter, balanced: bool,
             log_dir: Path | None) -> dict[str, Any]:
    """Train ``model`` end to end on augmented images (``all``) or only its last stage (``top``)."""
    net = trainable_view(model, depth)
    module = SupervisedModule(net, loss, cfg, train_transform=augmenter, task_kind="classification")
    train_loader, val_loader = loaders(ImageArrayDataset(*train), ImageArrayDataset(*val), cfg,
                                       np.asarray(train[1]) if balanced else None)
    # the frozen part stays in eval mode on purpose (its BatchNorm statistics are kept; core.quiet filters
    # Lightning's warning about it)
    summary = fit_supervised(module, train_loader, val_loader, cfg, log_dir)
    if isinstance(net, PartlyFrozen):
        net.release()
    model.eval()
    return summary


def example_batch(images: np.ndarray) -> torch.Tensor:
    """A random 0..255 batch of one image with the size of ``images`` (an export example)."""
    return torch.rand(1, 3, images.shape[1], images.shape[2]) * 255


def view_logits(model: nn.Module, images: np.ndarray, flips: Sequence[str] = (), batch_size: int = 32,
                device: str = "cpu") -> np.ndarray:
    """Logits [1 + len(flips), N, C] of ``images`` and their flips, through ONNX Runtime."""
    runner = OnnxModel(export_onnx(model.eval(), (example_batch(images),), ["image"], ["logits"]), device=device)
    out = []
    for flip in (None, *flips):
        chunks = []
        for sl in batched(len(images), batch_size):
            x = np.ascontiguousarray(images[sl].transpose(0, 3, 1, 2), dtype=np.float32)
            if flip is not None:
                x = np.ascontiguousarray(np.flip(x, FLIPS[flip]))
            chunks.append(runner.run(image=x)["logits"])
        out.append(np.concatenate(chunks))
    return np.stack(out)

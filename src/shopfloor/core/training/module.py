"""A generic LightningModule for supervised tasks: the plain torch model stays free of training logic."""

from __future__ import annotations

from typing import Callable

import lightning as L
import numpy as np
import torch
from torch import nn

from ..config import TrainingConfig


class SupervisedModule(L.LightningModule):
    """Trains ``model`` on (x, y) batches with ``loss``.

    ``train_transform`` (augmentation) is applied to inputs of training batches only.
    ``task_kind`` = "classification" also logs accuracy.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        config: TrainingConfig,
        train_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        task_kind: str = "classification",
    ):
        super().__init__()
        self.model = model
        self.loss = loss
        self.config = config
        self.train_transform = train_transform
        self.task_kind = task_kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_fit_start(self) -> None:
        self.model.train()  # the model may arrive in eval mode (e.g. after an export)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        if stage == "train" and self.train_transform is not None:
            with torch.no_grad():
                x = self.train_transform(x)
        out = self.model(x)
        loss = self.loss(out, y)
        bs = y.shape[0]
        self.log(f"{stage}_loss", loss, prog_bar=True, on_epoch=True, on_step=stage == "train",
                 batch_size=bs, sync_dist=True)
        if self.task_kind == "classification":
            acc = (out.argmax(dim=1) == y).float().mean()
            self.log(f"{stage}_acc", acc, prog_bar=True, on_epoch=True, on_step=False, batch_size=bs,
                     sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.config.learning_rate, weight_decay=self.config.weight_decay)
        steps = self.trainer.estimated_stepping_batches
        if not isinstance(steps, int) or steps <= 0:
            return optimizer
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.config.learning_rate, total_steps=int(steps), pct_start=0.15
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Cross-entropy weights ``n / (n_classes * count)`` per class (scikit-learn's "balanced"); a class without
    examples counts as one."""
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(np.float32)
    return torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)

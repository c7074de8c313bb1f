"""Trainer factory: progress bar, early stopping, best checkpoint, CSV (and TensorBoard) logs, DDP.

Lightning checkpoints are pickles, so they never reach a model directory: :func:`fit_supervised` writes them to a
temporary directory, restores the best weights from it (``torch.load(weights_only=True)``) and removes it; only the
CSV/TensorBoard logs go to ``log_dir``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..config import TrainingConfig
from ..errors import ConfigError
from ..quiet import quiet_libraries


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (and dataloader workers)."""
    L.seed_everything(seed, workers=True, verbose=False)


def _accelerator(device: str) -> str:
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but torch sees no CUDA device; use --device cpu or auto")
        return "gpu"
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return "cpu"


def make_trainer(config: TrainingConfig, log_dir: str | Path, monitor: str = "val_loss", mode: str = "min",
                 checkpoint_dir: str | Path | None = None) -> L.Trainer:
    """A Lightning Trainer set up the shopfloor way; the best checkpoint goes to ``checkpoint_dir`` (default
    ``log_dir/checkpoints``; :func:`fit_supervised` passes a temporary directory that it removes)."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger

    log_dir = Path(log_dir)
    loggers: list[Any] = [CSVLogger(str(log_dir), name="logs")]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(log_dir), name="tensorboard"))
    except ImportError:
        pass
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else log_dir / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=str(checkpoint_dir), monitor=monitor, mode=mode,
                                 save_top_k=1, filename="best", enable_version_counter=False)
    callbacks: list[Any] = [checkpoint, EarlyStopping(monitor=monitor, mode=mode, patience=config.patience)]
    if config.progress:
        callbacks.append(TQDMProgressBar(leave=False))  # one bar, updated in place
    strategy = config.strategy
    if strategy == "ddp" and _accelerator(config.device) == "cpu":
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo")
    return L.Trainer(
        max_epochs=config.epochs,
        accelerator=_accelerator(config.device),
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=strategy,
        precision=config.precision,
        logger=loggers,
        callbacks=callbacks,
        deterministic="warn",
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        log_every_n_steps=5,
        default_root_dir=str(log_dir),
    )


def fit_supervised(module: L.LightningModule, train_loader: DataLoader, val_loader: DataLoader,
                   config: TrainingConfig, log_dir: str | Path | None = None,
                   monitor: str = "val_loss", mode: str = "min") -> dict[str, Any]:
    """Fit ``module``, restore its best checkpoint and return the fit summary.

    Returns ``{"best_score", "epochs_run", "is_global_zero", "log_dir"}`` (``log_dir`` None when no ``log_dir``
    was given: the temporary logs are removed). The checkpoint lives in a temporary directory, removed once every
    process has restored the best weights, so no pickle is left in ``log_dir`` (usually ``model_dir/training``).
    Under DDP every process runs this; only the process with ``is_global_zero`` should write artifacts. (The
    checkpoint directory is rank 0's: Lightning broadcasts it. Processes on other nodes, which cannot see it,
    keep their last weights; they write nothing.)
    """
    temp_logs = None
    if log_dir is None:
        temp_logs = tempfile.mkdtemp(prefix="shopfloor-train-")
        log_dir = temp_logs
    checkpoint_dir = tempfile.mkdtemp(prefix="shopfloor-ckpt-")
    try:
        with quiet_libraries():
            trainer = make_trainer(config, log_dir, monitor=monitor, mode=mode, checkpoint_dir=checkpoint_dir)
            trainer.fit(module, train_loader, val_loader)
        ckpt = trainer.checkpoint_callback
        best = ckpt.best_model_path if ckpt is not None else ""
        if best and os.path.exists(best):
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state)
        # every process has read the (rank 0) checkpoint before rank 0 removes it
        trainer.strategy.barrier("shopfloor-restored-best")
        if trainer.is_global_zero:
            _remove_stale_checkpoints(Path(log_dir))
    finally:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        if temp_logs is not None:
            shutil.rmtree(temp_logs, ignore_errors=True)
    module.cpu().eval()
    score = ckpt.best_model_score if ckpt is not None else None
    return {
        "best_score": float(score) if score is not None else None,
        "epochs_run": int(trainer.current_epoch),
        "is_global_zero": bool(trainer.is_global_zero),
        "log_dir": None if temp_logs is not None else str(log_dir),
    }


def _remove_stale_checkpoints(log_dir: Path) -> None:
    """Remove the best.ckpt that earlier shopfloor versions left in ``log_dir/checkpoints`` (retraining into an
    old model directory), so no pickle stays beside a model."""
    folder = log_dir / "checkpoints"
    if folder.is_symlink() or not folder.is_dir():
        return
    for stale in folder.glob("best*.ckpt"):
        if stale.is_file() or stale.is_symlink():
            stale.unlink()
    try:
        folder.rmdir()  # only when now empty
    except OSError:
        pass

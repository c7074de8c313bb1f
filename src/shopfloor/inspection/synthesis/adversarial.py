"""Lightning glue for adversarial training (manual optimisation, two optimisers), separate from the plain modules.

One training step: the discriminator's hinge loss on DiffAugment-ed real and generated images, then the
generator's loss through the same augmentations plus a mode-seeking term (MSGAN, Mao et al. 2019: the generator's
batch is built of pairs with the same class, and ``1 / (|G(z1) - G(z2)| / |z1 - z2| + eps)`` is added, so two latents
may not give the same image), then the EMA update of the generator's weights. A grid of EMA
samples (fixed latents, one row per class) is saved as PNG every ``sample_every`` steps. Batches draw every class
equally often, so a class of ten images is learnt alongside classes of hundreds.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from shopfloor.core.config import TrainingConfig
from shopfloor.core.quiet import quiet_libraries

from .diffaugment import diff_augment
from .networks import SynthesisModel


class AdversarialModule(L.LightningModule):
    """Trains ``model.generator`` against ``discriminator`` (hinge loss, DiffAugment, optional mode-seeking term),
    keeping ``model.ema``."""

    def __init__(self, model: SynthesisModel, discriminator: nn.Module, learning_rate: float,
                 ema_decay: float, policy: Sequence[str], sample_every: int = 0, sample_dir: Path | None = None,
                 n_classes: int = 1, seed: int = 0, mode_seeking: float = 0.0,
                 discriminator_lr: float | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.discriminator = discriminator
        self.learning_rate = learning_rate
        self.ema_decay = ema_decay
        self.policy = list(policy)
        self.sample_every = sample_every
        self.sample_dir = sample_dir
        self.mode_seeking = mode_seeking
        self.discriminator_lr = discriminator_lr or learning_rate
        generator = torch.Generator().manual_seed(seed + 1)
        per_class = 8
        self._fixed_latent = torch.randn(n_classes * per_class, model.generator.latent_dim, generator=generator)
        self._fixed_class = torch.arange(n_classes).repeat_interleave(per_class)
        self.history: list[dict[str, float]] = []

    def configure_optimizers(self):
        betas = (0.0, 0.99)
        return (torch.optim.Adam(self.model.generator.parameters(), lr=self.learning_rate, betas=betas),
                torch.optim.Adam([p for p in self.discriminator.parameters() if p.requires_grad],
                                 lr=self.discriminator_lr, betas=betas))

    def on_fit_start(self) -> None:
        self.model.generator.train()
        self.discriminator.train()

    def training_step(self, batch, batch_idx):
        real, labels = batch
        opt_g, opt_d = self.optimizers()
        latent = torch.randn(real.shape[0], self.model.generator.latent_dim, device=real.device)
        # discriminator: hinge loss on augmented real and generated images
        with torch.no_grad():
            fake = self.model.generator(latent, labels)
        d_real = self.discriminator(diff_augment(real, self.policy), labels)
        d_fake = self.discriminator(diff_augment(fake, self.policy), labels)
        d_loss = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()
        # generator: fool the discriminator through the same (differentiable) augmentations
        if self.mode_seeking > 0:  # pairs (i, i + n/2) share their class
            half = real.shape[0] // 2
            labels = torch.cat([labels[:half], labels[:half], labels[2 * half:]])
        fake = self.model.generator(latent, labels)
        g_loss = -self.discriminator(diff_augment(fake, self.policy), labels).mean()
        if self.mode_seeking > 0:
            g_loss = g_loss + self.mode_seeking * mode_seeking_loss(fake[:2 * half], latent[:2 * half])
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        opt_g.step()
        self.model.update_ema(self.ema_decay, step=self.global_step // 2 - 1)
        self.log_dict({"d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
                       "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()},
                      prog_bar=True, on_step=True, on_epoch=False, batch_size=real.shape[0])
        step = self.global_step // 2 + 1  # manual optimisation: each optimiser step counts once
        if self.sample_every and self.sample_dir is not None and step % self.sample_every == 0 \
                and self.trainer.is_global_zero:
            self.save_samples(self.sample_dir / f"samples_step{step:06d}.png")
        if step % 25 == 0 or step == 1:
            self.history.append({"step": step, "d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())})

    @torch.no_grad()
    def save_samples(self, path: Path) -> None:
        """A PNG grid of EMA samples from fixed latents: one row per class."""
        ema = self.model.ema.eval()
        images = ema(self._fixed_latent.to(self.device), self._fixed_class.to(self.device)).cpu()
        save_grid(images, path, per_row=8)


def mode_seeking_loss(images: torch.Tensor, latent: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MSGAN's term for a batch whose first and second halves are pairs (same class, different latents):
    ``1 / (mean image distance / mean latent distance + eps)``; large when the latent barely changes the image."""
    half = images.shape[0] // 2
    image_gap = (images[:half] - images[half:2 * half]).abs().mean(dim=tuple(range(1, images.dim())))
    latent_gap = (latent[:half] - latent[half:2 * half]).abs().mean(dim=1)
    return 1.0 / ((image_gap / latent_gap).mean() + eps)


def save_grid(images: torch.Tensor, path: Path, per_row: int) -> Path:
    """NCHW images in -1..1 -> one PNG grid (rows of ``per_row``)."""
    from PIL import Image

    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    n, h, w, c = pixels.shape
    rows = (n + per_row - 1) // per_row
    canvas = np.zeros((rows * (h + 2), per_row * (w + 2), c), np.uint8)
    for i, img in enumerate(pixels):
        r, k = divmod(i, per_row)
        canvas[r * (h + 2):r * (h + 2) + h, k * (w + 2):k * (w + 2) + w] = img
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas[..., 0] if c == 1 else canvas).save(path)
    return path


def balanced_loader(images: np.ndarray, labels: np.ndarray, batch_size: int, steps: int, seed: int) -> DataLoader:
    """``steps`` batches drawn with every class equally likely (with replacement); images NCHW float -1..1."""
    counts = np.bincount(labels)
    weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
    sampler = WeightedRandomSampler(weights, num_samples=steps * batch_size, replacement=True,
                                    generator=torch.Generator().manual_seed(seed))
    dataset = TensorDataset(torch.from_numpy(images), torch.from_numpy(labels).long())
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True)


def train_adversarial(model: SynthesisModel, discriminator: nn.Module, images: np.ndarray, labels: np.ndarray,
                      training: TrainingConfig, steps: int, ema_decay: float, policy: Sequence[str],
                      sample_every: int, log_dir: Path | None, mode_seeking: float = 0.0,
                      discriminator_lr: float | None = None) -> dict[str, Any]:
    """Run ``steps`` adversarial steps on ``images`` (NCHW float -1..1) and ``labels``; returns the summary
    (steps run, the loss history, where the logs and sample grids went). The model is left on the CPU in eval
    mode."""
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger

    from shopfloor.core.training.trainer import _accelerator

    temp = None
    if log_dir is None:
        temp = tempfile.mkdtemp(prefix="shopfloor-gan-")
        log_dir = Path(temp)
    sample_dir = log_dir / "samples"
    module = AdversarialModule(model, discriminator, training.learning_rate, ema_decay, policy, sample_every,
                               sample_dir if temp is None else None, int(labels.max()) + 1, training.seed,
                               mode_seeking, discriminator_lr)
    loader = balanced_loader(images, labels, training.batch_size, steps, training.seed)
    try:
        with quiet_libraries():
            trainer = L.Trainer(max_epochs=1, max_steps=2 * steps, accelerator=_accelerator(training.device),
                                devices=1, precision=training.precision, logger=CSVLogger(str(log_dir), name="logs"),
                                callbacks=[TQDMProgressBar(leave=False)] if training.progress else [],
                                enable_progress_bar=training.progress, enable_model_summary=False,
                                enable_checkpointing=False, log_every_n_steps=25, default_root_dir=str(log_dir))
            trainer.fit(module, loader)
        if temp is None:
            module.save_samples(sample_dir / "samples_final.png")
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    model.cpu().eval()
    discriminator.cpu().eval()
    return {"steps": int(trainer.global_step // 2), "history": module.history,
            "log_dir": None if temp is not None else str(log_dir),
            "samples": None if temp is not None else str(sample_dir)}

"""Defect synthesis: a class-conditional GAN that makes more images of the rare defect classes.

Data: a folder with one sub-folder per class (the defect-classification layout). Model: a DCGAN-sized generator
(PixelNorm, no batch statistics) against a projected discriminator (spectral-norm heads with class projection on
frozen pretrained EfficientNet-Lite0 features; ``discriminator="plain"``: a spectral-norm CNN learnt from scratch),
hinge loss plus a mode-seeking term, DiffAugment so it trains on tens of images per class, batches that draw every
class equally often, and an exponential moving average (EMA) of the generator's weights that is what samples and is
exported (:mod:`.networks`, :mod:`.adversarial`). Images are generated small (64x64 grayscale by default) and upsampled by whoever uses them.

The exported graph takes ``latent`` (N, latent_dim) float32 and ``class_index`` (N,) int64 and returns ``image``
(N, C, H, W) in 0..255; :meth:`DefectSynthesis.generate` and ``predict`` run it through ONNX Runtime. Quality is
measured on pretrained-backbone features (:mod:`.quality`): per class KID and precision/recall of generated vs
held-out real images, and a nearest-training-image check for memorisation, in the report with sample grids.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import Field, field_validator

from shopfloor.core.artifact import fingerprint_files
from shopfloor.core.config import StrictModel, TrainingConfig
from shopfloor.core.errors import ConfigError, DataError
from shopfloor.core.task import OnnxSignature, Task, batched
from shopfloor.core.training import seed_everything

from ..backbones import weights_path
from ..images import ImageSpec, read_frames, scan_class_folders
from .adversarial import train_adversarial
from .diffaugment import POLICIES
from .networks import Discriminator, ProjectedDiscriminator, SamplingGraph, SynthesisModel

log = logging.getLogger(__name__)


class DefectSynthesisConfig(StrictModel):
    """Settings of the defect-synthesis task."""

    image_size: int = Field(64, description="generated image size (square, a power of two from 16 to 256)")
    color: Literal["gray", "rgb"] = Field("gray", description="gray: one channel (e.g. steel surfaces); rgb: three")
    latent_dim: int = Field(64, ge=4, le=512)
    generator_width: int = Field(16, ge=2, le=128, description="channels of the generator's last stage (x2 per "
                                 "stage towards the 4x4 start)")
    discriminator: Literal["projected", "plain"] = Field(
        "projected", description="projected: small heads on frozen pretrained EfficientNet-Lite0 features (learns "
        "textures in hundreds of steps); plain: a spectral-norm CNN learnt from scratch")
    discriminator_width: int = Field(16, ge=2, le=128, description="channels of the discriminator's first stage "
                                     "(plain); projected: each feature head has 4x as many")
    discriminator_lr: float = Field(1e-4, gt=0, description="the discriminator's learning rate (the generator's "
                                    "is training.learning_rate, 2e-4)")
    mode_seeking: float = Field(1.0, ge=0, description="weight of the mode-seeking (MSGAN) term that keeps two "
                                "latents of a class from giving the same image (0: off)")
    steps: int = Field(1500, ge=1, description="adversarial steps (one discriminator and one generator update)")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA of the generator weights (the exported one)")
    diffaugment: list[Literal[POLICIES]] = Field(  # type: ignore[valid-type]
        list(POLICIES), description="DiffAugment transforms applied to real and generated images for the "
        "discriminator (empty: none)")
    sample_every: int = Field(250, ge=0, description="save a grid of EMA samples every N steps (0: only the last)")
    holdout_fraction: float = Field(0.2, ge=0, lt=0.9, description="real images per class held out of GAN "
                                    "training for the quality measures (0: train on all; run evaluate on other "
                                    "real images)")
    quality_samples: int = Field(100, ge=2, description="generated images per class for the quality measures")
    feature_size: int = Field(128, ge=32, description="input size of the pretrained backbone for the quality "
                              "measures (multiple of 32)")
    min_images_per_class: int = Field(2, ge=1)
    training: TrainingConfig = TrainingConfig(batch_size=32, learning_rate=2e-4, epochs=1)

    @field_validator("diffaugment", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # the CLI: --diffaugment color,translation (or none)
            return [] if value.strip().lower() in ("", "none") else [v.strip() for v in value.split(",")]
        return value

    @field_validator("image_size")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value < 16 or value > 256 or value & (value - 1):
            raise ValueError(f"image_size must be a power of two from 16 to 256 (16, 32, 64, 128, 256), got {value}")
        return value

    @field_validator("feature_size")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        if value % 32:
            raise ValueError(f"feature_size must be a multiple of 32 for EfficientNet-Lite0, got {value}")
        return value

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3


class GenerateOptions(StrictModel):
    """What ``predict`` makes: ``n`` images of ``class_name`` (every class when not given), from ``seed``."""

    n: int = Field(16, ge=1, le=100_000)
    class_name: str | None = None
    seed: int = 0


def to_gan_range(frames: np.ndarray, channels: int) -> np.ndarray:
    """uint8 NxHxWx3 frames -> NCHW float32 in -1..1 (gray: the channel mean)."""
    x = frames.astype(np.float32)
    x = x.mean(axis=3, keepdims=True) if channels == 1 else x
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) / 127.5 - 1.0, dtype=np.float32)


def holdout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, ``round(fraction * n)`` images held out (none from classes with fewer than 4 images)."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(fraction * len(idx))) if len(idx) >= 4 else 0
        held.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.asarray(train, int)), np.sort(np.asarray(held, int))


class DefectSynthesis(Task):
    """Class-conditional GAN for defect images (see module docstring)."""

    name = "defect-synthesis"
    input_kind = "file"
    Config = DefectSynthesisConfig
    PredictOptions = GenerateOptions  # `shopfloor predict MODEL --n 100 --class scratches --out synth/`

    # ----------------------------------------------------------------- model
    @property
    def classes(self) -> list[str]:
        return self.state["classes"]

    @property
    def image_spec(self) -> ImageSpec:
        size = self.config.image_size
        return ImageSpec(height=size, width=size)

    def build_model(self) -> SynthesisModel:
        cfg = self.config
        return SynthesisModel(len(self.classes), cfg.channels, cfg.image_size, cfg.latent_dim, cfg.generator_width)

    def build_discriminator(self) -> torch.nn.Module:
        cfg, n = self.config, len(self.classes)
        if cfg.discriminator == "plain":
            return Discriminator(n, cfg.channels, cfg.image_size, cfg.discriminator_width)
        # the backbone's stride-16 block needs at least 4x4: smaller images are upsampled to 64
        return ProjectedDiscriminator(n, cfg.channels, max(cfg.image_size, 64),
                                      4 * cfg.discriminator_width)

    def export_module(self) -> SamplingGraph:
        return SamplingGraph(self.require_model().ema)

    def onnx_signature(self) -> OnnxSignature:
        latent = torch.randn(2, self.config.latent_dim)
        return OnnxSignature(example_inputs=(latent, torch.tensor([0, len(self.classes) - 1])),
                             input_names=["latent", "class_index"], output_names=["image"])

    # ----------------------------------------------------------------- verbs
    def fit(self, data: str | Path, out_dir: str | Path | None = None) -> "DefectSynthesis":
        cfg = self.config
        start = time.perf_counter()
        weights_path("efficientnet-lite0")  # the quality measures need the backbone: fail before training
        seed_everything(cfg.training.seed)
        if data is None:
            raise DataError("defect-synthesis needs --data: a folder with one sub-folder of images per class")
        paths, labels_list, classes = scan_class_folders(data, cfg.min_images_per_class, 1)
        labels = np.asarray(labels_list)
        self.state = {"classes": list(classes), "image_spec": self.image_spec.model_dump(),
                      "output": {"name": "image", "layout": "NCHW", "range": "0..255", "channels": cfg.channels},
                      "inputs": {"latent": ["N", cfg.latent_dim], "class_index": ["N"]}}
        frames, _ = read_frames(paths, self.image_spec, progress=cfg.training.progress, desc="reading images")
        images = to_gan_range(frames, cfg.channels)
        train_idx, held_idx = holdout_split(labels, cfg.holdout_fraction, cfg.training.seed)
        counts = np.bincount(labels[train_idx], minlength=len(classes))
        self.state["train_counts"] = {c: int(n) for c, n in zip(classes, counts)}
        small = [f"{c} ({n})" for c, n in zip(classes, counts) if n < 5]
        if small:
            self.note_warning(f"classes with fewer than 5 training images: {', '.join(small)}; the generator may "
                              "copy them (see the memorisation ratio in the report); add images if you have them")
        self.data_fingerprint = fingerprint_files(paths, Path(data))
        model = self.build_model()
        discriminator = self.build_discriminator()
        log_dir = Path(out_dir) / "training" if out_dir is not None else None
        summary = train_adversarial(model, discriminator, images[train_idx], labels[train_idx], cfg.training,
                                    cfg.steps, cfg.ema_decay, cfg.diffaugment, cfg.sample_every, log_dir,
                                    cfg.mode_seeking, cfg.discriminator_lr)
        self.torch_model = model.eval()
        self.state["training"] = {"steps": summary["steps"], "samples": summary["samples"],
                                  "last_losses": summary["history"][-1] if summary["history"] else None}
        self.export()
        self.metrics = {"n_train": int(len(train_idx)), "n_holdout": int(len(held_idx)), "steps": summary["steps"],
                        "fit_seconds": round(time.perf_counter() - start, 1)}
        if len(held_idx):
            quality = self.measure_quality(frames[held_idx], labels[held_idx], frames[train_idx], labels[train_idx],
                                           report_dir=Path(out_dir) / "report" if out_dir is not None else None,
                                           title="held-out real images")
            self.state["quality"] = quality
            self.metrics.update({k: v for k, v in quality["mean"].items()})
        if out_dir is not None:
            self.save(out_dir)
        return self

    def generate(self, n: int, class_name: str | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` images of ``class_name`` (or ``n`` of every class) through the exported graph: (uint8 NxHxWxC,
        class indices)."""
        self.require_model()
        if class_name is None:
            labels = np.repeat(np.arange(len(self.classes)), n)
        elif class_name in self.classes:
            labels = np.full(n, self.classes.index(class_name))
        else:
            raise ConfigError(f"unknown class {class_name!r}; this generator knows {', '.join(self.classes)}")
        latent = np.random.default_rng(seed).standard_normal((len(labels), self.config.latent_dim)).astype(np.float32)
        out = [self.runtime.run(latent=latent[sl], class_index=labels[sl].astype(np.int64))["image"]
               for sl in batched(len(labels), 256)]
        images = np.concatenate(out) if out else np.zeros((0, self.config.channels, *self._size()), np.float32)
        return np.round(images).clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1), labels

    def _size(self) -> tuple[int, int]:
        return self.config.image_size, self.config.image_size

    def predict(self, inputs: Sequence[Any] | None = None, out_dir: str | Path | None = None, explain: bool = False,
                n: int = 16, class_name: str | None = None, seed: int = 0) -> list[dict[str, Any]]:
        """Write generated images as PNG to ``out_dir/<class>/`` (default ``./synthetic``): ``n`` of ``class_name``,
        or ``n`` of every class. ``inputs`` may instead name classes, one image each. One row per image."""
        if inputs:
            names = [str(i) for i in ([inputs] if isinstance(inputs, (str, Path)) else inputs)]
            unknown = sorted(set(names) - set(self.classes))
            if unknown:
                raise ConfigError(f"defect-synthesis inputs are class names; unknown: {unknown}; this generator "
                                  f"knows {', '.join(self.classes)} (or use n and class_name)")
            groups = [(c, names.count(c)) for c in dict.fromkeys(names)]
        else:
            options = GenerateOptions(n=n, class_name=class_name, seed=seed)
            groups = [(options.class_name, options.n)] if options.class_name else [(c, options.n) for c in self.classes]
        from PIL import Image

        out = Path(out_dir) if out_dir is not None else Path("synthetic")
        rows = []
        for class_name_, count in groups:
            images, _ = self.generate(count, class_name_, seed)
            folder = out / class_name_
            folder.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(images):
                path = folder / f"{class_name_}_synth_s{seed}_{i:05d}.png"
                Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).save(path)
                rows.append({"path": str(path), "class": class_name_, "seed": seed, "index": i})
        return rows

    def evaluate(self, data: str | Path, report_dir: str | Path | None = None, **options: Any) -> dict[str, Any]:
        """Quality of the generator against the real images in ``data`` (class folders, images it did not train
        on): per class KID, precision, recall; with ``training_data`` (the folder it trained on) also the
        memorisation ratio and the nearest-training-image grid."""
        opts = self.EvaluateOptions(**options)
        held_paths, held_labels, held_frames = self._read_known(data)
        train_frames = train_labels = None
        if opts.training_data is not None:
            _, train_labels, train_frames = self._read_known(opts.training_data)
        quality = self.measure_quality(held_frames, held_labels, train_frames, train_labels, report_dir,
                                       title=f"real images in {data}")
        return {**quality["mean"], "per_class": quality["per_class"], "n_real": int(len(held_labels)),
                **({"report": quality["report"]} if "report" in quality else {})}

    class EvaluateOptions(StrictModel):
        """Options of ``evaluate``."""

        training_data: str | None = Field(None, description="the class folders the generator trained on: adds "
                                          "the memorisation check")

    def _read_known(self, data: str | Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
        paths, labels, classes = scan_class_folders(data, 1, 1)
        unknown = sorted(set(classes) - set(self.classes))
        if unknown:
            raise DataError(f"{data} has classes the generator was not trained on: {unknown}; it knows "
                            f"{', '.join(self.classes)}")
        mapped = np.asarray([self.classes.index(classes[i]) for i in labels])
        frames, _ = read_frames(paths, self.image_spec, desc="reading real images")
        return paths, mapped, frames

    def measure_quality(self, real: np.ndarray, real_labels: np.ndarray, train: np.ndarray | None,
                        train_labels: np.ndarray | None, report_dir: str | Path | None = None,
                        title: str = "real images") -> dict[str, Any]:
        """KID / precision / recall per class of ``quality_samples`` generated images vs ``real`` frames (uint8
        NxHxWx3 at the generator's size), and the memorisation ratio against ``train`` frames when given."""
        from .quality import FeatureExtractor, class_quality, nearest_neighbours

        cfg = self.config
        extract = FeatureExtractor(cfg.channels, cfg.image_size, cfg.feature_size)

        def pixels(frames: np.ndarray) -> np.ndarray:
            return (to_gan_range(frames, cfg.channels) + 1.0) * 127.5

        fake_frames, fake_labels = self.generate(cfg.quality_samples, None, seed=12345)
        fake_pixels = fake_frames.transpose(0, 3, 1, 2).astype(np.float32)
        fake_feats, real_feats = extract(fake_pixels), extract(pixels(real))
        train_feats = extract(pixels(train)) if train is not None else None
        per_class: dict[str, dict[str, Any]] = {}
        pairs: list[tuple[np.ndarray, np.ndarray, str]] = []
        for k, name in enumerate(self.classes):
            r = real_labels == k
            if not r.any():
                continue
            f = fake_labels == k
            t = None if train_labels is None or train_feats is None else train_labels == k
            per_class[name] = class_quality(real_feats[r], fake_feats[f],
                                            train_feats[t] if t is not None and t.any() else None)
            if t is not None and t.any() and train is not None:
                idx, dist = nearest_neighbours(fake_feats[f][:4], train_feats[t])  # type: ignore[index]
                for j, (i, d) in enumerate(zip(idx, dist)):
                    pairs.append((fake_frames[f][j], train[t][i], f"{name} d={d:.1f}"))
        keys = ["kid", "precision", "recall"] + (["memorisation_ratio"] if train is not None else [])
        mean = {f"{key}_mean": float(np.nanmean([row[key] for row in per_class.values()]))
                for key in keys if per_class and key in next(iter(per_class.values()))}
        result: dict[str, Any] = {"per_class": per_class, "mean": mean, "backbone": "efficientnet-lite0 (ImageNet, "
                                  "pooled 1280-d; FID/Inception weights are not available offline)",
                                  "against": title}
        if report_dir is not None:
            from .report import write_synthesis_report

            result["report"] = str(write_synthesis_report(report_dir, self, per_class, mean, pairs, title))
        return result

    @classmethod
    def demo(cls, out_dir: Path) -> dict[str, Any]:
        """A tiny generator on synthetic scratches/spots/cracks: train, measure, generate."""
        from ..synthetic import make_defect_classes

        out_dir = Path(out_dir)
        root = make_defect_classes(out_dir / "data" / "train", n_per_class=24, size=64, seed=0)
        task = cls(steps=150, generator_width=8, discriminator_width=8, sample_every=50, quality_samples=24,
                   training={"batch_size": 16})
        task.fit(root, out_dir=out_dir / "model")
        rows = task.predict(n=8, out_dir=out_dir / "generated")
        return {"task": cls.name, "kid_mean": task.metrics.get("kid_mean"),
                "precision_mean": task.metrics.get("precision_mean"), "recall_mean": task.metrics.get("recall_mean"),
                "memorisation_ratio_mean": task.metrics.get("memorisation_ratio_mean"), "generated": len(rows),
                "model": str(out_dir / "model"), "report": task.state.get("quality", {}).get("report")}

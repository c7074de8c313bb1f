"""Defect classification: a CNN that sorts product-surface images into defect classes.

Data: a folder with one sub-folder per class (png/jpg/jpeg/bmp/tif, grayscale or RGB, 8 or 16 bits or float,
any size not under a quarter of the input size). Pixel values, orientation and size follow the rules of
:class:`~shopfloor.inspection.images.ImageSpec`; the bit depth of deep images is detected at fit and recorded.
Model: ImageNet-pretrained EfficientNet-Lite0 (offline weights) fine-tuned, or ``simple-cnn``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shopfloor.core.artifact import fingerprint_files
from shopfloor.core.config import StrictModel, TrainingConfig
from shopfloor.core.errors import DataError
from shopfloor.core.heads import SoftmaxOutput
from shopfloor.core.metrics import classification_metrics
from shopfloor.core.runtime import OnnxModel, export_onnx
from shopfloor.core.split import stratified_split
from shopfloor.core.task import OnnxSignature, Task, batched
from shopfloor.core.training import SupervisedModule, fit_supervised, seed_everything

from ..augment import AugmentConfig, ImageAugmenter
from ..backbones import weights_path
from ..images import (
    IMAGE_EXTENSIONS,
    FrameInfo,
    ImageSource,
    ImageSpec,
    decode_frame,
    detect_bit_depth,
    expand_image_inputs,
    input_names,
    read_frames,
    scan_class_folders,
    stretch_message,
    to_model_input,
    warn_stretched,
)
from ..inputs import check_ranges, finish_predictions, fit_input_ranges, has_ranges
from .dataset import ImageArrayDataset
from .models import (
    CLASSIFIER_MODELS,
    EfficientNetClassifier,
    FeatureOutput,
    build_classifier,
)


class DefectClassificationConfig(StrictModel):
    """Settings of the defect-classification task."""

    model: Literal[CLASSIFIER_MODELS] = "efficientnet-lite0"  # type: ignore[valid-type]
    pretrained: bool = True
    image_size: int = Field(224, ge=32, description="square input size; multiples of 32 suit EfficientNet")
    keep_aspect: bool = Field(False, description="letterbox images instead of stretching them")
    bit_depth: Literal["auto", 8, 10, 12, 14, 16] = Field(
        "auto", description="significant bits of 16-bit images: auto detects them from the training images")
    min_images_per_class: int = Field(5, ge=2)
    class_weighting: Literal["balanced", "none"] = "balanced"
    augment: AugmentConfig = AugmentConfig()
    feature_views: int = Field(3, ge=0, description="augmented views per image when training the head on "
                               "frozen pretrained features (0 = originals only)")
    finetune_epochs: int = Field(0, ge=0, description="then fine-tune the whole pretrained network this many "
                                 "epochs (slow on CPU; 0 = head only)")
    finetune_learning_rate: float = Field(3e-4, gt=0)
    training: TrainingConfig = TrainingConfig(epochs=40, batch_size=64, learning_rate=2e-3, patience=6)

    @model_validator(mode="after")
    def _size_fits_backbone(self) -> "DefectClassificationConfig":
        if self.model.startswith("efficientnet") and self.image_size % 32:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 32 for {self.model}")
        return self


@dataclass
class LabelledImages:
    """Image paths with integer labels and class names (what a class-folder tree reads into)."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]
    root: Path | None = None

    @classmethod
    def from_folder(cls, root: str | Path, min_per_class: int = 2, min_classes: int = 2) -> "LabelledImages":
        paths, labels, classes = scan_class_folders(root, min_per_class, min_classes)
        return cls(paths, labels, classes, Path(root))

    def subset(self, indices: Sequence[int]) -> "LabelledImages":
        return LabelledImages([self.paths[i] for i in indices], [self.labels[i] for i in indices],
                              self.classes, self.root)


def _feature_views(extractor: OnnxModel, images: np.ndarray, labels: np.ndarray, augmenter: ImageAugmenter,
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


def _loaders(train_x, train_y, val_x, val_y, cfg: TrainingConfig) -> tuple[DataLoader, DataLoader]:
    """Shuffled seeded training loader and validation loader over datasets or (x, y) tensors."""
    train_ds = train_x if train_y is None else TensorDataset(train_x, train_y)
    val_ds = val_x if val_y is None else TensorDataset(val_x, torch.as_tensor(val_y).long())
    generator = torch.Generator().manual_seed(cfg.seed)
    train = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                       num_workers=cfg.num_workers, drop_last=len(train_ds) > cfg.batch_size)
    return train, DataLoader(val_ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers)


def _sub(log_dir: Path | None, name: str) -> Path | None:
    return log_dir / name if log_dir is not None else None


class DefectClassification(Task):
    """CNN defect classification from class-folder images (see module docstring)."""

    name = "defect-classification"
    input_kind = "image"
    input_suffixes = IMAGE_EXTENSIONS
    Config = DefectClassificationConfig

    # ----------------------------------------------------------------- model
    @property
    def classes(self) -> list[str]:
        return self.state["classes"]

    @property
    def image_spec(self) -> ImageSpec:
        if "image_spec" in self.state:
            return ImageSpec(**self.state["image_spec"])
        size = self.config.image_size
        return ImageSpec(height=size, width=size, keep_aspect=self.config.keep_aspect)

    def build_model(self, pretrained: bool = False) -> nn.Module:
        return build_classifier(self.config.model, len(self.classes), self.config.image_size, pretrained=pretrained)

    def export_module(self) -> nn.Module:
        return SoftmaxOutput(self.require_model())

    def onnx_signature(self) -> OnnxSignature:
        spec = self.image_spec
        return OnnxSignature(example_inputs=(torch.rand(1, 3, spec.height, spec.width) * 255,),
                             input_names=["image"], output_names=["probabilities"])

    # ----------------------------------------------------------------- verbs
    def fit(self, data: str | Path | LabelledImages, out_dir: str | Path | None = None) -> "DefectClassification":
        cfg = self.config
        train_cfg = cfg.training
        if cfg.pretrained and cfg.model.startswith("efficientnet"):
            weights_path(cfg.model)  # fail fast, before reading any data, when the weights are not installed
        seed_everything(train_cfg.seed)
        dataset = data if isinstance(data, LabelledImages) else LabelledImages.from_folder(
            data, min_per_class=cfg.min_images_per_class)
        bit_depth = detect_bit_depth(dataset.paths) if cfg.bit_depth == "auto" else cfg.bit_depth
        self.state = {
            "classes": list(dataset.classes),
            "image_spec": ImageSpec(height=cfg.image_size, width=cfg.image_size, keep_aspect=cfg.keep_aspect,
                                    bit_depth=bit_depth).model_dump(),
            "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "range": "0..255", "color": "RGB"},
            "normalisation": "(x - 127) / 128, inside the ONNX graph",
        }
        images, infos = read_frames(dataset.paths, self.image_spec, progress=train_cfg.progress,
                                    desc="reading training images")
        self.state["input_ranges"] = fit_input_ranges(infos)
        stretched = stretch_message(infos, [str(p) for p in dataset.paths], self.image_spec, "training images")
        if stretched:
            self.note_warning(stretched)
        labels = np.asarray(dataset.labels)
        train_idx, val_idx = stratified_split(labels, train_cfg.val_fraction, train_cfg.seed)
        self.data_fingerprint = fingerprint_files(dataset.paths, dataset.root)
        counts = np.bincount(labels[train_idx], minlength=len(dataset.classes)).astype(np.float32)
        weights = None
        if cfg.class_weighting == "balanced":
            weights = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
        loss = nn.CrossEntropyLoss(weight=weights)
        model = self.build_model(pretrained=cfg.pretrained)
        log_dir = Path(out_dir) / "training" if out_dir is not None else None
        train_images, val_images = images[train_idx], images[val_idx]
        train_labels, val_labels = labels[train_idx], labels[val_idx]
        augmenter = ImageAugmenter(cfg.augment)
        summaries = []
        if isinstance(model, EfficientNetClassifier):
            # Stage 1: head on frozen pretrained features (computed through ONNX Runtime, augmented views).
            extractor = OnnxModel(export_onnx(FeatureOutput(model).eval(), self.onnx_signature().example_inputs,
                                              ["image"], ["features"]), device=train_cfg.device)
            train_feats, train_feat_labels = _feature_views(extractor, train_images, train_labels, augmenter,
                                                            cfg.feature_views, train_cfg.progress)
            val_feats, _ = _feature_views(extractor, val_images, val_labels, augmenter, 0, train_cfg.progress)
            head = SupervisedModule(model.head, loss, train_cfg, task_kind="classification")
            summaries.append(fit_supervised(head, *_loaders(train_feats, train_feat_labels, val_feats, val_labels,
                                                            train_cfg), train_cfg, _sub(log_dir, "head")))
        if not isinstance(model, EfficientNetClassifier) or cfg.finetune_epochs:
            # End-to-end training on images (simple-cnn), or fine-tuning the whole pretrained network.
            stage_cfg = train_cfg if not isinstance(model, EfficientNetClassifier) else train_cfg.model_copy(
                update={"epochs": cfg.finetune_epochs, "learning_rate": cfg.finetune_learning_rate})
            full = SupervisedModule(model, loss, stage_cfg, train_transform=augmenter, task_kind="classification")
            summaries.append(fit_supervised(full, *_loaders(ImageArrayDataset(train_images, train_labels),
                                                            None, ImageArrayDataset(val_images, val_labels),
                                                            None, stage_cfg), stage_cfg, _sub(log_dir, "full")))
        self.torch_model = model.eval()
        self.is_global_zero = all(s["is_global_zero"] for s in summaries)
        if not self.is_global_zero:
            return self
        self.export()
        probs = self._probabilities(val_images)
        val = classification_metrics(val_labels, probs.argmax(1), probs, self.classes)
        self.metrics = {
            "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"], "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)), "epochs_run": sum(s["epochs_run"] for s in summaries),
        }
        if out_dir is not None:
            self.save(out_dir)
        return self

    def _probabilities(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        """Class probabilities for uint8 NxHxWx3 images, through ONNX Runtime."""
        from tqdm.auto import tqdm

        out = []
        for sl in tqdm(list(batched(len(images), 32)), desc="scoring", disable=not progress, leave=False):
            out.append(self.runtime.run(image=to_model_input(images[sl]))["probabilities"])
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def _test_set(self, data: str | Path | LabelledImages) -> tuple[LabelledImages, np.ndarray]:
        """Labelled test images mapped onto the model's class indices."""
        found = data if isinstance(data, LabelledImages) else LabelledImages.from_folder(data, 1, 1)
        unknown = sorted(set(found.classes) - set(self.classes))
        if unknown:
            raise DataError(f"test data has classes the model was not trained on: {unknown}; "
                            f"the model knows {self.classes}")
        labels = np.asarray([self.classes.index(found.classes[i]) for i in found.labels])
        return found, labels

    def evaluate(self, data: str | Path | LabelledImages, report_dir: str | Path | None = None,
                 **options: Any) -> dict[str, Any]:
        self.EvaluateOptions(**options)
        test, labels = self._test_set(data)
        images, infos = read_frames(test.paths, self.image_spec, progress=self.training.progress,
                                    desc="reading test images")
        names = [str(p) for p in test.paths]
        warn_stretched(infos, names, self.image_spec)
        flagged = check_ranges(self, names, infos)
        probs = self._probabilities(images, progress=self.training.progress)
        predicted = probs.argmax(1)
        metrics = classification_metrics(labels, predicted, probs, self.classes)
        metrics["n_out_of_range"] = sum(bool(f) for f in flagged) if has_ranges(self) else None
        if report_dir is not None:
            from .report import write_classification_report

            metrics["report"] = str(write_classification_report(
                report_dir, f"{self.name} evaluation", self.classes, test.paths, images, labels, probs, metrics))
        return metrics

    def predict(self, inputs: Sequence[ImageSource] | ImageSource, out_dir: str | Path | None = None,
                explain: bool = False, chunk: int = 256, skip_bad: bool = False) -> list[dict[str, Any]]:
        """Files, folders or in-memory images -> label, confidence, probabilities (+ Grad-CAM file).

        Inputs that cannot be read refuse the batch, all listed; with ``skip_bad`` they are skipped and returned as
        rows ``{"path", "input", "skipped": True, "error"}`` in their place. Rows of images far outside the training
        intensity ranges carry ``out_of_range`` (a warning; refused when ``strict``)."""
        items = expand_image_inputs(inputs)
        names = input_names(items)
        spec = self.image_spec
        rows: dict[int, dict[str, Any]] = {}
        infos: dict[int, FrameInfo] = {}
        errors: dict[int, DataError] = {}
        for sl in batched(len(items), chunk):  # bounded memory for large folders
            kept, frames = [], []
            for i in range(sl.start, sl.stop):
                try:
                    frame, infos[i] = decode_frame(items[i], spec, names[i])
                except DataError as exc:
                    errors[i] = exc
                    continue
                kept.append(i)
                frames.append(frame)
            if not kept or (errors and not skip_bad):
                continue  # the batch is refused below, every bad input listed: keep reading, stop scoring
            if self.strict:  # refuse before scoring and writing explanations
                check_ranges(self, [names[i] for i in kept], [infos[i] for i in kept])
            images = np.stack(frames)
            probs = self._probabilities(images)
            for i, p in zip(kept, probs):
                k = int(p.argmax())
                rows[i] = {"path": names[i], "label": self.classes[k], "confidence": float(p[k]),
                           "probabilities": {c: float(v) for c, v in zip(self.classes, p)}}
            if explain:
                from .report import write_explanations

                out = Path(out_dir) if out_dir is not None else Path("explanations")
                files = write_explanations(out, self.require_model(), self.classes, [names[i] for i in kept], images,
                                           probs.argmax(1))
                for i, file in zip(kept, files):
                    rows[i]["explanation"] = str(file)
        return finish_predictions(self, rows, errors, names, infos, spec, skip_bad, key="path")

    @classmethod
    def demo(cls, out_dir: Path) -> dict[str, Any]:
        """Synthetic scratches/spots/cracks: generate, train, evaluate, export, predict with explanation."""
        from ..synthetic import make_defect_classes

        out_dir = Path(out_dir)
        train_root = make_defect_classes(out_dir / "data" / "train", n_per_class=50, size=128, seed=0)
        test_root = make_defect_classes(out_dir / "data" / "test", n_per_class=15, size=128, seed=1)
        task = cls(image_size=128)
        task.fit(train_root, out_dir=out_dir / "model")
        metrics = task.evaluate(test_root, report_dir=out_dir / "report")
        examples = [sorted((test_root / c).iterdir())[0] for c in task.classes]
        predictions = task.predict(examples, out_dir=out_dir / "explanations", explain=True)
        return {"task": cls.name, "test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"],
                "n_test": metrics["n_test"], "model": str(out_dir / "model"), "report": metrics["report"],
                "predictions": predictions, "sample_inputs": [str(p) for p in examples]}

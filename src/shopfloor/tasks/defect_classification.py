"""Defect classification: a CNN that sorts product-surface images into defect classes.

Data: a folder with one sub-folder per class (png/jpg/jpeg/bmp/tif, grayscale or RGB, any size).
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
from torch.utils.data import DataLoader

from ..artifact import fingerprint_files
from ..config import StrictModel, TrainingConfig
from ..data.augment import AugmentConfig, ImageAugmenter
from ..data.images import (
    ImageSpec,
    is_image_file,
    list_images,
    read_images,
    scan_class_folders,
    to_model_input,
)
from ..data.split import stratified_split
from ..data.torch_datasets import ImageArrayDataset
from ..errors import DataError
from ..metrics.classification import classification_metrics
from ..models.classifiers import CLASSIFIER_MODELS, SoftmaxOutput, build_classifier
from ..training import SupervisedModule, fit_supervised, seed_everything
from .base import OnnxSignature, Task, batched


class DefectClassificationConfig(StrictModel):
    """Settings of the defect-classification task."""

    model: Literal[CLASSIFIER_MODELS] = "efficientnet-lite0"  # type: ignore[valid-type]
    pretrained: bool = True
    image_size: int = Field(224, ge=32, description="square input size; multiples of 32 suit EfficientNet")
    keep_aspect: bool = Field(False, description="letterbox images instead of stretching them")
    min_images_per_class: int = Field(5, ge=2)
    class_weighting: Literal["balanced", "none"] = "balanced"
    augment: AugmentConfig = AugmentConfig()
    training: TrainingConfig = TrainingConfig(epochs=4, batch_size=32, learning_rate=1e-3, patience=2)

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


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files from a mix of files and folders (folders contribute the images directly inside)."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise DataError(f"folder {p} holds no images to predict on")
            paths.extend(found)
        elif p.exists():
            if not is_image_file(p):
                raise DataError(f"{p} is not an image file (expected one of png, jpg, jpeg, bmp, tif)")
            paths.append(p)
        else:
            raise DataError(f"input {p} does not exist")
    return paths


class DefectClassification(Task):
    """CNN defect classification from class-folder images (see module docstring)."""

    name = "defect-classification"
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
        seed_everything(train_cfg.seed)
        dataset = data if isinstance(data, LabelledImages) else LabelledImages.from_folder(
            data, min_per_class=cfg.min_images_per_class)
        self.state = {
            "classes": list(dataset.classes),
            "image_spec": ImageSpec(height=cfg.image_size, width=cfg.image_size,
                                    keep_aspect=cfg.keep_aspect).model_dump(),
            "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "range": "0..255", "color": "RGB"},
            "normalisation": "(x - 127) / 128, inside the ONNX graph",
        }
        spec = self.image_spec
        images = read_images(dataset.paths, spec, progress=train_cfg.progress, desc="reading training images")
        labels = np.asarray(dataset.labels)
        train_idx, val_idx = stratified_split(labels, train_cfg.val_fraction, train_cfg.seed)
        self.data_fingerprint = fingerprint_files(dataset.paths, dataset.root)

        model = self.build_model(pretrained=cfg.pretrained)
        counts = np.bincount(labels[train_idx], minlength=len(dataset.classes)).astype(np.float32)
        weights = None
        if cfg.class_weighting == "balanced":
            weights = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
        module = SupervisedModule(model, nn.CrossEntropyLoss(weight=weights), train_cfg,
                                  train_transform=ImageAugmenter(cfg.augment), task_kind="classification")
        generator = torch.Generator().manual_seed(train_cfg.seed)
        train_loader = DataLoader(ImageArrayDataset(images[train_idx], labels[train_idx]),
                                  batch_size=train_cfg.batch_size, shuffle=True, generator=generator,
                                  num_workers=train_cfg.num_workers, drop_last=len(train_idx) > train_cfg.batch_size)
        val_loader = DataLoader(ImageArrayDataset(images[val_idx], labels[val_idx]),
                                batch_size=train_cfg.batch_size, num_workers=train_cfg.num_workers)
        log_dir = Path(out_dir) / "training" if out_dir is not None else None
        summary = fit_supervised(module, train_loader, val_loader, train_cfg, log_dir)
        self.torch_model = module.model.eval()
        self.is_global_zero = summary["is_global_zero"]
        if not self.is_global_zero:
            return self
        self.export()
        probs = self._probabilities(images[val_idx])
        val = classification_metrics(labels[val_idx], probs.argmax(1), probs, self.classes)
        self.metrics = {
            "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"], "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)), "epochs_run": summary["epochs_run"],
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
        images = read_images(test.paths, self.image_spec, progress=self.training.progress, desc="reading test images")
        probs = self._probabilities(images, progress=self.training.progress)
        predicted = probs.argmax(1)
        metrics = classification_metrics(labels, predicted, probs, self.classes)
        if report_dir is not None:
            from .defect_classification_report import write_classification_report

            metrics["report"] = str(write_classification_report(
                report_dir, self, test.paths, images, labels, probs, metrics))
        return metrics

    def predict(self, inputs: Sequence[str | Path], out_dir: str | Path | None = None,
                explain: bool = False) -> list[dict[str, Any]]:
        paths = expand_inputs(inputs)
        images = read_images(paths, self.image_spec)
        probs = self._probabilities(images)
        results = []
        for path, p in zip(paths, probs):
            k = int(p.argmax())
            results.append({"path": str(path), "label": self.classes[k], "confidence": float(p[k]),
                            "probabilities": {c: float(v) for c, v in zip(self.classes, p)}})
        if explain:
            from .defect_classification_report import write_explanations

            out = Path(out_dir) if out_dir is not None else Path("explanations")
            for result, file in zip(results, write_explanations(out, self, paths, images, probs.argmax(1))):
                result["explanation"] = str(file)
        return results

    @classmethod
    def demo(cls, out_dir: Path) -> dict[str, Any]:
        """Synthetic scratches/spots/cracks: generate, train, evaluate, export, predict with explanation."""
        from ..data.synthetic_images import make_defect_classes

        out_dir = Path(out_dir)
        train_root = make_defect_classes(out_dir / "data" / "train", n_per_class=50, size=128, seed=0)
        test_root = make_defect_classes(out_dir / "data" / "test", n_per_class=15, size=128, seed=1)
        task = cls(image_size=128, training={"epochs": 3, "batch_size": 32, "patience": 2})
        task.fit(train_root, out_dir=out_dir / "model")
        metrics = task.evaluate(test_root, report_dir=out_dir / "report")
        examples = [sorted((test_root / c).iterdir())[0] for c in task.classes]
        predictions = task.predict(examples, out_dir=out_dir / "explanations", explain=True)
        return {"task": cls.name, "test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"],
                "n_test": metrics["n_test"], "model": str(out_dir / "model"), "report": metrics["report"],
                "predictions": predictions}

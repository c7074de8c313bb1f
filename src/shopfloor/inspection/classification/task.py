"""Defect classification: a CNN that sorts product-surface images into defect classes.

Data: a folder with one sub-folder per class (png/jpg/jpeg/bmp/tif, grayscale or RGB, 8 or 16 bits or float,
any size not under a quarter of the input size). Pixel values, orientation and size follow the rules of
:class:`~shopfloor.inspection.images.ImageSpec`; the bit depth of deep images is detected at fit and recorded.
Model: ImageNet-pretrained EfficientNet-Lite0 (offline weights), or ``simple-cnn``.

With ``auto`` (the default) the validation split decides the input size, whether frozen features are enough or
the last stage / whole network is fine-tuned (within a time budget), and whether flip test-time augmentation pays
(:mod:`.autoconfig`); class-balanced sampling switches on for imbalanced sets; a softmax temperature fitted on the
validation split sits inside the exported graph (:mod:`.calibration`). Every choice, with the validation figures
it was made on, is recorded in ``state`` (``autoconfig``, ``sampling``, ``tta``, ``calibration``, ``summary``).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from shopfloor.core.artifact import fingerprint_files
from shopfloor.core.config import TrainingConfig
from shopfloor.core.custom import UserModelConfig, model_field
from shopfloor.core.errors import ConfigError, DataError
from shopfloor.core.metrics import classification_metrics
from shopfloor.core.split import stratified_split
from shopfloor.core.task import OnnxSignature, Task, batched
from shopfloor.core.training import seed_everything

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
from .autoconfig import (
    DepthSearch,
    Figures,
    choose_depth,
    choose_smallest_within,
    sampling_decision,
    size_candidates,
    tta_decision,
)
from .calibration import (
    MIN_ERRORS_TO_SHARPEN,
    CalibratedOutput,
    check_temperature,
    expected_calibration_error,
    fit_temperature,
    flips_from_augment,
    negative_log_likelihood,
    view_probabilities,
)
from .models import CLASSIFIER_MODELS, EfficientNetClassifier, build_classifier
from .stages import class_loss, finetune, seconds_per_image, train_head, view_logits
from .synthetic_mix import add_synthetic, plan_synthetic

log = logging.getLogger(__name__)


class DefectClassificationConfig(UserModelConfig):
    """Settings of the defect-classification task."""

    builtin_models, builtin_options = CLASSIFIER_MODELS, False
    model: str = model_field("efficientnet-lite0", CLASSIFIER_MODELS)
    pretrained: bool = True
    auto: bool = Field(False, description="choose the input size, how far to fine-tune and test-time augmentation "
                       "on the validation split (pretrained EfficientNet); false: the fixed values given here. Off "
                       "by default: on NEU and X-SDD the fixed pipeline scored higher (see docs)")
    auto_budget_seconds: float = Field(600.0, gt=0, description="auto: time budget for the fine-tuning "
                                       "candidates (each is skipped when its measured cost does not fit)")
    auto_finetune_epochs: int = Field(8, ge=2, description="auto: most epochs of a fine-tuning candidate")
    image_size: int = Field(224, ge=16, description="square input size; multiples of 32 suit EfficientNet (with "
                            "auto: the size the candidates are built around)")
    keep_aspect: bool = Field(False, description="letterbox images instead of stretching them")
    bit_depth: Literal["auto", 8, 10, 12, 14, 16] = Field(
        "auto", description="significant bits of 16-bit images: auto detects them from the training images")
    min_images_per_class: int = Field(5, ge=2)
    class_weighting: Literal["balanced", "none"] = Field(
        "balanced", description="balanced class weights in the loss (not applied while balanced sampling is on)")
    balanced_sampling: Literal["auto", "on", "off"] = Field(
        "auto", description="sample every class equally often; auto: on when the largest class has more than "
        "imbalance_ratio times the images of the smallest")
    imbalance_ratio: float = Field(3.0, ge=1, description="auto balanced sampling: largest/smallest class count "
                                   "above which it is switched on")
    augment: AugmentConfig = AugmentConfig()
    synthetic: str | None = Field(None, description="a defect-synthesis model directory: its generated images join "
                                  "the training split (never validation or test)")
    synthetic_per_class: int = Field(100, ge=1, description="with synthetic: generated images per class")
    synthetic_classes: list[str] | None = Field(None, description="with synthetic: the classes to generate (a,b on "
                                                "the CLI); default: every class the generator and the data share")
    feature_views: int = Field(3, ge=0, description="augmented views per image when training the head on "
                               "frozen pretrained features (0 = originals only)")
    finetune_epochs: int = Field(0, ge=0, description="then fine-tune the pretrained network this many epochs "
                                 "(slow on CPU; 0 = head only; with auto the validation split decides)")
    finetune_depth: Literal["all", "top"] = Field("all", description="what finetune_epochs trains: the whole "
                                                  "network, or its last stage (top)")
    finetune_learning_rate: float = Field(3e-4, gt=0)
    tta: Literal["auto"] | bool = Field("auto", description="test-time augmentation: average the flips used in "
                                        "training inside the graph; auto: on only when it removes validation "
                                        "errors (off when auto is false)")
    temperature: Literal["auto"] | float = Field("auto", description="softmax temperature in the graph; auto: "
                                                 "fitted on the validation split (1 = uncalibrated)")
    training: TrainingConfig = TrainingConfig(epochs=40, batch_size=64, learning_rate=2e-3, patience=6)

    @field_validator("synthetic_classes", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: Any) -> Any:
        if value == "auto":
            return value
        try:
            return check_temperature(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _size_fits_backbone(self) -> "DefectClassificationConfig":
        if self.model.startswith("efficientnet") and self.image_size % 32:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 32 for {self.model}")
        if self.tta is True and not self.flips:
            raise ValueError("tta true averages the flips the model was trained with, but augment has none "
                             "(augment.enabled, horizontal_flip and vertical_flip): enable a flip or set tta false")
        return self

    @property
    def flips(self) -> list[str]:
        """The flips test-time augmentation may average (those training augmentation used)."""
        if not self.augment.enabled:
            return []
        return flips_from_augment(self.augment.horizontal_flip, self.augment.vertical_flip)


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


def _sub(log_dir: Path | None, name: str) -> Path | None:
    return log_dir / name if log_dir is not None else None


def _summary(state: dict[str, Any]) -> str:
    """One line for `shopfloor info`: what was chosen and the calibration."""
    auto = state.get("autoconfig", {})
    spec = state.get("image_spec", {})
    parts = [f"{'auto' if auto else 'fixed'}: {spec.get('height')} px", f"depth {state.get('training_depth')}"]
    sampling = state.get("sampling", {})
    parts.append("balanced sampling" if sampling.get("balanced_sampling") else "shuffled sampling")
    flips = state.get("tta", {}).get("flips", [])
    parts.append(f"TTA {'+'.join(flips)}" if flips else "no TTA")
    cal = state.get("calibration", {})
    if cal:
        parts.append(f"temperature {cal['temperature']:.3f} (validation ECE {cal['val_ece_before']:.3f} -> "
                     f"{cal['val_ece_after']:.3f})")
    return ", ".join(parts)


class DefectClassification(Task):
    """CNN defect classification from class-folder images (see module docstring)."""

    name = "defect-classification"
    input_kind = "image"
    input_suffixes = IMAGE_EXTENSIONS
    Config = DefectClassificationConfig
    # fields added after models were first saved: those models trained this way (uncalibrated, no TTA)
    predates = {"auto": False, "tta": False, "temperature": 1.0, "balanced_sampling": "off", "finetune_depth": "all"}
    # int8 gate (where the runtime has one): the deployed probabilities decide the label; the uncalibrated twin is
    # only for the calibration figures of evaluate
    precision_checks = {"probabilities": "top1", "uncalibrated_probabilities": "report"}

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

    @property
    def temperature(self) -> float:
        """The softmax temperature inside the graph (1 for models saved before calibration)."""
        return float(self.state.get("calibration", {}).get("temperature", 1.0))

    @property
    def tta_flips(self) -> list[str]:
        """Flips averaged inside the graph (none: no test-time augmentation)."""
        return list(self.state.get("tta", {}).get("flips", []))

    def build_model(self, pretrained: bool = False, image_size: int | None = None) -> nn.Module:
        return build_classifier(self.config.model, len(self.classes), image_size or self.config.image_size,
                                pretrained=pretrained, options=self.config.model_options)

    def export_module(self) -> nn.Module:
        return CalibratedOutput(self.require_model(), self.temperature, self.tta_flips,
                                with_uncalibrated="calibration" in self.state)

    def onnx_signature(self) -> OnnxSignature:
        spec = self.image_spec
        outputs = ["probabilities"] + (["uncalibrated_probabilities"] if "calibration" in self.state else [])
        return OnnxSignature(example_inputs=(torch.rand(1, 3, spec.height, spec.width) * 255,),
                             input_names=["image"], output_names=outputs)

    # ----------------------------------------------------------------- verbs
    def fit(self, data: str | Path | LabelledImages, out_dir: str | Path | None = None) -> "DefectClassification":
        # with auto, the config is rewritten with the choices: a second fit starts again from the one asked for
        requested = getattr(self, "_requested_config", None) or self.config
        self._requested_config = requested
        self.config = cfg = requested
        train_cfg = cfg.training
        start = time.perf_counter()
        if cfg.pretrained and cfg.model.startswith("efficientnet"):
            weights_path(cfg.model)  # fail fast, before reading any data, when the weights are not installed
        seed_everything(train_cfg.seed)
        dataset = data if isinstance(data, LabelledImages) else LabelledImages.from_folder(
            data, min_per_class=cfg.min_images_per_class)
        bit_depth = detect_bit_depth(dataset.paths) if cfg.bit_depth == "auto" else cfg.bit_depth
        self.state = {
            "classes": list(dataset.classes),
            "image_spec": self._spec(cfg.image_size, bit_depth).model_dump(),
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
        synthetic = plan_synthetic(cfg.synthetic, cfg.synthetic_per_class, cfg.synthetic_classes, dataset.classes)
        counts = np.bincount(np.concatenate([labels[train_idx], synthetic.labels if synthetic else []]).astype(int),
                             minlength=len(dataset.classes))
        sampling = sampling_decision(counts, cfg.balanced_sampling, cfg.imbalance_ratio)
        self.state["sampling"] = sampling
        balanced = sampling["balanced_sampling"]
        loss = class_loss(counts, cfg.class_weighting, balanced)
        train_labels, val_labels = labels[train_idx], labels[val_idx]
        log_dir = Path(out_dir) / "training" if out_dir is not None else None
        augmenter = ImageAugmenter(cfg.augment)
        pretrained_net = cfg.model.startswith("efficientnet")
        auto = cfg.auto and pretrained_net
        record: dict[str, Any] = {}
        if auto:
            size, record["sizes"] = self._choose_size(dataset, images, infos, train_idx, val_idx, loss, augmenter,
                                                      bit_depth, balanced)
            record["chosen_size"] = size
            if size != cfg.image_size:
                self.config = cfg = self.Config.model_validate({**cfg.model_dump(), "image_size": size})
                self.state["image_spec"] = self._spec(size, bit_depth).model_dump()
                images, _ = read_frames(dataset.paths, self.image_spec, progress=train_cfg.progress,
                                        desc=f"reading training images at {size} px")
        train = add_synthetic((images[train_idx], train_labels), synthetic, self.image_spec, train_cfg.seed,
                              self.state)
        val = (images[val_idx], val_labels)
        del images
        model = self.build_model(pretrained=cfg.pretrained)
        summaries = []
        if isinstance(model, EfficientNetClassifier):
            summaries.append(train_head(model, train, val, loss, train_cfg, augmenter, cfg.feature_views, balanced,
                                        _sub(log_dir, "head")))
        depth = "head" if isinstance(model, EfficientNetClassifier) else "scratch"
        if auto:
            head = Figures.of(view_probabilities(view_logits(model, val[0]), 1.0), val_labels)
            search = self._choose_depth(model, head, train, val, loss, augmenter, balanced, log_dir)
            record["depth"] = search.to_state()
            depth = search.chosen
            if depth != "head":
                model = search.model  # type: ignore[attr-defined]
                summaries.append(search.summary)  # type: ignore[attr-defined]
        elif not isinstance(model, EfficientNetClassifier) or cfg.finetune_epochs:
            # end-to-end training (simple-cnn), or fine-tuning the pretrained network as asked
            depth = cfg.finetune_depth if isinstance(model, EfficientNetClassifier) else "scratch"
            stage_cfg = train_cfg if depth == "scratch" else train_cfg.model_copy(
                update={"epochs": cfg.finetune_epochs, "learning_rate": cfg.finetune_learning_rate})
            summaries.append(finetune(model, "all" if depth == "scratch" else depth, train, val, loss, stage_cfg,
                                      augmenter, balanced, _sub(log_dir, "full")))
        self.state["training_depth"] = depth
        self.torch_model = model.eval()
        self.is_global_zero = all(s["is_global_zero"] for s in summaries)
        if not self.is_global_zero:
            return self
        self._calibrate(val, auto, record)
        if auto:
            record["seconds"] = round(time.perf_counter() - start, 1)
            self.state["autoconfig"] = record
        self.state["summary"] = _summary(self.state)
        log.info("defect classification: %s", self.state["summary"])
        self.export()
        probs = self._probabilities(val[0])["probabilities"]
        scores = classification_metrics(val_labels, probs.argmax(1), probs, self.classes)
        self.metrics = {
            "val_accuracy": scores["accuracy"], "val_macro_f1": scores["macro_f1"], "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)), "epochs_run": sum(s["epochs_run"] for s in summaries),
            "temperature": self.temperature, "fit_seconds": round(time.perf_counter() - start, 1),
        }
        if out_dir is not None:
            self.save(out_dir)
        return self

    def _spec(self, size: int, bit_depth: int | None) -> ImageSpec:
        return ImageSpec(height=size, width=size, keep_aspect=self.config.keep_aspect, bit_depth=bit_depth)

    def _choose_size(self, dataset: LabelledImages, images: np.ndarray, infos: list[FrameInfo], train_idx: np.ndarray,
                     val_idx: np.ndarray, loss: nn.Module, augmenter: ImageAugmenter, bit_depth: int | None,
                     balanced: bool) -> tuple[int, dict[str, Any]]:
        """Score each candidate input size with a frozen-feature head (original images only) on the validation
        split; the smallest within the noise of the best wins (:mod:`.autoconfig`)."""
        cfg = self.config
        native = int(np.median([min(info.size) for info in infos]))
        candidates = size_candidates(cfg.image_size, native)
        labels = np.asarray(dataset.labels)
        head_cfg = cfg.training.model_copy(update={"progress": False})
        figures: dict[int, Figures] = {}
        seconds: dict[int, float] = {}
        for size in candidates:
            start = time.perf_counter()
            frames = images if size == cfg.image_size else read_frames(dataset.paths, self._spec(size, bit_depth))[0]
            model = build_classifier(cfg.model, len(self.classes), size, pretrained=cfg.pretrained)
            train_head(model, (frames[train_idx], labels[train_idx]), (frames[val_idx], labels[val_idx]), loss,
                       head_cfg, augmenter, 0, balanced, None)
            probs = view_probabilities(view_logits(model, frames[val_idx]), 1.0)
            figures[size] = Figures.of(probs, labels[val_idx])
            seconds[size] = round(time.perf_counter() - start, 1)
        chosen = choose_smallest_within(figures)
        table = {str(s): {**asdict(f), "seconds": seconds[s]} for s, f in figures.items()}
        return chosen, {"native_short_side": native, "candidates": table,
                        "rule": "frozen-feature head per size; the smallest whose validation errors are within "
                                "2 standard errors (paired) of the fewest"}

    def _choose_depth(self, model: EfficientNetClassifier, head: Figures, train: tuple, val: tuple, loss: nn.Module,
                      augmenter: ImageAugmenter, balanced: bool, log_dir: Path | None) -> DepthSearch:
        """Frozen head vs fine-tuning the last stage vs the whole network, within the time budget."""
        cfg = self.config
        n_train, n_val = len(train[1]), len(val[1])
        trained: dict[str, tuple[nn.Module, dict]] = {}

        def estimate(depth: str) -> tuple[float, int]:
            per_image = seconds_per_image(model, depth, train[0], augmenter, loss, min(cfg.training.batch_size, 32))
            return per_image * (n_train + n_val / 3), cfg.auto_finetune_epochs  # validation: forward only

        def run(depth: str, epochs: int) -> tuple[Figures, int, float]:
            start = time.perf_counter()
            trial = copy.deepcopy(model)
            stage_cfg = cfg.training.model_copy(update={"epochs": epochs, "learning_rate": cfg.finetune_learning_rate,
                                                        "patience": min(cfg.training.patience, 3)})
            summary = finetune(trial, depth, train, val, loss, stage_cfg, augmenter, balanced,
                               _sub(log_dir, f"finetune_{depth}"))
            trained[depth] = (trial, summary)
            figures = Figures.of(view_probabilities(view_logits(trial, val[0]), 1.0), val[1])
            return figures, summary["epochs_run"] + 1, time.perf_counter() - start

        search = choose_depth(head, ["top", "all"], cfg.auto_budget_seconds, estimate, run)
        if search.chosen != "head":
            search.model, search.summary = trained[search.chosen]  # type: ignore[attr-defined]
        return search

    def _calibrate(self, val: tuple[np.ndarray, np.ndarray], auto: bool, record: dict[str, Any]) -> None:
        """Decide test-time augmentation and fit the temperature on the validation split; record both."""
        cfg = self.config
        images, labels = val
        flips = cfg.flips
        logits = view_logits(self.require_model(), images, flips)
        if cfg.tta == "auto":
            if auto:
                decision = tta_decision(logits, labels, lambda views: fit_temperature(views, labels))
                record["tta"] = decision
                on, why = decision["on"], decision["why"]
            else:
                on, why = False, "auto is off"
        else:
            on, why = bool(cfg.tta), "set in the config"
        used = logits if on else logits[:1]
        self.state["tta"] = {"flips": flips if on else [], "why": why}
        temperature = fit_temperature(used, labels) if cfg.temperature == "auto" else float(cfg.temperature)
        errors = int((view_probabilities(used, 1.0).argmax(1) != labels).sum())
        before, after = view_probabilities(used, 1.0), view_probabilities(used, temperature)
        self.state["calibration"] = {
            "temperature": temperature, "how": ("fitted on the validation split (min NLL" + (
                f"; only {errors} validation errors (< {MIN_ERRORS_TO_SHARPEN}), so never below 1)"
                if errors < MIN_ERRORS_TO_SHARPEN else ")")) if cfg.temperature == "auto" else "set in the config",
            "n_val": int(len(labels)), "val_errors": errors,
            "val_ece_before": expected_calibration_error(before, labels),
            "val_ece_after": expected_calibration_error(after, labels),
            "val_nll_before": negative_log_likelihood(before, labels) if len(labels) else None,
            "val_nll_after": negative_log_likelihood(after, labels) if len(labels) else None,
        }


    def _probabilities(self, images: np.ndarray, progress: bool = False) -> dict[str, np.ndarray]:
        """The graph's outputs (``probabilities``, and ``uncalibrated_probabilities`` for calibrated models) for
        uint8 NxHxWx3 images, through ONNX Runtime."""
        from tqdm.auto import tqdm

        out: dict[str, list[np.ndarray]] = {}
        for sl in tqdm(list(batched(len(images), 32)), desc="scoring", disable=not progress, leave=False):
            for key, value in self.runtime.run(image=to_model_input(images[sl])).items():
                out.setdefault(key, []).append(value)
        if not out:
            return {"probabilities": np.zeros((0, len(self.classes)), np.float32)}
        return {key: np.concatenate(value) for key, value in out.items()}

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
        outputs = self._probabilities(images, progress=self.training.progress)
        probs = outputs["probabilities"]
        # models saved before calibration have one output: their probabilities are uncalibrated (temperature 1)
        uncalibrated = outputs.get("uncalibrated_probabilities", probs)
        predicted = probs.argmax(1)
        metrics = classification_metrics(labels, predicted, probs, self.classes)
        metrics["n_out_of_range"] = sum(bool(f) for f in flagged) if has_ranges(self) else None
        metrics["temperature"] = self.temperature
        metrics["tta_flips"] = self.tta_flips
        metrics["ece"] = expected_calibration_error(probs, labels)
        metrics["ece_uncalibrated"] = expected_calibration_error(uncalibrated, labels)
        metrics["nll"] = negative_log_likelihood(probs, labels) if len(labels) else None
        metrics["nll_uncalibrated"] = negative_log_likelihood(uncalibrated, labels) if len(labels) else None
        if report_dir is not None:
            from .report import write_classification_report

            metrics["report"] = str(write_classification_report(
                report_dir, f"{self.name} evaluation", self.classes, test.paths, images, labels, probs, metrics,
                uncalibrated=uncalibrated, state=self.state))
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
            probs = self._probabilities(images)["probabilities"]
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

    # ----------------------------------------------------------------- data quality (see ..quality)
    @classmethod
    def quality_data(cls, data: Any, model: Task | None = None, **options: Any) -> Any:
        """Class folders (or train/ and test/ of class folders) for `shopfloor check`: backbone embeddings, content
        hashes, image facts; with ``model`` its own features and input size."""
        from ..quality import image_quality_data

        return image_quality_data(data, model=model, **options)

    def labelling_candidates(self, pool: Any, **options: Any) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        from ..quality import image_labelling_candidates

        return image_labelling_candidates(self, pool, **options)

    @classmethod
    def with_added_labels(cls, data: Any, labels: Sequence[Any]) -> LabelledImages:
        from ..quality import add_image_labels

        return add_image_labels(LabelledImages.from_folder(data, min_per_class=1), labels)

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

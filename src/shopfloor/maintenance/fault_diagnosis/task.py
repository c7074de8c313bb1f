"""Fault diagnosis: classify bearing/machine condition from raw vibration segments.

Data: CWRU ``.mat`` files or a folder with one sub-folder per class (``.csv``/``.npy``/``.wav``),
see :mod:`shopfloor.maintenance.vibration`. Each recording is cut in time (train | gap | val | gap | test,
gaps one segment long) so that overlapping windows never straddle the split; ``fit`` uses only
the train and validation parts, ``evaluate`` (default ``--segments test``) only the held-out tail.
Model: WDCNN (wide first kernel) by default, or a shared sequence model (``--model lstm`` ...).
Training adds white noise at random SNR and random scaling to training batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shopfloor.core.artifact import fingerprint_arrays
from shopfloor.core.config import StrictModel, TrainingConfig
from shopfloor.core.custom import UserModelConfig, model_field
from shopfloor.core.errors import DataError
from shopfloor.core.heads import SoftmaxOutput
from shopfloor.core.metrics import classification_metrics
from shopfloor.core.ranges import InputRanges
from shopfloor.core.task import OnnxSignature, Task, batched, read_inputs, to_jsonable
from shopfloor.core.training import SupervisedModule, balanced_class_weights, fit_supervised, seed_everything

from ..checks import extreme_values, list_items
from ..vibration import (
    SIGNAL_EXTENSIONS,
    Recording,
    read_cwru_mat,
    read_recordings,
    read_signal_file,
    segment,
    segment_region,
    segment_statistics,
    signal_array,
    validate_recordings,
)
from .augment import SignalAugment, add_noise_at_snr
from .adapt import ADAPTATION_METHODS, MIN_SEGMENTS, adapt_batchnorm
from .models import NORMALIZATIONS, VIBRATION_MODELS, build_vibration_model


class FaultTrainingConfig(TrainingConfig):
    """Training defaults of fault diagnosis (a subclass, so a partial ``training`` dict keeps them)."""

    epochs: int = Field(25, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    patience: int = Field(6, ge=1)


class FaultDiagnosisConfig(UserModelConfig):
    """Settings of the fault-diagnosis task."""

    builtin_models = VIBRATION_MODELS
    model: str = model_field("wdcnn", VIBRATION_MODELS)
    model_options: dict[str, Any] = Field(default_factory=dict, description="extra keyword options of the model")
    frame: int = Field(32, ge=1, description="samples folded into one step for lstm/gru/transformer/cnn1d")
    normalization: Literal[NORMALIZATIONS] = Field(  # type: ignore[valid-type]
        "segment", description="segment: standardise every segment by its own mean and standard deviation (gain "
        "and load-dependent amplitude drop out); dataset: by the training windows' statistics (re-estimated on a "
        "new condition by `adapt`)")
    sampling_rate: float | None = Field(None, gt=0, description="Hz; required for .csv/.npy, checked for .wav/.mat")
    channels: list[str] = Field(default_factory=lambda: ["DE"], description="CWRU channels (DE, FE, BA)")
    segment_length: int = Field(2048, ge=64, description="samples per segment")
    train_stride: int = Field(128, ge=1, description="step between training segments (overlap = length - stride)")
    eval_stride: int = Field(256, ge=1, description="step between segments scored by evaluate")
    test_fraction: float = Field(0.2, ge=0, lt=0.9, description="tail of each recording held out for evaluate")
    augment: bool = Field(True, description="noise and scaling augmentation of training batches")
    snr_db_min: float = -8.0
    snr_db_max: float = 10.0
    noise_probability: float = Field(0.9, ge=0, le=1)
    scale_min: float = Field(0.8, gt=0)
    scale_max: float = Field(1.2, gt=0)
    equalizer_db: float = Field(6.0, ge=0, description="random smooth equaliser within +-N dB on training batches "
                                "(another transfer path or resonance, as another load gives); 0 = off")
    speed_change: float = Field(0.04, ge=0, lt=0.5, description="random speed change within +-this fraction on "
                                "training batches (fault frequencies follow the shaft speed, which drops with load); "
                                "0 = off")
    distortion_probability: float = Field(0.5, ge=0, le=1, description="share of training examples given the "
                                          "equaliser / speed change (each drawn separately)")
    class_weighting: Literal["balanced", "none"] = "balanced"
    training: FaultTrainingConfig = FaultTrainingConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "FaultDiagnosisConfig":
        if self.snr_db_min > self.snr_db_max or self.scale_min > self.scale_max:
            raise ValueError("snr_db_min/scale_min must not exceed snr_db_max/scale_max")
        return self


class FaultDiagnosisEvaluateOptions(StrictModel):
    """Options of ``shopfloor evaluate`` for fault diagnosis."""

    snr_db: list[float] = Field(default_factory=list, description="re-score with white noise at these SNRs (dB)")
    segments: Literal["test", "all"] = Field(
        "test", description="test: the held-out tail of each recording; all: whole recordings never trained on")
    noise_seed: int = 0

    @field_validator("snr_db", mode="before")
    @classmethod
    def _scalar_to_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, (int, float, str)) else value


def _recording_hash(rec: Recording) -> str:
    return fingerprint_arrays(rec.signal)


class FaultDiagnosis(Task):
    """Vibration fault diagnosis with a 1D CNN on raw segments (see module docstring)."""

    name = "fault-diagnosis"
    input_kind = "signal"
    input_suffixes = (".npy", ".wav", ".csv", ".mat")
    Config = FaultDiagnosisConfig
    EvaluateOptions = FaultDiagnosisEvaluateOptions
    predates = {"normalization": "dataset", "equalizer_db": 0.0, "speed_change": 0.0, "distortion_probability": 1.0}

    @property
    def classes(self) -> list[str]:
        return self.state["classes"]

    @property
    def channel_names(self) -> list[str]:
        """One name per input channel: the CWRU channels read, else ``channel_0``, ``channel_1``..."""
        names = list(self.state.get("channels") or [])
        n = self.state["n_channels"]
        return names if len(names) == n else [f"channel_{i}" for i in range(n)]

    # ----------------------------------------------------------------- model
    def build_model(self) -> nn.Module:
        cfg = self.config
        return build_vibration_model(cfg.model, self.state["n_channels"], len(self.classes), cfg.segment_length,
                                     frame=cfg.frame, normalization=cfg.normalization, **cfg.model_options)

    def export_module(self) -> nn.Module:
        return SoftmaxOutput(self.require_model())

    def onnx_signature(self) -> OnnxSignature:
        x = torch.randn(2, self.state["n_channels"], self.config.segment_length)
        return OnnxSignature(example_inputs=(x,), input_names=["signal"], output_names=["probabilities"])

    # ----------------------------------------------------------------- data
    def _read(self, data: str | Path | Sequence[Recording]) -> list[Recording]:
        cfg = self.config
        rate = self.state.get("sampling_rate", cfg.sampling_rate)
        if isinstance(data, (str, Path)):
            recordings = read_recordings(data, rate, cfg.channels)
        else:
            recordings = list(data)
            for rec in recordings:
                if rec.label is None:
                    raise DataError(f"recording {rec.source} has no label; labelled data is needed here")
        validate_recordings(recordings, cfg.segment_length)
        if "sampling_rate" in self.state and recordings[0].sampling_rate != self.state["sampling_rate"]:
            raise DataError(f"the data is sampled at {recordings[0].sampling_rate:g} Hz but the model was trained "
                            f"at {self.state['sampling_rate']:g} Hz; resample the recordings")
        if "n_channels" in self.state and recordings[0].n_channels != self.state["n_channels"]:
            raise DataError(f"the data has {recordings[0].n_channels} channels, the model expects "
                            f"{self.state['n_channels']}")
        return recordings

    def _region(self, recordings: Sequence[Recording], region: str, stride: int) -> tuple[np.ndarray, np.ndarray]:
        return segment_region(recordings, region, self.config.segment_length, stride, self.config.test_fraction,
                              self.training.val_fraction, self.classes)

    def augmentation(self) -> SignalAugment | None:
        """The training batches' noise and scaling augmentation (``None`` with ``augment=False``)."""
        cfg = self.config
        return SignalAugment((cfg.snr_db_min, cfg.snr_db_max), cfg.noise_probability, (cfg.scale_min, cfg.scale_max),
                             cfg.equalizer_db, cfg.speed_change, cfg.distortion_probability) if cfg.augment else None

    # ----------------------------------------------------------------- verbs
    def fit(self, data: str | Path | Sequence[Recording], out_dir: str | Path | None = None) -> "FaultDiagnosis":
        cfg, train_cfg = self.config, self.training
        seed_everything(train_cfg.seed)
        self.state = {}
        recordings = self._read(data)
        classes = sorted({rec.label for rec in recordings})  # type: ignore[type-var]
        if len(classes) < 2:
            raise DataError(f"fault diagnosis needs at least two classes; found only {classes}")
        self.state = {
            "classes": classes,
            "n_channels": recordings[0].n_channels,
            "sampling_rate": recordings[0].sampling_rate,
            "channels": list(cfg.channels),
            "split": (f"time split per recording: train | gap | val | gap | test, gaps {cfg.segment_length} "
                      f"samples, test = last {cfg.test_fraction:.0%}, val = last {train_cfg.val_fraction:.0%} "
                      "of the rest"),
            "trained_recordings": sorted({_recording_hash(r) for r in recordings}),
            "input": {"name": "signal", "layout": "(batch, channels, samples)", "dtype": "float32",
                      "samples": cfg.segment_length, "units": "raw sensor units; standardised inside the graph"},
        }
        self._check_duplicates(recordings)
        x_train, y_train = self._region(recordings, "train", cfg.train_stride)
        x_val, y_val = self._region(recordings, "val", cfg.eval_stride)
        missing = sorted(set(classes) - {classes[i] for i in np.unique(y_train)})
        if missing:
            raise DataError(f"classes {missing} have no training segments")
        statistics, names = segment_statistics(x_train, self.channel_names)  # clean training segments
        self.state["input_ranges"] = InputRanges.fit(statistics, names).to_state()
        augment = self.augmentation()
        if augment is not None:  # validate on clean and noisy copies so early stopping rewards robustness
            generator = torch.Generator().manual_seed(train_cfg.seed)
            snr = torch.empty(len(x_val)).uniform_(cfg.snr_db_min, cfg.snr_db_max, generator=generator)
            noisy = add_noise_at_snr(torch.from_numpy(x_val), snr, generator).numpy()
            x_val, y_val = np.concatenate([x_val, noisy]), np.concatenate([y_val, y_val])
        self.data_fingerprint = fingerprint_arrays(*[r.signal for r in recordings],
                                                   np.frombuffer("\n".join(r.label or "" for r in recordings)
                                                                 .encode(), dtype=np.uint8))

        model = self.build_model()
        model.mean.copy_(torch.from_numpy(x_train.mean(axis=(0, 2), keepdims=True)))
        model.std.copy_(torch.from_numpy(x_train.std(axis=(0, 2), keepdims=True) + 1e-8))
        weights = balanced_class_weights(y_train, len(classes)) if cfg.class_weighting == "balanced" else None
        module = SupervisedModule(model, nn.CrossEntropyLoss(weight=weights), train_cfg, train_transform=augment)
        generator = torch.Generator().manual_seed(train_cfg.seed)
        train_loader = DataLoader(TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)),
                                  batch_size=train_cfg.batch_size, shuffle=True, generator=generator,
                                  num_workers=train_cfg.num_workers, drop_last=len(y_train) > train_cfg.batch_size)
        val_loader = DataLoader(TensorDataset(torch.from_numpy(x_val), torch.from_numpy(y_val)),
                                batch_size=256, num_workers=train_cfg.num_workers)
        log_dir = Path(out_dir) / "training" if out_dir is not None else None
        summary = fit_supervised(module, train_loader, val_loader, train_cfg, log_dir)
        self.torch_model = module.model.eval()
        if not summary["is_global_zero"]:
            return self
        self.export()
        probs = self._probabilities(x_val)
        val = classification_metrics(y_val, probs.argmax(1), probs, classes)
        self.metrics = {"val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"],
                        "n_train_segments": int(len(y_train)), "n_val_segments": int(len(y_val)),
                        "epochs_run": summary["epochs_run"]}
        if out_dir is not None:
            self.save(out_dir)
        return self

    def _check_duplicates(self, recordings: Sequence[Recording]) -> None:
        """The same signal twice: under two classes it is a contradictory label (refused); under one it counts
        twice in training and test (a warning kept in the model)."""
        by_hash: dict[str, list[Recording]] = {}
        for rec in recordings:
            by_hash.setdefault(_recording_hash(rec), []).append(rec)
        repeated = [group for group in by_hash.values() if len(group) > 1]
        conflicting = [g for g in repeated if len({r.label for r in g}) > 1]
        if conflicting:
            listed = list_items([" = ".join(f"{r.source} ({r.label})" for r in g) for g in conflicting], 5)
            raise DataError(f"{len(conflicting)} recording(s) appear under different classes with identical "
                            f"samples: {listed}. A signal has one class; remove the wrong copies")
        if repeated:
            listed = list_items([" = ".join(r.source for r in g) for g in repeated], 5)
            self.note_warning(f"{sum(len(g) - 1 for g in repeated)} recording(s) are exact copies of others: {listed}. "
                              "Copies count twice in training and in the test tail; remove them unless intended")

    def _flag_recordings(self, records: list[str], segments: list[np.ndarray]) -> list[list[str]]:
        """Flag (warn about, or with ``strict`` refuse) the recordings with a segment whose amplitude statistics
        (RMS, peak |x| per channel) lie far outside the training ranges; none for models saved before them."""
        ranges = InputRanges.from_state(self.state.get("input_ranges"))
        if ranges is None or not records:
            return [[] for _ in records]
        low, high = [], []
        for x in segments:
            statistics, _ = segment_statistics(x, self.channel_names)
            low.append(statistics.min(axis=0))
            high.append(statistics.max(axis=0))
        return self.flag_out_of_range("input_ranges", records, extreme_values(np.stack(low), np.stack(high), ranges))

    def _probabilities(self, segments: np.ndarray) -> np.ndarray:
        """Class probabilities of raw segments (n, channels, samples) through ONNX Runtime."""
        out = [self.runtime.run(signal=np.ascontiguousarray(segments[sl], dtype=np.float32))["probabilities"]
               for sl in batched(len(segments), 256)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def evaluate(self, data: str | Path | Sequence[Recording], report_dir: str | Path | None = None,
                 **options: Any) -> dict[str, Any]:
        opts = self.EvaluateOptions(**options)
        recordings = self._read(data)
        if opts.segments == "test" and self.config.test_fraction == 0:
            raise DataError("this model was trained with test_fraction 0 (no held-out tail); evaluate recordings "
                            "it has not seen with --segments all")
        if opts.segments == "all":
            seen = set(self.state.get("trained_recordings", []))
            reused = [r.source for r in recordings if _recording_hash(r) in seen]
            if reused:
                raise DataError(f"{len(reused)} recording(s) were used in training (e.g. {reused[0]}); scoring them "
                                "whole would leak. Use --segments test (the held-out tail) or other recordings")
        parts = [self._region([rec], opts.segments, self.config.eval_stride) for rec in recordings]
        flagged = self._flag_recordings([r.source for r in recordings], [x for x, _ in parts])
        x, y = np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
        probs = self._probabilities(x)
        metrics = classification_metrics(y, probs.argmax(1), probs, self.classes)
        metrics["segments"] = opts.segments
        adaptation = self.state.get("adaptation")
        metrics["adaptation"] = adaptation["method"] if adaptation else None
        if adaptation:  # transductive when the scored recordings are the (unlabelled) adaptation data
            used = set(adaptation["recordings"])
            metrics["n_recordings_adapted_on"] = sum(1 for r in recordings if _recording_hash(r) in used)
        metrics["n_out_of_range"] = sum(1 for f in flagged if f) if "input_ranges" in self.state else None
        noisy_predictions = {}
        for k, snr in enumerate(opts.snr_db):
            generator = torch.Generator().manual_seed(opts.noise_seed + k)
            noisy = add_noise_at_snr(torch.from_numpy(x), float(snr), generator).numpy()
            predicted = self._probabilities(noisy).argmax(1)
            noisy_predictions[snr] = predicted
            metrics[f"accuracy_snr_{snr:g}"] = float((predicted == y).mean())
        if report_dir is not None:
            metrics["report"] = str(self._write_report(Path(report_dir), x, y, probs, noisy_predictions, metrics))
        return to_jsonable(metrics)

    def adapt(self, data: str | Path | Sequence[str | Path | np.ndarray | Recording], out_dir: str | Path | None = None,
              method: str = "adabn", skip_bad: bool = False) -> "FaultDiagnosis":
        """Adapt the fitted model, without labels, to the operating condition of ``data`` (unlabelled recordings:
        a folder, files or arrays, read like :meth:`predict` inputs; class names in file names are ignored).

        ``adabn`` re-estimates the input standardisation and every BatchNorm statistic on the target segments,
        passed through the training augmentation as the training batches were (:func:`~.adapt.adapt_batchnorm`);
        the weights stay. The adaptation is recorded in ``state["adaptation"]``
        (method, data fingerprint, recordings, segments), the training ranges are widened to cover the target
        amplitudes, and the graph is re-exported, so ``evaluate``/``predict``/``save`` use the adapted model. With
        ``out_dir`` it is saved there."""
        model = self.require_model()
        if method not in ADAPTATION_METHODS:
            raise DataError(f"unknown adaptation method {method!r}; choose one of: {', '.join(ADAPTATION_METHODS)}")
        if isinstance(data, (str, Path, np.ndarray, Recording)):
            data = [data]
        items = list(enumerate(self._expand_folders(list(data))))
        length, stride = self.config.segment_length, self.config.eval_stride

        def read(pair: tuple[int, Any]) -> Recording:
            rec = self._read_one(pair[1], pair[0])
            if rec.n_samples < length:
                raise DataError(f"{rec.source} has {rec.n_samples} samples, shorter than one segment of {length}")
            return rec

        kept, _ = read_inputs(items, read, skip_bad, name=lambda pair: _input_name(*pair))
        recordings = [rec for _, rec in kept]
        segments = np.concatenate([segment(r.signal, length, stride) for r in recordings]) if recordings else \
            np.zeros((0, self.state["n_channels"], length), np.float32)
        if len(segments) < MIN_SEGMENTS:
            raise DataError(f"adaptation got {len(segments)} segment(s) of {length} samples (every {stride}); it needs "
                            f"at least {MIN_SEGMENTS} to estimate normalisation statistics. Give longer or more "
                            "recordings of the new operating condition")
        summary = adapt_batchnorm(model, segments, seed=self.training.seed, transform=self.augmentation())
        statistics, names = segment_statistics(segments, self.channel_names)
        ranges = InputRanges.from_state(self.state.get("input_ranges"))
        if ranges is not None:
            target = InputRanges.fit(statistics, names)
            self.state["input_ranges"] = InputRanges(names, np.minimum(ranges.low, target.low).tolist(),
                                                     np.maximum(ranges.high, target.high).tolist(),
                                                     ranges.tolerance).to_state()
        record = {"method": method, "labels_used": False, "n_recordings": len(recordings), **summary,
                  "segment_stride": stride, "data_fingerprint": fingerprint_arrays(*[r.signal for r in recordings]),
                  "recordings": [_recording_hash(r) for r in recordings],
                  "sources": [Path(r.source).name for r in recordings][:50]}
        self.state["adaptation"] = record
        self.state.setdefault("adaptation_history", []).append({k: record[k] for k in
                                                                 ("method", "n_recordings", "n_segments",
                                                                  "data_fingerprint")})
        self.export()
        if out_dir is not None:
            self.save(out_dir)
        return self

    def _write_report(self, out: Path, x: np.ndarray, y: np.ndarray, probs: np.ndarray,
                      noisy: dict[float, np.ndarray], metrics: dict[str, Any]) -> Path:
        from sklearn.metrics import confusion_matrix

        from shopfloor.core.metrics import one_vs_rest_roc
        from shopfloor.core.report import Report, confusion_matrix_figure, roc_curves_figure

        report = Report(out, "Fault diagnosis: evaluation")
        report.text(f"{metrics['n_test']} segments of {self.config.segment_length} samples "
                    f"({self.state['sampling_rate']:g} Hz) from the {metrics['segments']} part of each recording; "
                    f"{self.state['split']}.")
        report.metrics({k: v for k, v in metrics.items() if k != "report"})
        report.table([{"class": c, **v} for c, v in metrics["per_class"].items()], "Per class")
        report.figure(confusion_matrix_figure(np.asarray(metrics["confusion_matrix"]), self.classes), "confusion",
                      "clean test segments")
        for snr, predicted in noisy.items():
            cm = confusion_matrix(y, predicted, labels=list(range(len(self.classes))))
            report.figure(confusion_matrix_figure(cm, self.classes, f"Confusion at SNR {snr:g} dB"),
                          f"confusion_snr_{snr:g}", f"white noise at {snr:g} dB")
        curves = one_vs_rest_roc(y, probs, self.classes)
        if curves:
            report.figure(roc_curves_figure(curves), "roc", "one-vs-rest ROC, clean segments")
        report.figure(_example_segments_figure(x, y, probs, self.classes, self.state["sampling_rate"]), "examples",
                      "one test segment per class: waveform and envelope spectrum")
        first = [int(np.argmax(y == k)) for k in range(len(self.classes)) if (y == k).any()]
        attributions = self._attributions(x[first], probs[first].argmax(1))
        report.figure(_attribution_figure(x[first], attributions, [self.classes[y[i]] for i in first],
                                          self.state["sampling_rate"]), "attributions",
                      "integrated gradients of the predicted class: which parts of each segment drove it")
        return report.write()

    def predict(self, inputs: Sequence[str | Path | np.ndarray | Recording], out_dir: str | Path | None = None,
                explain: bool = False, skip_bad: bool = False) -> list[dict[str, Any]]:
        """One diagnosis per input signal (a file, a folder of signal files, or an array ``(samples,)`` /
        ``(samples, channels)`` like the files; one path or array is one input): the mean class probabilities over
        its non-overlapping segments, and the per-segment votes. An input that cannot be read or used refuses the
        batch (all problems listed); with ``skip_bad`` it is skipped and reported as a row ``{"input", "skipped":
        True, "error"}``. Inputs whose amplitude lies far outside the training range are flagged
        (``out_of_range``), refused when ``strict``."""
        if isinstance(inputs, (str, Path, np.ndarray, Recording)):
            inputs = [inputs]
        items = list(enumerate(self._expand_folders(list(inputs))))
        length = self.config.segment_length

        def read(pair: tuple[int, Any]) -> tuple[Recording, np.ndarray]:
            rec = self._read_one(pair[1], pair[0])
            if rec.n_samples < length:
                raise DataError(f"{rec.source} has {rec.n_samples} samples, shorter than one segment of {length}")
            return rec, segment(rec.signal, length, length)

        kept, skipped = read_inputs(items, read, skip_bad, name=lambda pair: _input_name(*pair))
        flagged = self._flag_recordings([rec.source for _, (rec, _) in kept], [x for _, (_, x) in kept])
        rows_of = {}
        for (index, (rec, segments)), columns in zip(kept, flagged):
            probs = self._probabilities(segments)
            mean = probs.mean(axis=0)
            k = int(mean.argmax())
            votes = np.bincount(probs.argmax(1), minlength=len(self.classes))
            result = {"input": rec.source, "label": self.classes[k], "confidence": float(mean[k]),
                      "probabilities": {c: float(v) for c, v in zip(self.classes, mean)},
                      "n_segments": int(len(segments)),
                      "segment_votes": {c: int(v) for c, v in zip(self.classes, votes) if v}}
            if "input_ranges" in self.state:
                self.mark_out_of_range([result], [columns])
            if explain:
                result["channel_attribution"] = self._channel_attribution(segments, k)
            rows_of[index] = result
        bad = iter(skipped)
        return [rows_of[index] if index in rows_of else next(bad) for index, _ in items]

    @staticmethod
    def _expand_folders(inputs: list[Any]) -> list[Any]:
        """A folder stands for the signal files under it (sorted); everything else is kept as given."""
        expanded: list[Any] = []
        for item in inputs:
            if isinstance(item, (str, Path)) and Path(item).is_dir():
                files = sorted(p for p in Path(item).rglob("*") if p.is_file() and not p.name.startswith(".")
                               and p.suffix.lower() in (*SIGNAL_EXTENSIONS, ".mat"))
                expanded.extend(files or [item])  # an empty folder stays, to be reported as unreadable
            else:
                expanded.append(item)
        return expanded

    def _read_one(self, item: str | Path | np.ndarray | Recording, index: int = 0) -> Recording:
        """One predict input as a validated recording at the model's rate and channel count."""
        rate = self.state["sampling_rate"]
        if isinstance(item, Recording):
            rec = Recording(signal_array(np.asarray(item.signal).T, item.source, layout_known=True), item.sampling_rate,
                            item.label, item.source)
            if abs(rec.sampling_rate - rate) > 1e-6 * rate:
                raise DataError(f"{rec.source} is sampled at {rec.sampling_rate:g} Hz but the model was trained at "
                                f"{rate:g} Hz; resample the recording")
        elif isinstance(item, np.ndarray):
            rec = Recording(signal_array(item, f"<array {index}>"), rate, source=f"<array {index}>")
        elif isinstance(item, (str, Path)):
            if Path(item).is_dir():
                raise DataError(f"{item} is a folder without .csv/.npy/.wav/.mat signal files")
            if Path(item).suffix.lower() == ".mat":
                rec = read_cwru_mat(item, self.state.get("channels", self.config.channels), rate, labelled=False)
            else:
                rec = read_signal_file(item, rate)
        else:
            raise DataError(f"input {index} is a {type(item).__name__}; give a signal file path or a numpy array "
                            "(samples,) or (samples, channels)")
        validate_recordings([rec])
        if rec.n_channels != self.state["n_channels"]:
            raise DataError(f"{rec.source} has {rec.n_channels} channel(s), the model expects "
                            f"{self.state['n_channels']} ({', '.join(self.channel_names)}); arrays and files are "
                            "(samples, channels)")
        return rec

    def _attributions(self, segments: np.ndarray, targets: Sequence[int]) -> np.ndarray:
        """Integrated gradients (zero baseline) of each segment's ``target`` class probability:
        (n, channels, samples)."""
        from shopfloor.core.explain.attribution import integrated_gradients

        model = self.export_module().eval()
        targets_t = torch.as_tensor(np.asarray(targets), dtype=torch.long)
        out = []
        for i, target in enumerate(targets_t):
            def class_probability(x: torch.Tensor, k: int = int(target)) -> torch.Tensor:
                return model(x)[:, k]

            out.append(integrated_gradients(class_probability, segments[i:i + 1], np.zeros_like(segments[i:i + 1]),
                                            n_steps=16))
        return np.concatenate(out) if out else np.zeros((0, *segments.shape[1:]))

    def _channel_attribution(self, segments: np.ndarray, target: int) -> dict[str, float]:
        """Share of integrated-gradients attribution per input channel for class ``target``."""
        attributions = self._attributions(segments[:8], [target] * min(8, len(segments)))
        per_channel = np.abs(attributions).sum(axis=(0, 2))
        share = per_channel / max(per_channel.sum(), 1e-12)
        names = self.state.get("channels") if len(self.state.get("channels", [])) == len(share) else None
        names = names or [f"channel_{i}" for i in range(len(share))]
        return {n: float(v) for n, v in zip(names, share)}

    @classmethod
    def demo(cls, out_dir: Path) -> dict[str, Any]:
        """Simulated bearing vibration (normal, outer race, inner race, ball): generate, train, evaluate
        with noise, predict."""
        from .simulator import simulate_bearing_signal, write_bearing_dataset

        out_dir = Path(out_dir)
        root = write_bearing_dataset(out_dir / "data", recordings_per_class=2, duration_s=4.0, seed=0)
        task = cls(sampling_rate=12_000, segment_length=1024, train_stride=64,
                   training={"epochs": 8, "batch_size": 64, "patience": 3})
        task.fit(root, out_dir=out_dir / "model")
        metrics = task.evaluate(root, report_dir=out_dir / "report", snr_db=[0])
        unseen = simulate_bearing_signal("inner_race", duration_s=1.0, rpm=1750, seed=99)
        predictions = task.predict([unseen])
        np.save(out_dir / "data" / "unseen_inner_race.npy", unseen)  # what a sensor would send to the server
        return {"task": cls.name, "test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"],
                "accuracy_snr_0": metrics["accuracy_snr_0"], "n_test": metrics["n_test"],
                "model": str(out_dir / "model"), "report": metrics["report"],
                "prediction_inner_race": predictions[0]["label"],
                "sample_inputs": [str(out_dir / "data" / "unseen_inner_race.npy")]}


def _input_name(index: int, item: Any) -> str:
    """How a predict input is named in messages and skipped rows."""
    if isinstance(item, np.ndarray):
        return f"<array {index}>"
    return item.source if isinstance(item, Recording) else str(item)


def _attribution_figure(segments: np.ndarray, attributions: np.ndarray, titles: Sequence[str], sampling_rate: float):
    """Each segment (first channel) with its |attribution|, smoothed over 1 ms, shaded underneath."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(segments), 1, figsize=(10, 1.2 * len(segments) + 0.5), squeeze=False)
    width = max(1, int(sampling_rate / 1000))
    for ax, signal, attr, title in zip(axes[:, 0], segments[:, 0], np.abs(attributions).sum(axis=1), titles):
        t = np.arange(len(signal)) / sampling_rate * 1000
        smooth = np.convolve(attr, np.ones(width) / width, mode="same")
        scale = np.abs(signal).max() / max(smooth.max(), 1e-12)
        ax.fill_between(t, 0, smooth * scale, color="#e66", alpha=0.5, lw=0)
        ax.plot(t, signal, lw=0.5, color="#246")
        ax.set_ylabel(title, rotation=0, ha="right", fontsize=8)
    axes[-1, 0].set_xlabel("time [ms]")
    fig.tight_layout()
    return fig


def _example_segments_figure(x: np.ndarray, y: np.ndarray, probs: np.ndarray, classes: Sequence[str],
                             sampling_rate: float):
    """Waveform and envelope spectrum (Hilbert) of the first test segment of each class."""
    import matplotlib.pyplot as plt
    from scipy.signal import hilbert

    present = [k for k in range(len(classes)) if (y == k).any()]
    fig, axes = plt.subplots(len(present), 2, figsize=(10, 1.3 * len(present) + 0.5), squeeze=False)
    for row, k in enumerate(present):
        i = int(np.argmax(y == k))
        signal = x[i, 0]
        t = np.arange(len(signal)) / sampling_rate * 1000
        axes[row, 0].plot(t, signal, lw=0.5)
        axes[row, 0].set_ylabel(classes[k], rotation=0, ha="right", fontsize=8)
        envelope = np.abs(hilbert(signal - signal.mean()))
        spectrum = np.abs(np.fft.rfft(envelope - envelope.mean()))
        freqs = np.fft.rfftfreq(len(envelope), 1 / sampling_rate)
        keep = freqs <= 500
        axes[row, 1].plot(freqs[keep], spectrum[keep], lw=0.7)
        axes[row, 1].set_title(f"predicted {classes[int(probs[i].argmax())]}", fontsize=7, loc="right")
    axes[-1, 0].set_xlabel("time [ms]")
    axes[-1, 1].set_xlabel("envelope spectrum [Hz]")
    fig.tight_layout()
    return fig

"""Voice commands: recognise short spoken commands (keyword spotting), and find them in long recordings.

Data: a folder in the Speech Commands layout (one sub-folder per command word, plus ``_unknown_`` for other speech
and ``_silence_`` for background; WAV/FLAC at any rate, see :mod:`.data`), and/or ``synthesize``: command words
spoken by espeak-ng (:mod:`shopfloor.acoustics.speech_synth`), so a plant can start from text and add its operators'
recordings later. Training and validation are split by speaker (never one speaker on both sides); synthesized
clips only train. Augmentation: time shift, gain, background noise at a random SNR (waveforms), SpecAugment
masks (log-mel). Models: ``ds-cnn`` (default) or ``gru``; the exported graph takes raw samples ``(batch, samples)``
and returns class probabilities, the log-mel front end inside it.

``predict`` on a clip gives its class; on a recording longer than 1.5 clips it gives the commands detected in it
with timestamps (sliding windows, posterior smoothing, refractory period; see :mod:`.streaming`). ``evaluate``
reports accuracy, per-class P/R/F1, the confusion matrix and the false accepts per hour of the ``_unknown_`` and
``_silence_`` clips streamed through the detector.
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
from shopfloor.core.errors import DataError
from shopfloor.core.heads import SoftmaxOutput
from shopfloor.core.metrics import classification_metrics
from shopfloor.core.split import stratified_split
from shopfloor.core.task import OnnxSignature, Task, batched, read_inputs, to_jsonable
from shopfloor.core.training import SupervisedModule, balanced_class_weights, fit_supervised, seed_everything

from ..audio import AUDIO_SUFFIXES, as_clip, expand_inputs
from ..frontend import LogMel
from ..speech_synth import SILENCE, check_commands
from .augment import WaveformAugment
from .data import SYNTH_SPEAKER, CommandClips, fit_length, read_command_folders, speaker_split, synthesized_clips
from .models import NETWORKS, KeywordModel, SpecAugment, build_network
from .streaming import BACKGROUND, DetectorSettings, detect, false_accepts_per_hour, stream_detections, windows

LONG_RECORDING = 1.5  # recordings longer than this many clips are scanned for commands


class VoiceTrainingConfig(TrainingConfig):
    """Training defaults of voice commands."""

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    patience: int = Field(6, ge=1)


class VoiceCommandsConfig(StrictModel):
    """Settings of the voice-commands task."""

    model: Literal[NETWORKS] = "ds-cnn"  # type: ignore[valid-type]
    sampling_rate: int = Field(16000, ge=8000, le=48000, description="Hz; recordings are resampled to it")
    clip_seconds: float = Field(1.0, ge=0.25, le=5.0, description="length of one command window")
    n_mels: int = Field(40, ge=8, le=128)
    n_fft: int = Field(512, ge=64, description="STFT window (samples)")
    hop_length: int = Field(160, ge=16, description="STFT hop (samples)")
    synthesize: list[str] = Field(default_factory=list, description="command words to synthesize with espeak-ng "
                                  "and train on (with or without recordings)")
    synth_per_word: int = Field(300, ge=1, description="synthesized clips per word (and of _unknown_, _silence_)")
    augment: bool = True
    time_shift_seconds: float = Field(0.1, ge=0)
    gain_db: float = Field(6.0, ge=0)
    speed_change: float = Field(0.05, ge=0, lt=0.5, description="random speed change within +-this fraction")
    noise_probability: float = Field(0.8, ge=0, le=1)
    snr_db_min: float = 0.0
    snr_db_max: float = 30.0
    spec_augment: bool = True
    class_weighting: Literal["balanced", "none"] = "balanced"
    detection_threshold: float = Field(0.8, gt=0, lt=1, description="smoothed posterior a command must reach")
    smoothing_windows: int = Field(3, ge=1, description="windows the posteriors are averaged over")
    hop_seconds: float = Field(0.1, gt=0, description="step between scored windows in long recordings")
    refractory_seconds: float = Field(1.0, ge=0, description="no second detection within this time")
    training: VoiceTrainingConfig = VoiceTrainingConfig()

    @field_validator("synthesize", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        return check_commands(value) if value else []

    @model_validator(mode="after")
    def _consistent(self) -> "VoiceCommandsConfig":
        if self.snr_db_min > self.snr_db_max:
            raise ValueError("snr_db_min must not exceed snr_db_max")
        if self.n_fft > self.clip_seconds * self.sampling_rate:
            raise ValueError("n_fft must be shorter than one clip")
        return self


class VoiceCommands(Task):
    """Keyword spotting on raw audio (see module docstring)."""

    name = "voice-commands"
    input_kind = "signal"
    input_suffixes = AUDIO_SUFFIXES
    data_optional = True  # --synthesize alone is enough
    Config = VoiceCommandsConfig

    @property
    def classes(self) -> list[str]:
        return self.state["classes"]

    @property
    def clip_samples(self) -> int:
        return int(round(self.config.clip_seconds * self.config.sampling_rate))

    def detector(self) -> DetectorSettings:
        cfg = self.config
        return DetectorSettings(cfg.hop_seconds, cfg.smoothing_windows, cfg.detection_threshold,
                                cfg.refractory_seconds)

    # ----------------------------------------------------------------- model
    def build_model(self) -> nn.Module:
        cfg = self.config
        frontend = LogMel(cfg.sampling_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels)
        return KeywordModel(frontend, build_network(cfg.model, cfg.n_mels, len(self.classes)),
                            SpecAugment(seed=self.training.seed) if cfg.spec_augment else None)

    def export_module(self) -> nn.Module:
        return SoftmaxOutput(self.require_model())

    def onnx_signature(self) -> OnnxSignature:
        return OnnxSignature(example_inputs=(torch.zeros(2, self.clip_samples),), input_names=["audio"],
                             output_names=["probabilities"])

    def augmentation(self, background: np.ndarray | None) -> WaveformAugment | None:
        cfg = self.config
        if not cfg.augment:
            return None
        return WaveformAugment(cfg.sampling_rate, cfg.time_shift_seconds, cfg.gain_db, cfg.noise_probability,
                               (cfg.snr_db_min, cfg.snr_db_max), background, cfg.speed_change, seed=self.training.seed)

    # ----------------------------------------------------------------- data
    def _read(self, data: Any, skip_bad: bool = False) -> CommandClips:
        if isinstance(data, CommandClips):
            return data
        clips, _ = read_command_folders(data, self.config.sampling_rate, self.clip_samples, skip_bad=skip_bad)
        return clips

    def _split(self, recorded: CommandClips | None, synthesized: CommandClips | None) -> tuple[CommandClips,
                                                                                               CommandClips]:
        """(train, validation): recordings split by speaker, synthesized clips in training; validation on
        synthesized clips (stratified) only when there are no recordings."""
        fraction, seed = self.training.val_fraction, self.training.seed
        if recorded is not None:
            keep, held = speaker_split(recorded.speakers, recorded.labels, fraction, seed)
            if len(held) == 0 or len(keep) == 0:
                raise DataError(f"{len(set(recorded.speakers))} speaker(s) are too few to hold out {fraction:.0%} "
                                "of them for validation; add recordings of more speakers")
            train = recorded.subset(keep)
            if synthesized is not None:
                train = CommandClips.concat([train, synthesized])
            return train, recorded.subset(held)
        assert synthesized is not None
        codes = [self.classes.index(label) for label in synthesized.labels]
        keep, held = stratified_split(codes, fraction, seed)
        self.note_warning("validation ran on synthesized speech only (no recordings given), so the validation "
                          "figures are optimistic for real speakers: evaluate on recordings of your operators")
        return synthesized.subset(keep), synthesized.subset(held)

    # ----------------------------------------------------------------- verbs
    def fit(self, data: Any = None, out_dir: str | Path | None = None, skip_bad: bool = False) -> "VoiceCommands":
        cfg, train_cfg = self.config, self.training
        seed_everything(train_cfg.seed)
        self.state = {}
        if data is None and not cfg.synthesize:
            raise DataError("voice commands need recordings (a folder with one sub-folder per command) and/or "
                            "words to synthesize (--synthesize 'start,stop')")
        recorded = self._read(data, skip_bad) if data is not None else None
        synthesized = synthesized_clips(cfg.synthesize, cfg.synth_per_word, cfg.sampling_rate, cfg.clip_seconds,
                                        train_cfg.seed) if cfg.synthesize else None
        labels = set(recorded.labels if recorded else []) | set(synthesized.labels if synthesized else [])
        commands = sorted(label for label in labels if label not in BACKGROUND)
        if not commands:
            raise DataError(f"no command classes: the data holds only {sorted(labels)}; add a folder per command")
        self.state = {"classes": commands + [b for b in BACKGROUND if b in labels]}
        if len(self.classes) < 2:
            raise DataError(f"voice commands need at least two classes (e.g. a command and _unknown_/_silence_); "
                            f"found {self.classes}")
        train, val = self._split(recorded, synthesized)
        missing = sorted(set(self.classes) - set(train.labels))
        if missing:
            raise DataError(f"classes {missing} have no training clips after the speaker split; add recordings")
        y_train = np.array([self.classes.index(c) for c in train.labels])
        y_val = np.array([self.classes.index(c) for c in val.labels])
        speakers = sorted(set(train.speakers) - {SYNTH_SPEAKER})
        self.state.update({
            "sampling_rate": cfg.sampling_rate, "clip_samples": self.clip_samples,
            "training_speakers": speakers,
            "counts": {"train": _counts(train.labels), "validation": _counts(val.labels)},
            "synthesized": {"words": list(cfg.synthesize), "clips": len(synthesized) if synthesized else 0},
            "split": f"by speaker: {len(set(val.speakers))} speakers ({len(val)} clips) held out for validation",
            "input": {"name": "audio", "layout": "(batch, samples)", "dtype": "float32",
                      "samples": self.clip_samples, "units": "full scale [-1, 1] at "
                      f"{cfg.sampling_rate} Hz; log-mel inside the graph"},
        })
        self.data_fingerprint = fingerprint_arrays(train.audio, np.asarray(y_train))

        model = self.build_model()
        with torch.no_grad():
            logmel = torch.cat([model.frontend(torch.from_numpy(train.audio[sl]))
                                for sl in batched(len(train), 256)])
            model.band_mean.copy_(logmel.mean(dim=(0, 2)).unsqueeze(1))
            model.band_std.copy_(logmel.std(dim=(0, 2)).unsqueeze(1) + 1e-5)
        background = train.audio[y_train == self.classes.index(SILENCE)] if SILENCE in self.classes else None
        weights = balanced_class_weights(y_train, len(self.classes)) if cfg.class_weighting == "balanced" else None
        module = SupervisedModule(model, nn.CrossEntropyLoss(weight=weights), train_cfg,
                                  train_transform=self.augmentation(background))
        generator = torch.Generator().manual_seed(train_cfg.seed)
        train_loader = DataLoader(TensorDataset(torch.from_numpy(train.audio), torch.from_numpy(y_train)),
                                  batch_size=train_cfg.batch_size, shuffle=True, generator=generator,
                                  num_workers=train_cfg.num_workers, drop_last=len(y_train) > train_cfg.batch_size)
        val_loader = DataLoader(TensorDataset(torch.from_numpy(val.audio), torch.from_numpy(y_val)), batch_size=256,
                                num_workers=train_cfg.num_workers)
        log_dir = Path(out_dir) / "training" if out_dir is not None else None
        summary = fit_supervised(module, train_loader, val_loader, train_cfg, log_dir)
        self.torch_model = module.model.eval()
        if not summary["is_global_zero"]:
            return self
        self.export()
        probs = self.probabilities(val.audio)
        metrics = classification_metrics(y_val, probs.argmax(1), probs, self.classes)
        self.metrics = {"val_accuracy": metrics["accuracy"], "val_macro_f1": metrics["macro_f1"],
                        "n_train_clips": len(train), "n_val_clips": len(val), "epochs_run": summary["epochs_run"],
                        "parameters": int(sum(p.numel() for p in model.network.parameters()))}
        if out_dir is not None:
            self.save(out_dir)
        return self

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Class probabilities of clip-long windows ``(n, clip_samples)`` through ONNX Runtime."""
        out = [self.runtime.run(audio=np.ascontiguousarray(audio[sl], dtype=np.float32))["probabilities"]
               for sl in batched(len(audio), 256)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def evaluate(self, data: Any, report_dir: str | Path | None = None, **options: Any) -> dict[str, Any]:
        clips = self._read(data)
        unknown = sorted(set(clips.labels) - set(self.classes))
        if unknown:
            raise DataError(f"the data holds classes {unknown} this model does not know; it knows {self.classes}")
        seen = set(self.state.get("training_speakers", []))
        reused = sorted({s for s in clips.speakers if s in seen})
        if reused:
            raise DataError(f"{len(reused)} speaker(s) of the evaluation data were in training (e.g. {reused[0]}); "
                            "a test on them would flatter the model. Evaluate on other speakers")
        y = np.array([self.classes.index(c) for c in clips.labels])
        probs = self.probabilities(clips.audio)
        metrics = classification_metrics(y, probs.argmax(1), probs, self.classes)
        metrics.update(self._false_accepts(clips))
        if report_dir is not None:
            from .report import write_report

            metrics["report"] = str(write_report(self, Path(report_dir), clips, y, probs, metrics))
        return to_jsonable(metrics)

    def background_stream(self, clips: CommandClips, seed: int = 0) -> np.ndarray:
        """The ``_unknown_`` and ``_silence_`` clips end to end in a seeded random order: audio without commands."""
        index = [i for i, label in enumerate(clips.labels) if label in BACKGROUND]
        order = np.random.default_rng(seed).permutation(index)
        return clips.audio[order].reshape(-1) if len(order) else np.zeros(0, np.float32)

    def _false_accepts(self, clips: CommandClips) -> dict[str, Any]:
        """False accepts per hour of the background stream at the configured operating point, and how many would
        occur at other thresholds (for the report's curve)."""
        stream = self.background_stream(clips)
        if stream.size == 0:
            return {"false_accepts_per_hour": None, "background_seconds": 0.0}
        settings = self.detector()
        hop = max(1, int(round(settings.hop_seconds * self.config.sampling_rate)))
        starts, frames = windows(stream, self.clip_samples, hop)
        posteriors = self.probabilities(frames)
        seconds = len(stream) / self.config.sampling_rate
        at = {}
        for threshold in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99):
            found = detect(posteriors, starts, self.classes, self.config.sampling_rate, self.clip_samples,
                           DetectorSettings(settings.hop_seconds, settings.smoothing, threshold,
                                            settings.refractory_seconds))
            at[f"{threshold:g}"] = len(found)
        n_false = len(detect(posteriors, starts, self.classes, self.config.sampling_rate, self.clip_samples,
                             settings))
        return {"false_accepts": n_false, "false_accepts_per_hour": false_accepts_per_hour(n_false, seconds),
                "background_seconds": round(seconds, 1),
                "false_accepts_per_hour_resolution": false_accepts_per_hour(1, seconds),
                "false_accepts_at_threshold": at, "detection_threshold": settings.threshold}

    def predict(self, inputs: Sequence[Any], out_dir: str | Path | None = None, explain: bool = False,
                skip_bad: bool = False) -> list[dict[str, Any]]:
        """One row per input (a WAV/FLAC file, a folder of them, or an array ``(samples,)`` at the model's rate):
        for a clip, its class, confidence and probabilities; for a recording longer than 1.5 clips, also the
        commands detected in it with their times (``detections``; ``label`` is the most confident one, or
        ``_silence_`` when none)."""
        if isinstance(inputs, (str, Path, np.ndarray)):
            inputs = [inputs]
        rate = self.config.sampling_rate
        items = list(enumerate(expand_inputs(list(inputs))))
        kept, skipped = read_inputs(items, lambda pair: as_clip(pair[1], rate, index=pair[0]), skip_bad,
                                    name=lambda pair: str(pair[1]) if not isinstance(pair[1], np.ndarray)
                                    else f"<array {pair[0]}>")
        rows: dict[int, dict[str, Any]] = {}
        for index, clip in kept:
            if len(clip.samples) > LONG_RECORDING * self.clip_samples:
                found = stream_detections(clip.samples, rate, self.clip_samples, self.classes, self.probabilities,
                                          self.detector())
                best = max(found, key=lambda d: d["confidence"]) if found else None
                rows[index] = {"input": clip.source, "label": best["command"] if best else SILENCE,
                               "confidence": best["confidence"] if best else None,
                               "duration_s": round(clip.seconds, 3), "detections": found}
                continue
            probs = self.probabilities(fit_length(clip.samples, self.clip_samples)[None])[0]
            k = int(probs.argmax())
            rows[index] = {"input": clip.source, "label": self.classes[k], "confidence": float(probs[k]),
                           "probabilities": {c: float(p) for c, p in zip(self.classes, probs)},
                           "command": self.classes[k] if self.classes[k] not in BACKGROUND
                           and probs[k] >= self.config.detection_threshold else None}
        bad = iter(skipped)
        return [to_jsonable(rows[i]) if i in rows else next(bad) for i, _ in items]

    @classmethod
    def demo(cls, out_dir: Path) -> dict[str, Any]:
        """Train on synthesized speech for three commands and find them in a generated recording."""
        from .demo import run_demo

        return run_demo(cls, out_dir)


def _counts(labels: Sequence[str]) -> dict[str, int]:
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}


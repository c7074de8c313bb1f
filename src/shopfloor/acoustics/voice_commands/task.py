"""Voice commands: recognise short spoken commands (keyword spotting), and find them in long recordings.

Data: a folder in the Speech Commands layout (one sub-folder per command word, plus ``_unknown_`` for other speech
and ``_silence_`` for background; WAV/FLAC at any rate, see :mod:`.data`), and/or ``synthesize``: command words
spoken by espeak-ng (:mod:`shopfloor.acoustics.speech_synth`), so a plant can start from text and add its operators'
recordings later. Training and validation are split by speaker (never one speaker on both sides); synthesized
clips only train. Augmentation on the clips' power spectrograms (:mod:`.augment`: time shift, tempo, gain,
microphone colouring, reverberation, background noise at a random SNR, vocal-tract length perturbation,
SpecAugment). Models: ``bc-resnet`` (default), ``ds-cnn`` or ``gru``; the exported graph takes raw samples
``(batch, samples)`` and returns class probabilities, the log-mel front end inside it. The detection threshold is
chosen on validation non-command audio for a false-accept budget (:mod:`.operating_point`).

``predict`` on a clip gives its class; on a recording longer than 1.5 clips it gives the commands detected in it
with timestamps (sliding windows, posterior smoothing, refractory period; see :mod:`.streaming`). ``evaluate``
reports accuracy, per-class P/R/F1, the confusion matrix, the recall of the command clips streamed through the
detector, and the false accepts per hour of non-command audio (the ``_unknown_`` and ``_silence_`` clips, re-mixed
passes of them and generated noise).
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
from ..speech_synth import SILENCE, background, check_commands
from .augment import AugmentSettings, SpectralAugment, power_spectra
from .data import SYNTH_SPEAKER, CommandClips, fit_length, read_command_folders, speaker_split, synthesized_clips
from .models import NETWORKS, KeywordModel, LogMelClassifier, build_network
from .operating_point import (THRESHOLDS, background_streams, choose_threshold, command_stream, false_accepts,
                              noise_streams, scored, streaming_recall)
from .streaming import BACKGROUND, DetectorSettings, false_accepts_per_hour, stream_detections, windows

LONG_RECORDING = 1.5  # recordings longer than this many clips are scanned for commands


class VoiceTrainingConfig(TrainingConfig):
    """Training defaults of voice commands."""

    epochs: int = Field(40, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(5e-3, gt=0)
    patience: int = Field(10, ge=1)


class VoiceCommandsConfig(StrictModel):
    """Settings of the voice-commands task."""

    model: Literal[NETWORKS] = "bc-resnet"  # type: ignore[valid-type]
    width: int = Field(2, ge=1, le=8, description="BC-ResNet width k (BC-ResNet-k)")
    sampling_rate: int = Field(16000, ge=8000, le=48000, description="Hz; recordings are resampled to it")
    clip_seconds: float = Field(1.0, ge=0.25, le=5.0, description="length of one command window")
    n_mels: int = Field(40, ge=8, le=128)
    n_fft: int = Field(512, ge=64, description="STFT window (samples)")
    hop_length: int = Field(320, ge=16, description="STFT hop (samples)")
    synthesize: list[str] = Field(default_factory=list, description="command words to synthesize with espeak-ng "
                                  "and train on (with or without recordings)")
    synth_per_word: int = Field(300, ge=1, description="synthesized clips per word (and of _unknown_, _silence_)")
    augment: bool = True
    time_shift_seconds: float = Field(0.1, ge=0)
    tempo_change: float = Field(0.1, ge=0, lt=0.5, description="random tempo change within +-this fraction")
    vtlp: float = Field(0.1, ge=0, lt=0.3, description="vocal-tract length perturbation: mel filterbank warped "
                        "by a factor within 1 +- this")
    gain_db: float = Field(6.0, ge=0)
    eq_db: float = Field(6.0, ge=0, description="random microphone colouring within +-this many dB")
    band_limit_probability: float = Field(0.2, ge=0, le=1)
    reverb_probability: float = Field(0.3, ge=0, le=1, description="share of clips given synthetic reverberation")
    noise_probability: float = Field(0.8, ge=0, le=1)
    snr_db_min: float = 0.0
    snr_db_max: float = 30.0
    generated_noise_clips: int = Field(200, ge=0, description="generated background clips added to the noise "
                                       "bank (beside the training _silence_ clips)")
    spec_augment: bool = True
    class_weighting: Literal["balanced", "none"] = "balanced"
    detection_threshold: float | None = Field(None, gt=0, lt=1, description="smoothed posterior a command must "
                                              "reach; default: chosen on validation for max_false_accepts_per_hour")
    max_false_accepts_per_hour: float = Field(5.0, gt=0, description="false-accept budget the threshold is "
                                              "chosen for on validation non-command audio")
    operating_point_repeats: int = Field(10, ge=0, description="extra shuffled, re-mixed passes over the "
                                         "validation _unknown_/_silence_ clips when choosing the threshold")
    operating_point_noise_minutes: float = Field(10.0, ge=0, description="generated noise streamed when "
                                                 "choosing the threshold")
    smoothing_windows: int | None = Field(None, ge=1, description="windows the posteriors are averaged over; "
                                          "default: chosen on validation with the threshold")
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

    @property
    def threshold(self) -> float:
        """The detection threshold: the configured one, else the one chosen on validation (0.9 for models saved
        before that choice existed)."""
        if self.config.detection_threshold is not None:
            return self.config.detection_threshold
        return float(self.state.get("operating_point", {}).get("threshold", 0.9))

    @property
    def smoothing(self) -> int:
        """Windows averaged: the configured number, else the one chosen on validation (3 before that choice)."""
        if self.config.smoothing_windows is not None:
            return self.config.smoothing_windows
        return int(self.state.get("operating_point", {}).get("smoothing", 3))

    def detector(self, threshold: float | None = None, smoothing: int | None = None) -> DetectorSettings:
        cfg = self.config
        return DetectorSettings(cfg.hop_seconds, smoothing or self.smoothing, threshold or self.threshold,
                                cfg.refractory_seconds)

    # ----------------------------------------------------------------- model
    def build_model(self) -> nn.Module:
        cfg = self.config
        frontend = LogMel(cfg.sampling_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels)
        return KeywordModel(frontend, build_network(cfg.model, cfg.n_mels, len(self.classes), width=cfg.width))

    def export_module(self) -> nn.Module:
        return SoftmaxOutput(self.require_model())

    def onnx_signature(self) -> OnnxSignature:
        return OnnxSignature(example_inputs=(torch.zeros(2, self.clip_samples),), input_names=["audio"],
                             output_names=["probabilities"])

    def augment_settings(self) -> AugmentSettings:
        """The training augmentation (every step off when ``augment`` is false: exact log-mel)."""
        cfg = self.config
        frame = cfg.hop_length / cfg.sampling_rate
        if not cfg.augment:
            return AugmentSettings(frame, 0, 0, 0, 0, 0, 0, noise_probability=0, vtlp=0, freq_masks=0, time_masks=0)
        masks = 2 if cfg.spec_augment else 0
        return AugmentSettings(frame, cfg.time_shift_seconds, cfg.tempo_change, cfg.gain_db, cfg.eq_db,
                               cfg.band_limit_probability, cfg.reverb_probability, noise_probability=
                               cfg.noise_probability, snr_db=(cfg.snr_db_min, cfg.snr_db_max), vtlp=cfg.vtlp,
                               freq_masks=masks, freq_width=max(1, cfg.n_mels // 7), time_masks=masks,
                               time_width=max(1, int(round(0.15 * cfg.clip_seconds / frame))))

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
        spectra = power_spectra(model.frontend, train.audio)
        with torch.no_grad():
            logmel = torch.cat([model.frontend.from_power(10 ** (spectra[sl].float() / 10))
                                for sl in batched(len(train), 256)])
            model.band_mean.copy_(logmel.mean(dim=(0, 2)).unsqueeze(1))
            model.band_std.copy_(logmel.std(dim=(0, 2)).unsqueeze(1) + 1e-5)
            val_logmel = torch.cat([model.frontend(torch.from_numpy(val.audio[sl]))
                                    for sl in batched(len(val), 256)])
        del logmel
        augment = SpectralAugment(spectra, self._noise_bank(model, train, y_train), model.frontend.filterbank,
                                  self.augment_settings(), seed=train_cfg.seed, fill=model.band_mean.clone())
        weights = balanced_class_weights(y_train, len(self.classes)) if cfg.class_weighting == "balanced" else None
        module = SupervisedModule(LogMelClassifier(model), nn.CrossEntropyLoss(weight=weights), train_cfg,
                                  train_transform=augment)
        generator = torch.Generator().manual_seed(train_cfg.seed)
        train_loader = DataLoader(TensorDataset(torch.arange(len(train)), torch.from_numpy(y_train)),
                                  batch_size=train_cfg.batch_size, shuffle=True, generator=generator,
                                  num_workers=train_cfg.num_workers, drop_last=len(y_train) > train_cfg.batch_size)
        val_loader = DataLoader(TensorDataset(val_logmel, torch.from_numpy(y_val)), batch_size=256,
                                num_workers=train_cfg.num_workers)
        log_dir = Path(out_dir) / "training" if out_dir is not None else None
        summary = fit_supervised(module, train_loader, val_loader, train_cfg, log_dir)
        self.torch_model = model.eval()
        if not summary["is_global_zero"]:
            return self
        self.export()
        probs = self.probabilities(val.audio)
        metrics = classification_metrics(y_val, probs.argmax(1), probs, self.classes)
        self.choose_operating_point(val)
        self.metrics = {"val_accuracy": metrics["accuracy"], "val_macro_f1": metrics["macro_f1"],
                        "n_train_clips": len(train), "n_val_clips": len(val), "epochs_run": summary["epochs_run"],
                        "parameters": int(sum(p.numel() for p in model.network.parameters())),
                        "detection_threshold": self.threshold, "smoothing_windows": self.smoothing}
        if out_dir is not None:
            self.save(out_dir)
        return self

    def _noise_bank(self, model: KeywordModel, train: CommandClips, y_train: np.ndarray) -> torch.Tensor | None:
        """Power spectra of the backgrounds mixed into training clips: the training ``_silence_`` clips and
        ``generated_noise_clips`` generated ones."""
        cfg = self.config
        parts = []
        if SILENCE in self.classes:
            parts.append(train.audio[y_train == self.classes.index(SILENCE)])
        if cfg.generated_noise_clips:
            rng = np.random.default_rng(self.training.seed + 1)
            parts.append(np.stack([background(self.clip_samples, cfg.sampling_rate, rng)[0] * 0.1
                                   for _ in range(cfg.generated_noise_clips)]))
        parts = [p for p in parts if len(p)]
        return power_spectra(model.frontend, np.concatenate(parts)) if parts else None

    def choose_operating_point(self, val: CommandClips) -> dict[str, Any]:
        """The detector settings for validation clips ``val`` (stored in ``state``): for each smoothing length
        (1, 2, 3, 5 windows unless ``smoothing_windows`` is set), the lowest threshold whose false accepts per
        hour on validation non-command audio (see :mod:`.operating_point`) stay within
        ``max_false_accepts_per_hour`` (unless ``detection_threshold`` is set); of those, the pair that recalls
        the most validation commands streamed through the detector."""
        cfg = self.config
        rate, window = cfg.sampling_rate, self.clip_samples
        hop = max(1, int(round(cfg.hop_seconds * rate)))
        streams = background_streams(val.audio, val.labels, rate, cfg.operating_point_repeats, self.training.seed)
        streams += noise_streams(60 * cfg.operating_point_noise_minutes, rate, self.training.seed + 7)
        seconds = sum(len(s) for s in streams) / rate
        commands = [i for i, label in enumerate(val.labels) if label not in BACKGROUND]
        if seconds == 0 or not commands:
            return {"threshold": 0.9, "smoothing": 3, "chosen_on": "nothing (no validation background or "
                    "commands): 0.9 and 3 windows assumed"}
        background_scores = scored(streams, window, hop, self.probabilities)
        stream, spans = command_stream(val.audio[commands], rate, seed=self.training.seed)
        starts, frames = windows(stream, window, hop)
        command_scores = self.probabilities(frames)
        labels = [val.labels[i] for i in commands]
        candidates = []
        for smoothing in [cfg.smoothing_windows] if cfg.smoothing_windows else [1, 2, 3, 5]:
            settings = self.detector(0.5, smoothing)
            thresholds = (cfg.detection_threshold,) if cfg.detection_threshold else THRESHOLDS
            counts = false_accepts(background_scores, self.classes, rate, window, settings, thresholds)
            threshold = choose_threshold(counts, seconds, cfg.max_false_accepts_per_hour)
            recall = streaming_recall(starts, command_scores, spans, labels, self.classes, rate, window,
                                      self.detector(threshold, smoothing))
            candidates.append({"smoothing": smoothing, "threshold": threshold, "validation_recall": recall["recall"],
                               "validation_false_accepts_per_hour":
                                   false_accepts_per_hour(counts[f"{threshold:g}"], seconds),
                               "false_accepts_at_threshold": counts})
        best = max(candidates, key=lambda c: (c["validation_recall"], -c["smoothing"]))
        chosen = {**best, "validation_background_seconds": round(seconds, 1),
                  "max_false_accepts_per_hour": cfg.max_false_accepts_per_hour,
                  "candidates": [{k: v for k, v in c.items() if k != "false_accepts_at_threshold"}
                                 for c in candidates],
                  "chosen_on": f"validation _unknown_/_silence_ clips (1 + {cfg.operating_point_repeats} passes), "
                               f"{cfg.operating_point_noise_minutes:g} min of generated noise, and "
                               f"{len(commands)} validation commands streamed"}
        self.state["operating_point"] = chosen
        return chosen

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
        metrics.update(self._false_accepts(clips, int(options.get("background_repeats", 5)),
                                           float(options.get("noise_minutes", 10.0))))
        metrics.update(self._streaming_recall(clips))
        if report_dir is not None:
            from .report import write_report

            metrics["report"] = str(write_report(self, Path(report_dir), clips, y, probs, metrics))
        return to_jsonable(metrics)

    def _false_accepts(self, clips: CommandClips, repeats: int = 5, noise_minutes: float = 10.0,
                       seed: int = 0) -> dict[str, Any]:
        """False accepts of the non-command audio of ``clips`` at the operating point and at other thresholds: the
        ``_unknown_`` + ``_silence_`` clips end to end as recorded, ``repeats`` more shuffled passes with new gains
        and mixed-in backgrounds, and ``noise_minutes`` of generated noise (each reported apart and together)."""
        cfg, rate = self.config, self.config.sampling_rate
        hop = max(1, int(round(cfg.hop_seconds * rate)))
        real = background_streams(clips.audio, clips.labels, rate, repeats, seed)
        parts = {"recorded": real[:1], "remixed": real[1:],
                 "generated_noise": noise_streams(60 * noise_minutes, rate, seed + 11) if noise_minutes else []}
        settings, out, total_n, total_s = self.detector(), {}, 0, 0.0
        all_counts: dict[str, int] = {}
        for name, streams in parts.items():
            seconds = sum(len(s) for s in streams) / rate
            if not seconds:
                continue
            counts = false_accepts(scored(streams, self.clip_samples, hop, self.probabilities), self.classes, rate,
                                   self.clip_samples, settings, THRESHOLDS + (settings.threshold,))
            n = counts[f"{settings.threshold:g}"]
            out[name] = {"seconds": round(seconds, 1), "false_accepts": n,
                         "per_hour": false_accepts_per_hour(n, seconds)}
            total_n, total_s = total_n + n, total_s + seconds
            all_counts = {t: all_counts.get(t, 0) + c for t, c in counts.items()}
        if not total_s:
            return {"false_accepts_per_hour": None, "background_seconds": 0.0}
        return {"false_accepts": total_n, "false_accepts_per_hour": false_accepts_per_hour(total_n, total_s),
                "background_seconds": round(total_s, 1), "background_hours": round(total_s / 3600, 3),
                "false_accepts_per_hour_resolution": false_accepts_per_hour(1, total_s),
                "false_accepts_by_source": out, "false_accepts_at_threshold": all_counts,
                "detection_threshold": settings.threshold}

    def _streaming_recall(self, clips: CommandClips) -> dict[str, Any]:
        """The command clips streamed through the detector at the operating point (:func:`streaming_recall`)."""
        index = [i for i, label in enumerate(clips.labels) if label not in BACKGROUND]
        if not index:
            return {}
        rate = self.config.sampling_rate
        stream, spans = command_stream(clips.audio[index], rate)
        hop = max(1, int(round(self.config.hop_seconds * rate)))
        starts, frames = windows(stream, self.clip_samples, hop)
        recall = streaming_recall(starts, self.probabilities(frames), spans, [clips.labels[i] for i in index],
                                  self.classes, rate, self.clip_samples, self.detector())
        return {f"streaming_{k}": v for k, v in recall.items()}

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
                           and probs[k] >= self.threshold else None}
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


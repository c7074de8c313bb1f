"""Machine-sound anomaly detection from normal recordings only (task ``machine-sound``).

Data layouts: see :mod:`.data` (DCASE file names or ``normal/``/``anomaly/`` folders; a folder with ``train/`` and
``test/`` inside is used as such). Every clip is read at the model's sampling rate (resampled if needed) and cut
into windows of ``window_seconds`` (default: the shortest training clip, at most 10 s). The exported graph takes
one window of raw samples and computes log-mel, the scorer (:mod:`.models`: ``knn-stats`` default, ``dcase-ae``
the DCASE 2020 baseline) and the normalised score, 0.5 being the threshold. The threshold is set at
``false_alarm_rate`` on out-of-fold scores of the normal training clips (``calibration_folds``-fold cross-fitting
by clip: each clip is scored by a model fitted without it). A clip's score is the largest of its windows';
``predict`` also returns the timeline of overlapping windows (long recordings).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from shopfloor.core.artifact import fingerprint_arrays
from shopfloor.core.config import StrictModel, TrainingConfig
from shopfloor.core.errors import DataError
from shopfloor.core.task import OnnxSignature, Task, batched, read_inputs, to_jsonable
from shopfloor.core.training import seed_everything

from ..audio import AUDIO_SUFFIXES, Clip, as_clip, expand_inputs, read_audio
from ..frontend import LogMel
from .data import ClipInfo, list_clips
from .metrics import detection_metrics
from .models import (
    MODELS,
    STATISTICS,
    DenseAutoencoder,
    MachineSoundModel,
    StatsKNN,
    fit_stats_knn,
    train_autoencoder,
)

MAX_DEFAULT_WINDOW_S = 10.0


class MachineSoundTrainingConfig(TrainingConfig):
    """Training defaults of machine sound (those of the DCASE 2020 baseline autoencoder)."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(512, ge=2)
    learning_rate: float = Field(1e-3, gt=0)


class MachineSoundConfig(StrictModel):
    """Settings of the machine-sound task."""

    model: Literal[MODELS] = Field("knn-stats", description="knn-stats: nearest normal window on per-band log-mel "  # type: ignore[valid-type]
                                   "statistics (default, measured best); dcase-ae: the DCASE 2020 baseline autoencoder")
    sampling_rate: int = Field(16000, ge=1000, description="Hz the model runs at; clips are resampled to it")
    channel: int | Literal["mix"] = Field("mix", description="multi-channel clips: 'mix' averages, N picks channel N")
    n_fft: int = Field(1024, ge=64)
    hop_length: int = Field(512, ge=16)
    n_mels: int = Field(128, ge=8)
    fmin: float = Field(0.0, ge=0)
    fmax: float | None = Field(None, gt=0)
    window_seconds: float | None = Field(None, gt=0, description="window scored at once (default: the shortest "
                                         f"training clip, at most {MAX_DEFAULT_WINDOW_S:g} s)")
    hop_seconds: float | None = Field(None, gt=0, description="step of predict's score timeline (default: half "
                                      "a window)")
    statistics: list[Literal[STATISTICS]] = Field(default_factory=lambda: list(STATISTICS),  # type: ignore[valid-type]
                                                  description="knn-stats: per-band statistics compared")
    ae_frames: int = Field(5, ge=1, description="dcase-ae: frames stacked per input vector")
    false_alarm_rate: float = Field(0.05, gt=0, lt=0.5, description="target share of normal clips flagged")
    calibration_folds: int = Field(5, ge=2, description="cross-fitting folds (by clip) for the threshold")
    training: MachineSoundTrainingConfig = MachineSoundTrainingConfig()

    @field_validator("statistics", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """``--statistics max`` or ``--statistics mean,max`` from the command line."""
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> "MachineSoundConfig":
        if self.hop_length > self.n_fft:
            raise ValueError(f"hop_length {self.hop_length} exceeds n_fft {self.n_fft}: samples would be skipped")
        if self.fmax is not None and self.fmax > self.sampling_rate / 2:
            raise ValueError(f"fmax {self.fmax:g} Hz is above the Nyquist frequency {self.sampling_rate / 2:g} Hz")
        if not self.statistics:
            raise ValueError(f"statistics needs at least one of {', '.join(STATISTICS)}")
        return self


class MachineSound(Task):
    """Anomalous machine sounds, learnt from normal clips only (see module docstring)."""

    name = "machine-sound"
    input_kind = "signal"
    input_suffixes = AUDIO_SUFFIXES
    Config = MachineSoundConfig
    # int8 gate: the 0.5 decision of the score; the raw score and the map are measured, not gated
    precision_checks = {"score": "decision", "raw_score": "report", "anomaly_map": "report"}

    # ----------------------------------------------------------------- model
    @property
    def window_samples(self) -> int:
        return int(self.state["window_samples"])

    def frontend(self, filterbank: np.ndarray | None = None) -> LogMel:
        """The log-mel front end; without ``filterbank`` a zero one (a saved model's weights replace it)."""
        cfg = self.config
        if filterbank is None:
            filterbank = np.zeros((cfg.n_mels, cfg.n_fft // 2 + 1), np.float32)
        return LogMel(cfg.sampling_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.fmin, cfg.fmax, filterbank)

    def _scorer(self) -> nn.Module:
        cfg = self.config
        if cfg.model == "dcase-ae":
            return DenseAutoencoder(cfg.n_mels, cfg.ae_frames)
        return StatsKNN(cfg.n_mels, int(self.state["n_bank"]), cfg.statistics)

    def build_model(self) -> nn.Module:
        return MachineSoundModel(self.frontend(), self._scorer())

    def onnx_signature(self) -> OnnxSignature:
        x = 0.1 * torch.randn(2, self.window_samples)
        return OnnxSignature(example_inputs=(x,), input_names=["audio"],
                             output_names=["score", "raw_score", "anomaly_map"])

    # ----------------------------------------------------------------- data
    def _read_clips(self, infos: Sequence[ClipInfo], min_samples: int = 1) -> list[Clip]:
        cfg = self.config

        def read(info: ClipInfo) -> Clip:
            clip = read_audio(info.path, cfg.sampling_rate, cfg.channel, min_samples)
            clip.meta = info.meta()
            return clip

        kept, _ = read_inputs(list(infos), read, name=lambda info: str(info.path))
        return [clip for _, clip in kept]

    def windows(self, samples: np.ndarray, hop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``samples`` cut into windows ``(n, window_samples)`` every ``hop`` samples (default: a window), the last
        one aligned to the end so the whole clip is covered; and the start sample of each."""
        size = self.window_samples
        hop = hop or size
        starts = list(range(0, len(samples) - size + 1, hop))
        if starts[-1] + size < len(samples):
            starts.append(len(samples) - size)
        return np.stack([samples[s:s + size] for s in starts]), np.asarray(starts)

    def _logmels(self, frontend: LogMel, windows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([frontend(torch.from_numpy(windows[sl])).numpy()
                                   for sl in batched(len(windows), 64)])

    # ----------------------------------------------------------------- fit
    def fit(self, data: str | Path, out_dir: str | Path | None = None) -> "MachineSound":
        """Learn normal sound from the clips in ``data`` (a folder; see :mod:`.data`), set the threshold by
        cross-fitting, export; with ``out_dir``, save there."""
        cfg = self.config
        seed_everything(self.training.seed)
        root, infos = list_clips(data, "train")
        anomalies = [i.path.name for i in infos if i.label == "anomaly"]
        if anomalies:
            raise DataError(f"{len(anomalies)} of the {len(infos)} training clips in {root} are labelled anomalous "
                            f"(e.g. {anomalies[0]}); machine-sound learns from normal clips only: move them to the "
                            "evaluation data")
        clips = self._read_clips(infos, min_samples=cfg.n_fft)
        if len(clips) < 2 and not cfg.window_seconds:
            raise DataError(f"{root} holds {len(clips)} usable clip; give 2 or more normal clips (20 or more is "
                            "better: the threshold is set on clips the model was not fitted on), or cut one long "
                            "recording into windows with --window-seconds (e.g. 2)")
        shortest = min(len(c.samples) for c in clips)
        window = int(round(cfg.window_seconds * cfg.sampling_rate)) if cfg.window_seconds else \
            min(shortest, int(MAX_DEFAULT_WINDOW_S * cfg.sampling_rate))
        if window > shortest:
            short = min(clips, key=lambda c: len(c.samples))
            raise DataError(f"{short.source} lasts {short.seconds:.3f} s, shorter than the window of "
                            f"{window / cfg.sampling_rate:g} s: give --window-seconds {short.seconds:.3f} or less")
        if cfg.model == "dcase-ae" and 1 + window // cfg.hop_length < cfg.ae_frames:
            raise DataError(f"a window of {window} samples gives fewer log-mel frames than ae_frames={cfg.ae_frames}")
        self.state = {"sampling_rate": cfg.sampling_rate, "window_samples": window, "warnings": []}
        frontend = self.frontend(filterbank=None)
        from ..frontend import mel_filterbank

        frontend.filterbank.copy_(torch.from_numpy(mel_filterbank(cfg.sampling_rate, cfg.n_fft, cfg.n_mels,
                                                                  cfg.fmin, cfg.fmax)))
        parts = [self.windows(c.samples)[0] for c in clips]
        groups = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
        if len(clips) == 1:  # one long recording: its windows stand in for clips (neighbours are alike: rough)
            if len(groups) < 4:
                raise DataError(f"{clips[0].source} gives {len(groups)} window(s) of {window / cfg.sampling_rate:g} s; "
                                "at least 4 are needed from a single recording: record longer or shorten "
                                "--window-seconds")
            groups = np.arange(len(groups))
            self.note_warning(f"one training recording: its {len(groups)} windows stand in for separate clips when "
                              "the threshold is set, and neighbouring windows sound alike, so expect more false "
                              "alarms than the target; record several normal clips")
        logmels = self._logmels(frontend, np.concatenate(parts))
        start = time.perf_counter()
        oof = self._out_of_fold_scores(logmels, groups)
        scorer = self._fit_scorer(logmels, groups)
        self.state["n_bank"] = int(len(logmels))
        model = MachineSoundModel(frontend, scorer)
        threshold = float(np.quantile(oof, 1 - cfg.false_alarm_rate))
        scale = float(max(np.std(oof), 1e-6 * max(abs(threshold), 1.0)))
        model.threshold.fill_(threshold)
        model.scale.fill_(scale)
        self.torch_model = model.eval()
        n_clips = len(clips)
        if n_clips < 20:
            self.note_warning(f"only {n_clips} normal training clips: the threshold (set at a "
                              f"{cfg.false_alarm_rate:g} false-alarm rate on their out-of-fold scores) is rough; "
                              "record 20 or more normal clips")
        domains = sorted({c.meta.get("domain") or "unknown" for c in clips})
        self.state.update({
            "n_train_clips": n_clips, "n_train_windows": int(len(logmels)), "domains": domains,
            "sections": sorted({c.meta.get("section") for c in clips if c.meta.get("section")}),
            "calibration": {"folds": min(cfg.calibration_folds, n_clips), "false_alarm_rate": cfg.false_alarm_rate,
                            "threshold": threshold, "scale": scale,
                            "out_of_fold_scores": [float(v) for v in oof],
                            "normalisation": "sigmoid((raw - threshold) / scale): 0.5 is the threshold"},
            "trained_clips": [fingerprint_arrays(c.samples)[:16] for c in clips],
        })
        self.metrics = {"n_train_clips": n_clips, "window_seconds": window / cfg.sampling_rate,
                        "out_of_fold_false_alarm_rate": float(np.mean(oof >= threshold)),
                        "fit_seconds": round(time.perf_counter() - start, 2)}
        self.data_fingerprint = fingerprint_arrays(*[c.samples for c in clips])
        self.export()
        if out_dir is not None:
            self.save(out_dir)
        return self

    def _fit_scorer(self, logmels: np.ndarray, groups: np.ndarray) -> nn.Module:
        cfg = self.config
        if cfg.model == "dcase-ae":
            return train_autoencoder(logmels, cfg.ae_frames, self.training.epochs, self.training.batch_size,
                                     self.training.learning_rate, self.training.seed)
        return fit_stats_knn(logmels, groups, cfg.statistics)

    def _out_of_fold_scores(self, logmels: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """Each normal clip's raw score (max over its windows) from a scorer fitted without it."""
        clips = np.unique(groups)
        folds = min(self.config.calibration_folds, len(clips))
        order = np.random.default_rng(self.training.seed).permutation(clips)
        scores = np.zeros(len(clips))
        for k in range(folds):
            held = order[k::folds]
            test = np.isin(groups, held)
            train = ~test
            if len(np.unique(groups[train])) < 2 and self.config.model == "knn-stats":
                train = np.ones_like(test)  # 2 clips: each is scored against the other's windows only
            scorer = self._fit_scorer(logmels[train], groups[train]).eval()
            with torch.no_grad():
                raw, _ = scorer(torch.from_numpy(logmels[test]))
            for clip in held:
                scores[clip] = float(raw.numpy()[groups[test] == clip].max())
        return scores

    # ----------------------------------------------------------------- scoring
    def score_windows(self, windows: np.ndarray) -> dict[str, np.ndarray]:
        """Normalised score, raw score and anomaly map of windows ``(n, window_samples)`` through ONNX Runtime."""
        outs = [self.runtime.run(audio=np.ascontiguousarray(windows[sl], dtype=np.float32))
                for sl in batched(len(windows), 16)]
        return {k: np.concatenate([o[k] for o in outs]) for k in ("score", "raw_score", "anomaly_map")}

    def _check_clip(self, clip: Clip) -> None:
        if len(clip.samples) < self.window_samples:
            raise DataError(f"{clip.source} lasts {clip.seconds:.3f} s, shorter than this model's window of "
                            f"{self.window_samples / self.state['sampling_rate']:g} s; give a longer recording")

    def evaluate(self, data: str | Path, report_dir: str | Path | None = None, **options: Any) -> dict[str, Any]:
        """Score labelled clips (``test/`` of a DCASE-style folder, or ``normal/``+``anomaly/`` folders): AUC,
        pAUC, per-domain AUC, harmonic mean, and the decisions at the threshold; with ``report_dir`` a report."""
        self.EvaluateOptions(**options)
        root, infos = list_clips(data, "test")
        unlabelled = [i.path.name for i in infos if i.label is None]
        if unlabelled:
            raise DataError(f"{len(unlabelled)} clip(s) in {root} have no label (e.g. {unlabelled[0]}): name them the "
                            "DCASE way (section_00_source_test_anomaly_0000.wav) or put them in normal/ and anomaly/")
        labels = {i.label for i in infos}
        if labels != {"normal", "anomaly"}:
            raise DataError(f"{root} holds only {labels.pop()} clips; evaluation needs both normal and anomalous "
                            "clips (AUC compares them)")
        clips = self._read_clips(infos, min_samples=self.window_samples)
        seen = set(self.state.get("trained_clips", []))
        reused = [c.source for c in clips if fingerprint_arrays(c.samples)[:16] in seen]
        if reused:
            raise DataError(f"{len(reused)} evaluation clip(s) were used in training (e.g. {reused[0]}); a score on "
                            "them is not a test score. Evaluate on clips the model has not seen")
        rows = []
        for clip in clips:
            windows, _ = self.windows(clip.samples)
            out = self.score_windows(windows)
            best = int(out["score"].argmax())
            rows.append({"clip": clip, "score": float(out["score"][best]), "raw": float(out["raw_score"][best]),
                         "map": out["anomaly_map"][best], "window": windows[best]})
        anomalous = np.array([r["clip"].meta["label"] == "anomaly" for r in rows])
        scores = np.array([r["score"] for r in rows])
        domains = [r["clip"].meta.get("domain") for r in rows]
        metrics = detection_metrics(anomalous, scores, domains)
        metrics["model"] = self.config.model
        if report_dir is not None:
            from .report import write_report

            metrics["report"] = str(write_report(self, Path(report_dir), rows, anomalous, scores, domains, metrics))
        return to_jsonable(metrics)

    def predict(self, inputs: Sequence[str | Path | np.ndarray | Clip], out_dir: str | Path | None = None,
                explain: bool = False, skip_bad: bool = False) -> list[dict[str, Any]]:
        """One result per recording (WAV/FLAC path, folder of them, or array at the model's sampling rate): the
        clip score (largest window score; >= 0.5 anomalous), its label, and the score timeline of windows every
        ``hop_seconds``. With ``explain`` and ``out_dir``, a time-frequency map of the worst window is written."""
        if isinstance(inputs, (str, Path, np.ndarray, Clip)):
            inputs = [inputs]
        items = list(enumerate(expand_inputs(list(inputs))))
        rate = self.state["sampling_rate"]
        hop = int(round((self.config.hop_seconds or self.window_samples / 2 / rate) * rate))

        def read(pair: tuple[int, Any]) -> Clip:
            clip = as_clip(pair[1], rate, self.config.channel, 1, pair[0])
            self._check_clip(clip)
            return clip

        def name(pair: tuple[int, Any]) -> str:
            return f"<array {pair[0]}>" if isinstance(pair[1], np.ndarray) else str(getattr(pair[1], "source", pair[1]))

        kept, skipped = read_inputs(items, read, skip_bad, name=name)
        rows_of = {}
        for index, clip in kept:
            windows, starts = self.windows(clip.samples, hop)
            out = self.score_windows(windows)
            best = int(out["score"].argmax())
            score = float(out["score"][best])
            row = {"input": clip.source, "label": "anomaly" if score >= 0.5 else "normal", "score": score,
                   "is_anomaly": score >= 0.5, "seconds": round(clip.seconds, 3),
                   "worst_window_start_s": round(float(starts[best]) / rate, 3),
                   "timeline": [{"start_s": round(float(s) / rate, 3),
                                 "end_s": round(float(s + self.window_samples) / rate, 3), "score": float(v)}
                                for s, v in zip(starts, out["score"])]}
            if explain and out_dir is not None:
                from .report import write_map_png

                row["anomaly_map"] = str(write_map_png(self, Path(out_dir), f"{index:04d}_{Path(clip.source).stem}",
                                                       windows[best], out["anomaly_map"][best], score))
            rows_of[index] = row
        bad = iter(skipped)
        return [rows_of[index] if index in rows_of else next(bad) for index, _ in items]

    @classmethod
    def demo(cls, out_dir: Path) -> dict[str, Any]:
        """Synthetic machine sounds: train on normal clips, evaluate on normal + clicking / shifted-harmonic /
        rattling clips, and score a long recording whose middle turns faulty (score timeline)."""
        import soundfile

        from .synthetic import machine_recording, write_machine_dataset

        out_dir = Path(out_dir)
        root = write_machine_dataset(out_dir / "data", n_train=20, n_test_normal=8, n_test_fault=4, seconds=2.0)
        task = cls()
        task.fit(root, out_dir=out_dir / "model")
        metrics = task.evaluate(root, report_dir=out_dir / "report")
        long = machine_recording(10.0, "rattle", 4.0, 6.0, seed=900)
        long_path = out_dir / "data" / "long_recording.wav"
        soundfile.write(long_path, long, 16000)
        timeline = task.predict([long_path])[0]
        return {"task": cls.name, "test_auc": metrics["auc"], "test_pauc": metrics["pauc"],
                "n_test": metrics["n_test"], "model": str(out_dir / "model"), "report": metrics["report"],
                "long_recording_worst_window_s": timeline["worst_window_start_s"],
                "sample_inputs": [str(long_path)]}

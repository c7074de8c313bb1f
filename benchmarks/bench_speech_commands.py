"""Voice commands on the shared Speech Commands v0.02 clips (10 words + _unknown_ + _silence_, FLAC, 16 kHz).

1. Recorded: the clips split by speaker (the hash before ``_nohash_``), 80 % of the speakers for training (the task
   holds out 20 % of those for validation), 20 % for test; the DS-CNN and the GRU trained side by side with the
   task's defaults otherwise; test accuracy, macro F1, false accepts per hour of the test ``_unknown_`` +
   ``_silence_`` clips streamed through the detector, parameters, and CPU latency of one 1 s clip (ONNX Runtime,
   one thread, median of 200 runs).
2. Synthesized only: the default model trained on espeak-ng speech of the 10 words (no real clip), tested on every
   shared real clip.

Usage: python benchmarks/bench_speech_commands.py [--models ds-cnn,gru] [--epochs N] [--skip-synth]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import ROOT, require_dataset, write_result  # noqa: E402

from shopfloor.acoustics.speech_synth import background  # noqa: E402
from shopfloor.acoustics.voice_commands.data import class_folders, speaker_of, speaker_split  # noqa: E402
from shopfloor.acoustics.voice_commands.streaming import false_accepts_per_hour, stream_detections  # noqa: E402
from shopfloor.acoustics.voice_commands.task import VoiceCommands  # noqa: E402
from shopfloor.core.runtime import OnnxModel  # noqa: E402

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
TARGETS = {"recorded_accuracy": 0.95, "synthesized_only_accuracy": 0.70, "false_accepts_per_hour": 5.0}
KEYS = ("accuracy", "macro_f1", "false_accepts", "false_accepts_per_hour", "background_seconds",
        "false_accepts_per_hour_resolution", "false_accepts_at_threshold", "n_test")


def split_folders(root: Path, work: Path, fraction: float = 0.2, seed: int = 0) -> tuple[Path, Path, dict]:
    """Symlinked train/ and test/ folders, speakers disjoint."""
    files = [(label, path) for label, paths in class_folders(root).items() for path in paths]
    speakers = [speaker_of(path) for _, path in files]
    keep, held = speaker_split(speakers, [label for label, _ in files], fraction, seed, purpose="test")
    for name, index in (("train", keep), ("test", held)):
        shutil.rmtree(work / name, ignore_errors=True)
        for i in index:
            label, path = files[i]
            target = work / name / label / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, target)
    return work / "train", work / "test", {"train_clips": len(keep), "test_clips": len(held),
                                           "train_speakers": len({speakers[i] for i in keep}),
                                           "test_speakers": len({speakers[i] for i in held})}


def latency_ms(model_dir: Path, samples: int) -> float:
    """Median milliseconds of one clip through the model's graph on one thread."""
    model = OnnxModel(model_dir / "model.onnx", device="cpu", threads=1)
    x = np.random.default_rng(0).uniform(-0.1, 0.1, (1, samples)).astype(np.float32)
    for _ in range(10):
        model.run(audio=x)
    times = []
    for _ in range(200):
        start = time.perf_counter()
        model.run(audio=x)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def noise_false_accepts(task: VoiceCommands, minutes: int = 30, seed: int = 0) -> dict:
    """False accepts per hour on ``minutes`` of generated backgrounds (white/pink/brown noise, mains hum, machine
    tones; a new one every 10 s, levels -50 to -10 dBFS), scored in 5-minute pieces."""
    rng = np.random.default_rng(seed)
    rate, found = task.config.sampling_rate, 0
    for _ in range(minutes // 5):
        pieces = [background(10 * rate, rate, rng)[0] * 10 ** rng.uniform(-2.5, -0.5) for _ in range(30)]
        found += len(stream_detections(np.clip(np.concatenate(pieces), -1, 1), rate, task.clip_samples,
                                       task.classes, task.probabilities, task.detector()))
    seconds = 60.0 * (minutes // 5) * 5
    return {"noise_false_accepts": found, "noise_seconds": seconds,
            "noise_false_accepts_per_hour": false_accepts_per_hour(found, seconds)}


def run(task: VoiceCommands, train: Path | None, test: Path, model_dir: Path) -> dict:
    start = time.perf_counter()
    task.fit(train, out_dir=model_dir)
    fit_seconds = time.perf_counter() - start
    metrics = task.evaluate(test, report_dir=model_dir.parent / f"{model_dir.name}_report")
    figures = {k: metrics[k] for k in KEYS}
    figures.update(fit_seconds=round(fit_seconds, 1), epochs_run=task.metrics["epochs_run"],
                   val_accuracy=task.metrics["val_accuracy"], parameters=task.metrics["parameters"],
                   latency_ms_per_clip=round(latency_ms(model_dir, task.clip_samples), 3),
                   **noise_false_accepts(task), load_average_1min_after=os.getloadavg()[0])
    print(f"  accuracy {figures['accuracy']:.4f}, FA/h {figures['false_accepts_per_hour']:.1f} (speech), "
          f"{figures['noise_false_accepts_per_hour']:.1f} (noise), "
          f"fit {fit_seconds:.0f} s", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="ds-cnn,gru")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--skip-synth", action="store_true")
    args = parser.parse_args()
    root = require_dataset("speech_commands_v002")
    work = ROOT / "benchmarks" / "work" / "speech_commands"
    train, test, split = split_folders(root, work)
    training = {"progress": False, **({"epochs": args.epochs} if args.epochs else {})}
    results: dict = {"split": split, "targets": TARGETS, "load_average_1min_before": os.getloadavg()[0],
                     "recorded": {}}
    for model in args.models.split(","):
        print(f"recorded speech, {model}", flush=True)
        results["recorded"][model] = run(VoiceCommands(model=model, training=training), train, test,
                                         work / f"model_{model}")
    if not args.skip_synth:
        print("synthesized speech only, tested on every shared clip", flush=True)
        results["synthesized_only"] = run(VoiceCommands(synthesize=WORDS, training=training), None, root,
                                          work / "model_synth")
    print(write_result("speech_commands", results))


if __name__ == "__main__":
    main()

"""The voice-commands demo: train on synthesized speech only, evaluate on other synthesized voices, and find the
commands in a generated recording."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np

from ..speech_synth import synthesize_commands, write_clips

DEMO_WORDS = ["start", "stop", "faster"]


def run_demo(cls: type, out_dir: Path) -> dict[str, Any]:
    """Train, evaluate, predict on a clip and on a 6 s recording; the summary :func:`shopfloor.demo.run_demo`
    prints."""
    out_dir = Path(out_dir)
    test = synthesize_commands(DEMO_WORDS, per_word=20, seed=101)
    write_clips(test, out_dir / "test_clips")
    task = cls(synthesize=DEMO_WORDS, synth_per_word=200, training={"epochs": 15, "patience": 15})
    task.fit(None, out_dir=out_dir / "model")
    metrics = task.evaluate(out_dir / "test_clips", report_dir=out_dir / "report")
    recording = _recording(out_dir / "line_recording.wav")
    found = task.predict([recording])[0]["detections"]
    return {"task": cls.name, "test_accuracy": metrics["accuracy"], "n_test": metrics["n_test"],
            "false_accepts_per_hour": metrics["false_accepts_per_hour"], "model": str(out_dir / "model"),
            "report": metrics["report"], "detected_in_recording": [d["command"] for d in found],
            "sample_inputs": [str(recording)]}


def _recording(path: Path) -> Path:
    """6 s of machine hum with 'start' at 1 s and 'stop' at 4 s, spoken by voices the training did not draw."""
    clips = {c.label: c.audio for c in synthesize_commands(["start", "stop"], per_word=1, unknown=0, silence=0,
                                                           background_probability=0.0, seed=7)}
    rate = 16000
    t = np.arange(6 * rate) / rate
    audio = 0.01 * np.sin(2 * np.pi * 100 * t) + 0.003 * np.random.default_rng(0).standard_normal(len(t))
    for word, at in (("start", 1.0), ("stop", 4.0)):
        start = int(at * rate)
        audio[start:start + rate] += clips[word] / (np.abs(clips[word]).max() + 1e-9) * 0.5
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path

"""Generated images in the training split of defect classification (``--synthetic MODEL_DIR``).

A defect-synthesis model generates ``synthetic_per_class`` images of each asked-for class; they are resized by the
classifier's own decode path (the same as real images) and appended to the training split only, after the
validation split was taken from the real images, so validation, early stopping, calibration and any test score
rest on real images alone. What was added is recorded in ``state["synthetic"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from shopfloor.core.errors import ConfigError

from ..images import ImageSpec, decode_frame


@dataclass
class SyntheticPlan:
    """The generator and what it is asked for: class names (in the classifier's indices) and images per class."""

    generator: Any
    model_dir: Path
    classes: list[str]
    labels: np.ndarray  # classifier class index of every image to generate
    per_class: int


def plan_synthetic(model_dir: str | None, per_class: int, wanted: Sequence[str] | None,
                   classes: Sequence[str]) -> SyntheticPlan | None:
    """Open the defect-synthesis model and check its classes against the classifier's (None without a model)."""
    if model_dir is None:
        return None
    from ..synthesis.task import DefectSynthesis

    generator = DefectSynthesis.load(model_dir, device="cpu")
    known = list(generator.classes)
    asked = list(wanted) if wanted else [c for c in known if c in classes]
    not_generated = sorted(set(asked) - set(known))
    not_classified = sorted(set(asked) - set(classes))
    if not_generated or not_classified or not asked:
        problems = []
        if not_generated:
            problems.append(f"the generator in {model_dir} has no class {not_generated} (it knows {known})")
        if not_classified:
            problems.append(f"the training data has no class {not_classified} (it has {list(classes)})")
        if not asked:
            problems.append(f"no class is shared by the generator ({known}) and the training data ({list(classes)})")
        raise ConfigError("--synthetic: " + "; ".join(problems) + ". Pass --synthetic-classes with classes both "
                          "know, or train the generator on the same class folders")
    labels = np.repeat([list(classes).index(c) for c in asked], per_class)
    return SyntheticPlan(generator, Path(model_dir), asked, labels, per_class)


def synthetic_frames(plan: SyntheticPlan, spec: ImageSpec, seed: int) -> np.ndarray:
    """Generate the planned images (through the generator's ONNX graph) as uint8 NxHxWx3 classifier frames."""
    frames = []
    for k, name in enumerate(plan.classes):
        images, _ = plan.generator.generate(plan.per_class, name, seed=seed + 1000 * k)
        frames += [decode_frame(img[..., 0] if img.shape[2] == 1 else img, spec, f"generated {name}")[0]
                   for img in images]
    return np.stack(frames) if frames else np.zeros((0, spec.height, spec.width, 3), np.uint8)


def add_synthetic(train: tuple[np.ndarray, np.ndarray], plan: SyntheticPlan | None, spec: ImageSpec, seed: int,
                  state: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The training split with the planned generated images appended (unchanged without a plan); recorded in
    ``state["synthetic"]``."""
    if plan is None:
        return train
    frames = synthetic_frames(plan, spec, seed)
    state["synthetic"] = {"model_dir": str(plan.model_dir), "classes": plan.classes, "per_class": plan.per_class,
                          "n_images": int(len(frames)), "generator_fingerprint": plan.generator.data_fingerprint,
                          "where": "training split only (validation and test are real images)"}
    return np.concatenate([train[0], frames]), np.concatenate([train[1], plan.labels])

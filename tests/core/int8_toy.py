"""A tiny convolutional classifier task over .npy arrays, for the int8 and device tests (fast, no application code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from shopfloor.core.config import StrictModel, TrainingConfig
from shopfloor.core.errors import DataError
from shopfloor.core.task import OnnxSignature, Task

CLASSES = ["blob-top", "blob-bottom", "stripes"]
SIZE = 16


class ToyConfig(StrictModel):
    """Settings of the toy task."""

    steps: int = 150
    training: TrainingConfig = TrainingConfig(batch_size=32, progress=False)


def make_arrays(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 3x16x16 images in 0..255: a bright blob at the top or bottom, or stripes."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(len(CLASSES)):
        for _ in range(n_per_class):
            x = rng.normal(60, 25, (3, SIZE, SIZE))
            if k < 2:
                r, c = rng.integers(2, 6) + (0 if k == 0 else 8), rng.integers(2, 14)
                x[:, max(0, r - 2):r + 2, max(0, c - 2):c + 2] += 150
            else:
                x[:, ::4, :] += 120
            xs.append(np.clip(x, 0, 255).astype(np.float32))
            ys.append(k)
    return np.stack(xs), np.asarray(ys)


def write_folder(root: Path, n_per_class: int, seed: int) -> Path:
    """Class folders of .npy files."""
    xs, ys = make_arrays(n_per_class, seed)
    for i, (x, y) in enumerate(zip(xs, ys)):
        (root / CLASSES[y]).mkdir(parents=True, exist_ok=True)
        np.save(root / CLASSES[y] / f"{i:04d}.npy", x)
    return root


class ToyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                                   nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x / 255.0).amax(dim=(2, 3)))


class Probabilities(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def _read(item: Any) -> np.ndarray:
    if isinstance(item, np.ndarray):
        return item.astype(np.float32)
    try:
        return np.load(item).astype(np.float32)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {item}: {exc}") from exc


class ToyConv(Task):
    """Toy convolutional classifier of .npy arrays (tests only)."""

    name = "int8-toy"
    Config = ToyConfig
    input_suffixes = (".npy",)

    def build_model(self) -> nn.Module:
        return ToyNet()

    def export_module(self) -> nn.Module:
        return Probabilities(self.require_model())

    def onnx_signature(self) -> OnnxSignature:
        return OnnxSignature(example_inputs=(torch.zeros(1, 3, SIZE, SIZE),), input_names=["image"],
                             output_names=["probabilities"])

    def fit(self, data: Any, out_dir: str | Path | None = None) -> "ToyConv":
        xs, ys = make_arrays(40, 0) if data is None else self._folder(data)
        torch.manual_seed(0)
        model = self.build_model()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        x, y = torch.from_numpy(xs), torch.from_numpy(ys).long()
        for step in range(self.config.steps):
            idx = torch.randint(0, len(x), (32,))
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.torch_model = model.eval()
        self.state = {"classes": CLASSES}
        self.export()
        if out_dir is not None:
            self.save(out_dir)
        return self

    @staticmethod
    def _folder(root: Any) -> tuple[np.ndarray, np.ndarray]:
        paths = sorted(Path(root).rglob("*.npy"))
        return np.stack([_read(p) for p in paths]), np.asarray([CLASSES.index(p.parent.name) for p in paths])

    def evaluate(self, data: Any, report_dir: str | Path | None = None, **options: Any) -> dict[str, Any]:
        xs, ys = self._folder(data)
        probs = self.runtime.run(image=xs)["probabilities"]
        return {"accuracy": float(np.mean(probs.argmax(1) == ys)), "n_test": len(ys)}

    def predict(self, inputs: Sequence[Any], out_dir: str | Path | None = None,
                explain: bool = False) -> list[dict[str, Any]]:
        items: list[Any] = []
        for item in [inputs] if isinstance(inputs, (str, Path)) else list(inputs):
            items.extend(sorted(Path(item).rglob("*.npy")) if isinstance(item, (str, Path)) and Path(item).is_dir()
                         else [item])
        rows = []
        for start in range(0, len(items), 8):
            part = items[start:start + 8]
            probs = self.runtime.run(image=np.stack([_read(i) for i in part]))["probabilities"]
            rows += [{"input": str(i) if not isinstance(i, np.ndarray) else "array", "label": CLASSES[int(p.argmax())],
                      "probabilities": p.tolist()} for i, p in zip(part, probs)]
        return rows

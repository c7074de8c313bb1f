"""`shopfloor export`: rebuild the graph from the stored weights and prove it matches the stored one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .runtime import OnnxModel

EXPORT_FORMATS = ("onnx",)


def export_artifact(model_dir: str | Path, fmt: str = "onnx", output: str | Path | None = None) -> dict[str, Any]:
    """Re-export ``model_dir`` to ``fmt``; returns the path and the max |difference| vs the stored graph."""
    from .registry import load

    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; supported: {', '.join(EXPORT_FORMATS)}")
    task = load(model_dir, device="cpu")
    stored = task._onnx_bytes
    fresh = task.export()
    sig = task.onnx_signature()
    feeds = {name: np.asarray(x.detach().numpy() if hasattr(x, "detach") else x)
             for name, x in zip(sig.input_names, sig.example_inputs)}
    a = OnnxModel(stored, device="cpu").run(**feeds)
    b = OnnxModel(fresh, device="cpu").run(**feeds)
    diff = max(float(np.max(np.abs(a[k] - b[k]))) if a[k].size else 0.0 for k in a)
    path = Path(output) if output else Path(model_dir) / "export" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fresh)
    return {"path": str(path), "max_abs_diff": diff}

"""`shopfloor export`: rebuild the graph from the stored weights and prove it matches the stored one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .artifact import _atomic_write
from .errors import ArtifactError, ConfigError
from .runtime import OnnxModel

EXPORT_FORMATS = ("onnx",)


def export_artifact(model_dir: str | Path, fmt: str = "onnx", output: str | Path | None = None,
                    key_file: str | Path | None = None) -> dict[str, Any]:
    """Re-export ``model_dir`` to ``fmt``; returns the path and the max |difference| vs the stored graph.

    ``key_file`` (or ``SHOPFLOOR_KEY_FILE``): refuse the directory unless its signature verifies under that key.
    The default output is ``model_dir/export/model.onnx`` (a new file renamed into place, never written through a
    symlink)."""
    from .registry import load

    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; supported: {', '.join(EXPORT_FORMATS)}")
    task = load(model_dir, device="cpu", key_file=key_file, precision="fp32")
    stored = task.runtime  # the stored model.onnx (not an int8 graph beside it), opened (and checked) by load
    fresh = task.export()
    sig = task.onnx_signature()
    feeds = {name: np.asarray(x.detach().numpy() if hasattr(x, "detach") else x)
             for name, x in zip(sig.input_names, sig.example_inputs)}
    a = stored.run(**feeds)
    b = OnnxModel(fresh, device="cpu").run(**feeds)
    diff = max(float(np.max(np.abs(a[k] - b[k]))) if a[k].size else 0.0 for k in a)
    if output:
        path = Path(output)
    else:
        folder = Path(model_dir) / "export"
        if folder.is_symlink():
            raise ArtifactError(f"{folder} is a symbolic link; remove it (or pass --output) before exporting")
        path = folder / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, fresh)
    return {"path": str(path), "max_abs_diff": diff}

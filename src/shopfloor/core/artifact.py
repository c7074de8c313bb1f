"""The one model format on disk.

A model directory holds:

- ``manifest.json``: task, task config, preprocessing, labels, training metrics, library versions,
  a fingerprint of the training data and the SHA-256 of every other file;
- ``weights.safetensors``: the torch model's state (parameters and fitted buffers), never pickle;
- ``model.onnx``: the deployable graph with pre- and post-processing inside;
- optional task files (listed in the manifest and hashed like the rest).

``read_artifact`` refuses a directory whose files are missing or do not match their recorded hashes.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors.torch import load_file, save_file

from .errors import ArtifactError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
ONNX_MODEL = "model.onnx"


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_files(paths: Iterable[Path], root: Path | None = None) -> str:
    """A SHA-256 over the (relative) names and contents of the training files, order-independent."""
    digest = hashlib.sha256()
    entries = []
    for p in paths:
        p = Path(p)
        name = str(p.relative_to(root)) if root is not None else p.name
        entries.append((name, sha256_file(p)))
    for name, h in sorted(entries):
        digest.update(f"{name}\0{h}\n".encode())
    return digest.hexdigest()


def fingerprint_arrays(*arrays: Any) -> str:
    """A SHA-256 over in-memory training arrays (numpy or torch)."""
    digest = hashlib.sha256()
    for a in arrays:
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a
        digest.update(str(getattr(a, "shape", "")).encode())
        digest.update(memoryview(a).tobytes() if hasattr(a, "tobytes") else repr(a).encode())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model's numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("shopfloor", "torch", "lightning", "onnx", "onnxruntime", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _manifest_checksum(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return sha256_bytes(json.dumps(body, sort_keys=True).encode())


@dataclass
class Artifact:
    """A verified model directory."""

    path: Path
    manifest: dict[str, Any]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return load_file(str(self.path / WEIGHTS))

    def onnx_bytes(self) -> bytes:
        return (self.path / ONNX_MODEL).read_bytes()

    def file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise ArtifactError(f"{self.path} has no file {name!r} in its manifest")
        return self.path / name


def write_artifact(
    out_dir: str | Path,
    manifest: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    onnx_bytes: bytes,
    extra_files: dict[str, bytes] | None = None,
) -> Artifact:
    """Write a model directory and return it verified."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(out / WEIGHTS))
    (out / ONNX_MODEL).write_bytes(onnx_bytes)
    files = {WEIGHTS: sha256_file(out / WEIGHTS), ONNX_MODEL: sha256_bytes(onnx_bytes)}
    for name, data in (extra_files or {}).items():
        (out / name).write_bytes(data)
        files[name] = sha256_bytes(data)
    full = dict(manifest)
    full.update(
        format_version=FORMAT_VERSION,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        versions=library_versions(),
        files=files,
    )
    full["manifest_sha256"] = _manifest_checksum(full)
    (out / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=False, default=_json_default))
    return read_artifact(out)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in manifest.json")


def read_artifact(path: str | Path) -> Artifact:
    """Open a model directory, refusing it when incomplete or tampered with."""
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"model directory {root} does not exist; pass the --out folder of `shopfloor train`")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"{root} has no {MANIFEST}: it is not a shopfloor model directory (or it is incomplete)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{manifest_path} is not valid JSON ({exc}); the model directory is corrupt") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{root} uses artifact format {manifest.get('format_version')!r}; this shopfloor reads {FORMAT_VERSION}"
        )
    if manifest.get("manifest_sha256") != _manifest_checksum(manifest):
        raise ArtifactError(f"{manifest_path} was edited after the model was written; retrain or restore it")
    for name, expected in manifest.get("files", {}).items():
        fpath = root / name
        if not fpath.is_file():
            raise ArtifactError(f"{root} is incomplete: {name} is missing; copy the whole model directory")
        if sha256_file(fpath) != expected:
            raise ArtifactError(
                f"{fpath} does not match the SHA-256 recorded in the manifest: the file was modified or "
                "corrupted after training; restore it or retrain"
            )
    for required in (WEIGHTS, ONNX_MODEL):
        if required not in manifest.get("files", {}):
            raise ArtifactError(f"{root} manifest lists no {required}; the model directory is incomplete")
    return Artifact(root, manifest)

"""The one model format on disk.

A model directory holds:

- ``manifest.json``: task, task config, preprocessing, labels, training metrics, library versions,
  a fingerprint of the training data and the SHA-256 of every other file;
- ``weights.safetensors``: the torch model's state (parameters and fitted buffers), never pickle;
- ``model.onnx``: the deployable graph with pre- and post-processing inside;
- optional task files (listed in the manifest and hashed like the rest);
- optionally ``signature.json``: an HMAC-SHA256 of ``manifest.json`` made with a secret key file
  (:func:`sign_artifact`).

``read_artifact`` refuses a directory whose files are missing, do not match their recorded hashes, or are listed
under names that leave the directory (absolute paths, ``..``, symlinks). Nothing is parsed before it is verified:
the manifest is size-bounded and checked, every listed file is hashed, and :meth:`Artifact.read_bytes` re-checks
a file's hash on the bytes it hands out, so the bytes parsed are the bytes verified.

What the hashes do and do not protect against: the SHA-256s (and ``manifest_sha256``) catch accidental
corruption, a truncated copy or a hand edit that forgot to update them, but anyone who can write the directory can
recompute them. Only the signature, checked when a key file is given (``key_file=`` or the environment variable
``SHOPFLOOR_KEY_FILE``), proves that the directory is exactly what the key holder signed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .errors import ArtifactError, ConfigError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
ONNX_MODEL = "model.onnx"
SIGNATURE = "signature.json"
KEY_FILE_ENV = "SHOPFLOOR_KEY_FILE"
SIGNATURE_ALGORITHM = "HMAC-SHA256"
MAX_MANIFEST_BYTES = 16 << 20  # a real manifest is a few kB to a few MB (labels, ranges); refuse absurd ones
MAX_SIGNATURE_BYTES = 64 << 10
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64 << 10
REQUIRED_KEYS = ("task", "files")  # "config" is required by Task.load, which is what reads it
_SIGNED_PREFIX = b"shopfloor-artifact-signature-v1\0"  # domain separation: this HMAC signs manifests only
_HEX64 = re.compile(r"[0-9a-f]{64}")


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


# ----------------------------------------------------------------------------- names inside the directory
def _check_name(root: Path, name: Any) -> Path:
    """``root / name`` for a file name listed in a manifest, refusing names that could leave ``root``:
    absolute paths, ``..`` components, and symlinks anywhere along the path (or a resolved path outside)."""
    what = f"{root / MANIFEST} lists the file {name!r}"
    fix = ("a model directory only holds plain files under their own names; this one was made by hand or "
           "tampered with: do not use it, retrain or restore it from a trusted copy")
    if not isinstance(name, str) or not name.strip():
        raise ArtifactError(f"{what}, which is not a file name; {fix}")
    if "\x00" in name or "\\" in name:
        raise ArtifactError(f"{what}, which contains a NUL or backslash character; {fix}")
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        raise ArtifactError(f"{what}, an absolute path outside the model directory; {fix}")
    if ".." in posix.parts:
        raise ArtifactError(f"{what}, whose '..' component leaves the model directory; {fix}")
    if name in (MANIFEST, SIGNATURE):
        raise ArtifactError(f"{what}, which is reserved and cannot be a listed file; {fix}")
    current = root
    for part in posix.parts:
        current = current / part
        if current.is_symlink():
            raise ArtifactError(f"{what}, but {current} is a symbolic link; {fix}")
    target = root / posix
    try:
        inside = target.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError) as exc:
        raise ArtifactError(f"{what}, which cannot be resolved ({exc}); {fix}") from exc
    if not inside:
        raise ArtifactError(f"{what}, which resolves outside the model directory; {fix}")
    return target


def _read_bounded(path: Path, limit: int, what: str) -> bytes:
    """Read a small control file (manifest, signature, key), refusing symlinks, non-files and oversized ones."""
    if path.is_symlink():
        raise ArtifactError(f"{path} is a symbolic link; the {what} must be a plain file in the model directory")
    if not path.is_file():
        raise ArtifactError(f"{path} is not a regular file; the {what} must be a plain file")
    size = path.stat().st_size
    if size > limit:
        raise ArtifactError(f"{path} is {size:,} bytes, more than the {limit:,} a {what} may hold; "
                            "the model directory is corrupt or was made to exhaust memory: do not use it")
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ArtifactError(f"{path} holds more than the {limit:,} bytes a {what} may hold; do not use it")
    return data


# ----------------------------------------------------------------------------- signing
def resolve_key_file(key_file: str | os.PathLike | None) -> tuple[Path, str] | None:
    """The key file to check signatures with: ``key_file``, else ``$SHOPFLOOR_KEY_FILE``, else none.
    Returns ``(path, where it came from)``."""
    if key_file is not None and str(key_file) != "":
        return Path(key_file), "the key file given"
    env = os.environ.get(KEY_FILE_ENV, "")
    if env:
        return Path(env), f"the key file named by {KEY_FILE_ENV}"
    return None


def read_key(key_file: str | os.PathLike) -> bytes:
    """The raw bytes of a key file: at least 16 (use 32 random bytes: ``head -c 32 /dev/urandom > key``)."""
    path = Path(key_file)
    if not path.is_file():
        raise ConfigError(f"key file {path} does not exist or is not a file; create one with "
                          "`head -c 32 /dev/urandom > KEY` and keep it secret")
    size = path.stat().st_size
    if size > MAX_KEY_BYTES:
        raise ConfigError(f"key file {path} is {size:,} bytes; a key file holds 16 to {MAX_KEY_BYTES:,} raw bytes "
                          "(did you pass the wrong file?)")
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from exc
    if not key:
        raise ConfigError(f"key file {path} is empty; write at least {MIN_KEY_BYTES} random bytes into it "
                          "(`head -c 32 /dev/urandom > KEY`)")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"key file {path} holds {len(key)} bytes, fewer than the {MIN_KEY_BYTES} a signing key "
                          "needs to be hard to guess; use `head -c 32 /dev/urandom > KEY`")
    return key


def _signature_of(manifest_bytes: bytes, key: bytes) -> str:
    return hmac.new(key, _SIGNED_PREFIX + manifest_bytes, hashlib.sha256).hexdigest()


def sign_artifact(path: str | Path, key_file: str | os.PathLike) -> Path:
    """Sign a model directory with an HMAC-SHA256 of its ``manifest.json`` under the key in ``key_file``.

    The directory is verified first (every file against its SHA-256). The manifest lists every file's SHA-256, so
    the signature covers all of them. Writes ``signature.json`` (algorithm, SHA-256 of the signed manifest,
    signature) and returns its path. Saving the model again removes the signature: sign it again then.
    """
    key = read_key(key_file)
    artifact = _verify(Path(path), key=None)  # an existing signature is replaced, not checked
    raw = _read_bounded(artifact.path / MANIFEST, MAX_MANIFEST_BYTES, "manifest")
    if sha256_bytes(raw) != artifact.manifest_file_sha256:
        raise ArtifactError(f"{artifact.path / MANIFEST} changed while it was being signed; sign it again")
    record = {
        "algorithm": SIGNATURE_ALGORITHM,
        "signed_file": MANIFEST,
        "signed_file_sha256": sha256_bytes(raw),
        "signature": _signature_of(raw, key),
    }
    target = artifact.path / SIGNATURE
    _atomic_write(target, (json.dumps(record, indent=2) + "\n").encode())
    return target


def _check_signature(root: Path, manifest_bytes: bytes, key: bytes, key_path: Path, origin: str) -> None:
    sig_path = root / SIGNATURE
    if not sig_path.exists() and not sig_path.is_symlink():
        raise ArtifactError(
            f"{root} is unsigned (no {SIGNATURE}) but {origin} ({key_path}) asks for a signed model: sign it with "
            f"`shopfloor sign {root} --key-file KEY` once you trust it, or load it without a key "
            f"(unset {KEY_FILE_ENV})")
    raw = _read_bounded(sig_path, MAX_SIGNATURE_BYTES, "signature")
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"{sig_path} is not valid JSON ({exc}); sign the model directory again") from exc
    if not isinstance(record, dict) or not isinstance(record.get("signature"), str):
        raise ArtifactError(f"{sig_path} is malformed (no signature); sign the model directory again")
    if record.get("algorithm") != SIGNATURE_ALGORITHM:
        raise ArtifactError(f"{sig_path} uses algorithm {record.get('algorithm')!r}; this shopfloor checks "
                            f"{SIGNATURE_ALGORITHM} only: sign the model directory again")
    expected = _signature_of(manifest_bytes, key).encode()
    if not hmac.compare_digest(expected, record["signature"].strip().lower().encode("ascii", "replace")):
        raise ArtifactError(
            f"the signature of {root} does not match: the directory was changed after signing or the key is wrong "
            f"({origin}: {key_path}); do not use it, restore it from its signed source or check the key")


# ----------------------------------------------------------------------------- the verified directory
@dataclass
class Artifact:
    """A verified model directory.

    ``signature`` says what was checked: ``"verified"`` (a key was given and the signature matches),
    ``"not checked"`` (signed, but no key was given) or ``"unsigned"``.
    """

    path: Path
    manifest: dict[str, Any]
    signature: str = "unsigned"
    manifest_file_sha256: str | None = None

    @property
    def task(self) -> str:
        return self.manifest["task"]

    def file(self, name: str) -> Path:
        """The path of a file listed in the manifest (inside the directory, not a symlink)."""
        if name not in self.manifest["files"]:
            raise ArtifactError(f"{self.path} has no file {name!r} in its manifest")
        return _check_name(self.path, name)

    def read_bytes(self, name: str) -> bytes:
        """The content of a listed file, checked against its SHA-256 again (so what is parsed is what was
        verified, even if the file changed since :func:`read_artifact`)."""
        path = self.file(name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"cannot read {path}: {exc}; copy the whole model directory again") from exc
        if sha256_bytes(data) != self.manifest["files"][name]:
            raise ArtifactError(f"{path} changed after the model directory was verified (it no longer matches "
                                "the SHA-256 in the manifest); restore it and load the model again")
        return data

    def state_dict(self) -> dict[str, torch.Tensor]:
        data = self.read_bytes(WEIGHTS)
        try:
            return load_safetensors(data)
        except Exception as exc:  # safetensors raises its own SafetensorError for any malformed content
            raise ArtifactError(
                f"cannot read the weights in {self.path / WEIGHTS}: {exc}; the file matches its recorded hash, so "
                "the directory was written broken or its hashes were recomputed after an edit: restore "
                "weights.safetensors from a good copy of the model directory, or retrain") from exc

    def onnx_bytes(self) -> bytes:
        return self.read_bytes(ONNX_MODEL)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and rename it over ``path``: never writes through an existing symlink or
    hard link, and a crash leaves either the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_artifact(
    out_dir: str | Path,
    manifest: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    onnx_bytes: bytes,
    extra_files: dict[str, bytes] | None = None,
) -> Artifact:
    """Write a model directory and return it verified.

    A ``signature.json`` left from an earlier save is removed first (it could not match the new manifest): sign
    the directory again with :func:`sign_artifact`. Files are replaced (new file + rename), never written through
    a symlink or hard link planted in ``out_dir``; the manifest is written last.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stale = out / SIGNATURE
    if stale.exists() or stale.is_symlink():
        stale.unlink()
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    weights = save_safetensors(tensors)
    _atomic_write(out / WEIGHTS, weights)
    _atomic_write(out / ONNX_MODEL, onnx_bytes)
    files = {WEIGHTS: sha256_bytes(weights), ONNX_MODEL: sha256_bytes(onnx_bytes)}
    for name, data in (extra_files or {}).items():
        if name in files:
            raise ArtifactError(f"extra file {name!r} would overwrite the model's own {name}; rename it")
        if isinstance(name, str) and "/" in name:
            (out / PurePosixPath(name).parent).mkdir(parents=True, exist_ok=True)
        target = _check_name(out, name)
        _atomic_write(target, data)
        files[name] = sha256_bytes(data)
    full = dict(manifest)
    full.update(
        format_version=FORMAT_VERSION,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        versions=library_versions(),
        files=files,
    )
    full["manifest_sha256"] = _manifest_checksum(full)
    _atomic_write(out / MANIFEST, json.dumps(full, indent=2, sort_keys=False, default=_json_default).encode())
    # verified without a key even when SHOPFLOOR_KEY_FILE is set: a fresh save is unsigned until sign_artifact
    return _verify(out, key=None)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in manifest.json")


def read_artifact(path: str | Path, key_file: str | os.PathLike | None = None) -> Artifact:
    """Open a model directory, refusing it when incomplete, tampered with or unsafe.

    Checks, before anything but the manifest is parsed: the manifest's size (at most 16 MiB), that it is a JSON
    object with ``task`` and ``files``, its format version and ``manifest_sha256``; that every listed file name stays
    inside the directory (no absolute path, no ``..``, no symlink) and every file matches its SHA-256.

    With a key file (``key_file``, or the file named by the environment variable ``SHOPFLOOR_KEY_FILE``) the
    directory must also carry a ``signature.json`` that verifies under that key (HMAC-SHA256 of ``manifest.json``,
    checked before the manifest is parsed); an unsigned directory or a signature that does not match is refused.
    Without a key an existing signature is **not checked** (``Artifact.signature == "not checked"``): the hashes
    then only catch accidental corruption, not a deliberate edit whose author recomputed them.
    """
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"model directory {root} does not exist; pass the --out folder of `shopfloor train`")
    resolved = resolve_key_file(key_file)
    if resolved is None:
        return _verify(root, key=None)
    key_path, origin = resolved
    try:
        key = read_key(key_path)
    except ConfigError as exc:
        raise ConfigError(f"{exc} ({origin})") from None
    return _verify(root, key=(key, key_path, origin))


def _verify(root: Path, key: tuple[bytes, Path, str] | None) -> Artifact:
    if not root.is_dir():
        raise ArtifactError(f"model directory {root} does not exist; pass the --out folder of `shopfloor train`")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file() and not manifest_path.is_symlink():
        raise ArtifactError(f"{root} has no {MANIFEST}: it is not a shopfloor model directory (or it is incomplete)")
    raw = _read_bounded(manifest_path, MAX_MANIFEST_BYTES, "manifest")
    if key is not None:
        _check_signature(root, raw, *key)
        signature = "verified"
    else:
        signature = "not checked" if (root / SIGNATURE).exists() else "unsigned"
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, absurd nesting or numbers
        raise ArtifactError(f"{manifest_path} is not valid JSON ({exc}); the model directory is corrupt") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{manifest_path} holds a JSON {type(manifest).__name__}, not an object; it is not a "
                            "shopfloor manifest: the model directory is corrupt or was made by hand")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{root} uses artifact format {manifest.get('format_version')!r}; this shopfloor reads {FORMAT_VERSION}"
        )
    try:
        checksum = _manifest_checksum(manifest)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ArtifactError(f"{manifest_path} cannot be checked ({exc}); the model directory is corrupt") from exc
    if manifest.get("manifest_sha256") != checksum:
        raise ArtifactError(f"{manifest_path} was edited after the model was written; retrain or restore it")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ArtifactError(f"{manifest_path} lacks {', '.join(missing)}; it is not a complete shopfloor manifest: "
                            "retrain or restore the model directory")
    if not isinstance(manifest["task"], str) or not manifest["task"]:
        raise ArtifactError(f"{manifest_path}: 'task' must be a task name, not {manifest['task']!r}; "
                            "retrain or restore the model directory")
    files = manifest["files"]
    if not isinstance(files, dict):
        raise ArtifactError(f"{manifest_path}: 'files' must map file names to SHA-256s, not a "
                            f"{type(files).__name__}; retrain or restore the model directory")
    for required in (WEIGHTS, ONNX_MODEL):
        if required not in files:
            raise ArtifactError(f"{root} manifest lists no {required}; the model directory is incomplete")
    checked = {name: _check_name(root, name) for name in files}  # every name first, before opening any file
    for name, fpath in checked.items():
        expected = files[name]
        if not isinstance(expected, str) or not _HEX64.fullmatch(expected):
            raise ArtifactError(f"{manifest_path} records {expected!r} as the SHA-256 of {name}, which is not a "
                                "SHA-256; retrain or restore the model directory")
        if not fpath.is_file():
            raise ArtifactError(f"{root} is incomplete: {name} is missing (or not a regular file); copy the whole "
                                "model directory")
        if sha256_file(fpath) != expected:
            raise ArtifactError(
                f"{fpath} does not match the SHA-256 recorded in the manifest: the file was modified or "
                "corrupted after training; restore it or retrain"
            )
    return Artifact(root, manifest, signature=signature, manifest_file_sha256=sha256_bytes(raw))

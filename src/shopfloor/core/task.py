"""The contract every application task follows: fit / evaluate / predict / save / load / export.

A task owns a typed ``Config`` (with a ``training`` sub-config), a plain torch model
(``self.torch_model``, no training logic inside) and the fitted state it needs at inference
(``self.state``: labels, thresholds, preprocessing...). After ``fit`` the model is exported to
ONNX once; ``evaluate`` and ``predict`` then run that graph through ONNX Runtime
(:class:`shopfloor.core.runtime.OnnxModel`), so what is evaluated is what is deployed.

A new task subclasses :class:`Task`, implements the abstract methods, and registers itself
with :func:`shopfloor.core.registry.register`.
"""

from __future__ import annotations

import functools
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from .artifact import Artifact, read_artifact, sign_artifact, write_artifact
from .config import StrictModel, TrainingConfig, build_config
from .errors import ArtifactError, ConfigError, DataError, NotFittedError, ShopfloorError
from .ranges import InputRanges, report_out_of_range
from .runtime import OnnxModel, ParallelRunner, export_onnx

PRECISIONS = ("auto", "fp32", "int8")
INT8_MODEL = "model.int8.onnx"  # the int8 graph `shopfloor optimize` adds when it passes its accuracy gate

# the kinds of input a task declares (Task.input_kind), and what a server/stream request may carry for each
INPUT_KINDS = {
    "image": "an image file (png, jpg, bmp, tif): multipart upload or raw bytes",
    "table": "records: JSON rows [{column: value}], {\"rows\": [...]}, or a CSV/Parquet file",
    "signal": "a signal: JSON array (samples,) or (samples, channels), or a .npy/.wav/.csv/.mat file",
    "file": "a file the task reads",
}

T = TypeVar("T")
V = TypeVar("V")


@dataclass(frozen=True)
class TableColumns:
    """The columns a ``table`` task's ``predict`` reads from each row, so a stream can build rows from named values
    (``Task.table_columns``).

    ``values``: the input columns, in the model's order; ``text``: those among them holding categories (text, e.g. a
    product type), the others are numbers. History tasks (rows are one unit's readings in time order) also name
    their ``unit`` and ``time`` columns.
    """

    values: tuple[str, ...]
    text: tuple[str, ...] = ()
    unit: str | None = None
    time: str | None = None

    @property
    def required(self) -> tuple[str, ...]:
        """Every column a row must carry: unit, time, then the values."""
        return tuple(c for c in (self.unit, self.time, *self.values) if c is not None)


class NoOptions(StrictModel):
    """Evaluate options for tasks that take none."""


class OnnxSignature(StrictModel):
    """How to export a task's model: example inputs and the graph's input/output names."""

    model_config = StrictModel.model_config | {"arbitrary_types_allowed": True}
    example_inputs: tuple
    input_names: list[str]
    output_names: list[str]


class Task(ABC):
    """Base class of every application task (see module docstring)."""

    name: ClassVar[str]
    Config: ClassVar[type[StrictModel]]
    EvaluateOptions: ClassVar[type[StrictModel]] = NoOptions
    # what one input of ``predict`` is, so the server and the streams need no per-task code (see INPUT_KINDS):
    # a file with one of ``input_suffixes``, or for "table"/"signal" also JSON (rows / a nested number array)
    input_kind: ClassVar[str] = "file"
    # whether ``fit`` can run without data (e.g. voice commands from synthesized speech only): `train` then
    # accepts no --data
    data_optional: ClassVar[bool] = False
    input_suffixes: ClassVar[tuple[str, ...]] = ()
    # config fields added after models were first saved, with the value those older models were built with
    # (a saved config lists every field that existed when it was written; a missing one predates the field)
    predates: ClassVar[dict[str, Any]] = {}
    # how the int8 accuracy gate compares each graph output of fp32 and int8 (see shopfloor.core.quantize): output
    # name -> "top1" | "decision" | "value" | "report"; outputs not listed follow the default rule of their name
    precision_checks: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every task's ``evaluate`` and ``predict`` refuse to run before ``fit``/``load`` (NotFittedError),
        before they read any data."""
        super().__init_subclass__(**kwargs)
        for name in ("evaluate", "predict"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_requires_fitted", False):
                setattr(cls, name, _requires_fitted(method))

    def __init__(self, config: StrictModel | dict | None = None, **overrides: Any):
        base = config.model_dump() if isinstance(config, StrictModel) else dict(config or {})
        # the task's own defaults first, so a partial nested override (--epochs 5) keeps the task's
        # other training defaults instead of falling back to the generic TrainingConfig ones
        self.config = build_config(self.Config, self.Config().model_dump(), base, overrides)
        self.torch_model: nn.Module | None = None
        self.state: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.data_fingerprint: str | None = None
        self._onnx_bytes: bytes | None = None
        self._runtime: OnnxModel | None = None
        self._parallel: ParallelRunner | None = None
        self._artifact: Artifact | None = None
        self._int8_bytes: bytes | None = None
        # refuse (instead of warn about) inputs far outside the training ranges
        self.strict: bool = False
        # inference: execution device (None: training.device) and graph precision (auto: int8 when it passed its gate)
        self.device: str | None = None
        self.precision: str = "auto"

    @property
    def training(self) -> TrainingConfig:
        return self.config.training  # type: ignore[attr-defined]

    # ----------------------------------------------------------------- to implement
    @abstractmethod
    def fit(self, data: Any, out_dir: str | Path | None = None) -> "Task":
        """Train on ``data``; sets ``torch_model``, ``state``, ``metrics`` and ``data_fingerprint``,
        then calls :meth:`export`. With ``out_dir`` the artifact is saved there (logs go beside it)."""

    @abstractmethod
    def evaluate(self, data: Any, report_dir: str | Path | None = None, **options: Any) -> dict[str, Any]:
        """Score labelled ``data`` through the ONNX runtime; return a JSON-able metrics dict and,
        with ``report_dir``, write ``report.html`` and its PNGs there."""

    @abstractmethod
    def predict(self, inputs: Sequence[Any], out_dir: str | Path | None = None,
                explain: bool = False) -> list[dict[str, Any]]:
        """Predict for ``inputs`` (paths or arrays) through the ONNX runtime; one JSON-able dict each."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        """Construct the (unfitted) torch model from ``self.config`` and ``self.state``."""

    @abstractmethod
    def onnx_signature(self) -> OnnxSignature:
        """Example inputs and names for exporting ``self.export_module()``."""

    def export_module(self) -> nn.Module:
        """The module that becomes ``model.onnx``: by default the torch model itself."""
        return self.require_model()

    # ----------------------------------------------------------------- shared machinery
    def require_model(self) -> nn.Module:
        """The fitted torch model; :class:`NotFittedError` before ``fit()`` or ``load()``."""
        if self.torch_model is None:
            raise NotFittedError(f"the {self.name} model is not fitted yet; call fit() or shopfloor.load() first")
        return self.torch_model

    # ----------------------------------------------------------------- soft problems
    def note_warning(self, message: str, category: type[Warning] = UserWarning) -> None:
        """Warn now and keep the message in ``state["warnings"]``, so the artifact, ``info``, reports and server
        responses carry it (one channel for soft problems: say the numbers and what to do)."""
        warnings.warn(message, category, stacklevel=2)
        notes = self.state.setdefault("warnings", [])
        if message not in notes:
            notes.append(message)

    # ----------------------------------------------------------------- input ranges
    def flag_out_of_range(self, key: str, records: Sequence[str], values: np.ndarray) -> list[list[str]]:
        """Check ``values`` (one row per record) against the training ranges stored in ``state[key]``; warn about
        the records far outside them, or refuse them when :attr:`strict`. Returns the flagged columns per record
        (none for models saved before ranges were stored)."""
        ranges = InputRanges.from_state(self.state.get(key))
        if ranges is None:
            return [[] for _ in records]
        flagged = ranges.flag(values)
        report_out_of_range(records, flagged, ranges, strict=self.strict)
        return flagged

    @staticmethod
    def mark_out_of_range(rows: Sequence[dict[str, Any]], flagged: Sequence[list[str]]) -> None:
        """Add ``out_of_range`` and ``out_of_range_columns`` to each result row."""
        for row, columns in zip(rows, flagged):
            row["out_of_range"] = bool(columns)
            row["out_of_range_columns"] = list(columns)

    # ----------------------------------------------------------------- data quality (`shopfloor check`, `suggest`)
    @classmethod
    def quality_data(cls, data: Any, model: "Task | None" = None, **options: Any) -> Any:
        """What `shopfloor check` examines in ``data``: a :class:`shopfloor.core.quality.QualityData` (items,
        labels, embeddings or out-of-fold probabilities, per-item facts, table). ``model``: a fitted task of this
        kind whose features the check may use. Tasks that support the check override this."""
        raise ConfigError(f"`shopfloor check` does not support {cls.name} yet; tasks with a check: see `shopfloor "
                          "check --help`")

    def labelling_candidates(self, pool: Any, **options: Any) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        """For `shopfloor suggest`: (names, class probabilities from the deployed graph, embeddings or None) of the
        unlabelled items in ``pool``. Tasks that support active learning override this."""
        raise ConfigError(f"`shopfloor suggest` does not support {self.name} models yet")

    @classmethod
    def with_added_labels(cls, data: Any, labels: Sequence[Any]) -> Any:
        """``data`` with the items a labeller labelled (:class:`shopfloor.core.quality.active.NewLabel`) folded
        in, as ``fit`` takes it (`train --add-labels`). Tasks that support active learning override this."""
        raise ConfigError(f"`train --add-labels` does not support {cls.name} yet")

    def table_columns(self) -> TableColumns | None:
        """For a fitted ``table`` task: the columns each input row carries (:class:`TableColumns`); ``None`` where
        the task does not declare them."""
        return None

    def export(self) -> bytes:
        """Export the fitted model to ONNX (kept in memory; ``save`` writes it) and reset the runtime. An int8 graph
        quantised from the previous weights is dropped (run :meth:`quantize` again)."""
        sig = self.onnx_signature()
        module = self.export_module().eval()
        self._onnx_bytes = export_onnx(module, sig.example_inputs, sig.input_names, sig.output_names)
        self._int8_bytes = None
        self.state.pop("quantization", None)
        self._runtime = None
        self._parallel = None
        return self._onnx_bytes

    @property
    def inference_device(self) -> str:
        """The execution device of the runtime: :attr:`device` (set by ``load``), else ``training.device``."""
        return self.device or self.training.device

    def deployed_graph(self) -> tuple[bytes, str]:
        """The graph the runtime runs and its precision: the int8 graph when :attr:`precision` is ``int8``, or
        ``auto`` and an int8 graph passed its accuracy gate (:meth:`quantize`); else the fp32 export."""
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")
        if self._onnx_bytes is None:
            self.require_model()
            self.export()
        assert self._onnx_bytes is not None
        if self.precision == "int8" and self._int8_bytes is None:
            record = self.state.get("quantization") or {}
            why = (f"its int8 graph was refused by the accuracy gate ({record.get('summary', '')})"
                   if record.get("accepted") is False else "it has no int8 graph")
            raise ConfigError(f"precision 'int8' was asked for but this {self.name} model {why}: run `shopfloor "
                              "optimize MODEL --int8 --data IMAGES` (task.quantize(data)), or use --precision fp32")
        if self.precision != "fp32" and self._int8_bytes is not None:
            return self._int8_bytes, "int8"
        return self._onnx_bytes, "fp32"

    @property
    def runtime(self) -> OnnxModel:
        """The ONNX Runtime session every evaluation and prediction goes through (:meth:`deployed_graph`)."""
        if self._runtime is None:
            graph, _ = self.deployed_graph()
            self._runtime = OnnxModel(graph, device=self.inference_device)
        return self._runtime

    @property
    def parallel_runtime(self) -> ParallelRunner:
        """The same graph run over many items side by side (throughput; see :class:`ParallelRunner`)."""
        if self._parallel is None:
            runtime = self.runtime  # exports if needed
            graph, _ = self.deployed_graph()
            self._parallel = ParallelRunner(graph, device=self.inference_device, batch_model=runtime)
        return self._parallel

    def reset_runtime(self) -> None:
        """Close the sessions, so the next run opens :meth:`deployed_graph` on :attr:`inference_device` afresh."""
        self._runtime = None
        self._parallel = None

    # ----------------------------------------------------------------- int8
    def graph_feeds(self, inputs: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        """The graph inputs ``predict(inputs)`` feeds the runtime, one dict of single-row arrays per row: the data
        int8 calibration and its accuracy gate run on. Default: record them from ``predict`` itself, so they went
        through exactly the deployed pre-processing."""
        from .quantize import record_feeds

        return record_feeds(self, inputs)

    def quantize(self, data: Any, max_disagreement: float = 0.01, max_inputs: int = 512,
                 calibration_data: Any = None, out_dir: str | Path | None = None) -> dict[str, Any]:
        """int8 static quantisation behind an accuracy gate (see :func:`shopfloor.core.quantize.quantize_task`):
        calibrate on part of ``data`` (inputs as ``predict`` takes them: files, folders, arrays; or on
        ``calibration_data``), compare int8 with fp32 on the rest, keep the int8 graph only when they disagree on at
        most ``max_disagreement`` of those inputs (else the fp32 graph stays, with a note giving the numbers). With
        ``out_dir`` the model directory is saved there. Returns the record also stored in ``state["quantization"]``."""
        from .quantize import quantize_task

        record = quantize_task(self, data, max_disagreement=max_disagreement, max_inputs=max_inputs,
                               calibration_data=calibration_data)
        if out_dir is not None:
            self.save(out_dir)
        return record

    def manifest(self) -> dict[str, Any]:
        """What goes into manifest.json besides files and versions."""
        return {
            "task": self.name,
            "config": self.config.model_dump(mode="json"),
            "state": self.state,
            "metrics": self.metrics,
            "data_fingerprint": self.data_fingerprint,
        }

    def extra_files(self) -> dict[str, bytes]:
        """Additional files to store in the artifact (hashed like the rest)."""
        return {}

    def save(self, out_dir: str | Path, key_file: str | Path | None = None) -> Artifact:
        """Write the model directory (manifest.json, weights.safetensors, model.onnx).

        A ``signature.json`` from an earlier save is removed; with ``key_file`` the new directory is signed
        (:func:`shopfloor.core.artifact.sign_artifact`)."""
        model = self.require_model()
        if self._onnx_bytes is None:
            self.export()
        assert self._onnx_bytes is not None
        files = self.extra_files()
        stale = Path(out_dir) / INT8_MODEL
        if self._int8_bytes is not None:
            files = {**files, INT8_MODEL: self._int8_bytes}
        elif stale.is_file() and not stale.is_symlink():
            stale.unlink()  # an int8 graph of earlier weights, or one refused since
        self._artifact = write_artifact(out_dir, self.manifest(), model.state_dict(), self._onnx_bytes, files)
        if key_file is not None:
            sign_artifact(out_dir, key_file)
            self._artifact = read_artifact(out_dir, key_file=key_file)
        return self._artifact

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", strict: bool = False,
             key_file: str | Path | None = None, precision: str = "auto") -> "Task":
        """Open a saved model directory (verified) as a ready-to-use task; ``strict`` refuses inputs far outside
        the training ranges instead of warning about them. ``device``: the execution provider (see
        :func:`shopfloor.core.runtime.select_providers`); ``precision``: auto (the int8 graph when the directory holds
        one that passed its gate), fp32 or int8.

        ``key_file`` (or the environment variable ``SHOPFLOOR_KEY_FILE``): the directory must carry a signature that
        verifies under that key (see :func:`shopfloor.core.artifact.read_artifact`); without one an existing
        signature is not checked. Everything in the directory is verified before it is parsed, and whatever does
        not fit (config, state, weights, graph) is an :class:`ArtifactError` naming what is wrong."""
        artifact = read_artifact(path, key_file=key_file)
        manifest_path = Path(path) / "manifest.json"
        if artifact.task != cls.name:
            raise ArtifactError(f"{path} holds a {artifact.task!r} model, not {cls.name!r}")
        manifest = artifact.manifest
        for key, kind in (("config", dict), ("state", dict), ("metrics", dict)):
            if key == "config" and key not in manifest:
                raise ArtifactError(f"{manifest_path} has no 'config'; it is not a complete {cls.name} manifest: "
                                    "retrain or restore the model directory")
            if key in manifest and not isinstance(manifest[key], kind):
                raise ArtifactError(f"{manifest_path}: '{key}' must be a JSON object, not "
                                    f"{type(manifest[key]).__name__}; retrain or restore the model directory")
        try:
            task = cls(cls.saved_config(manifest["config"]))
        except ConfigError as exc:
            detail = str(exc).removeprefix("invalid configuration:")
            raise ArtifactError(f"the config stored in {manifest_path} is not a valid {cls.name} config:{detail}\n"
                                "It was edited, or written by an incompatible shopfloor version: retrain or restore "
                                "the model directory") from exc
        if device in ("auto", "cpu", "cuda"):
            task.training.device = device
        task.device = device
        task.precision = precision
        task.strict = strict
        task.state = manifest.get("state", {})
        task.metrics = manifest.get("metrics", {})
        task.data_fingerprint = manifest.get("data_fingerprint")
        task._artifact = artifact
        try:
            task.load_extra_files(artifact)
            model = task.build_model()
        except ShopfloorError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(
                f"the state stored in {path} does not fit the {cls.name} model ({type(exc).__name__}: {exc}); the "
                "manifest was edited or written by an incompatible shopfloor version: retrain or restore the "
                "model directory") from exc
        state_dict = artifact.state_dict()  # verified bytes, parsed by safetensors (never pickle)
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            more = f"\n  ... and {len(lines) - 4} more" if len(lines) > 4 else ""
            detail = "\n  ".join(lines[:4]) + more
            raise ArtifactError(f"weights in {path} do not fit the {cls.name} model: {detail}\nThe weights do not "
                                "belong to this manifest: restore the model directory or retrain") from exc
        task.torch_model = model.eval()
        task._onnx_bytes = artifact.onnx_bytes()
        task._int8_bytes = artifact.read_bytes(INT8_MODEL) if INT8_MODEL in artifact.manifest["files"] else None
        # open the graph now, so a broken graph is refused here (naming the file), not at the first predict
        graph, precision = task.deployed_graph()
        origin = Path(path) / (INT8_MODEL if precision == "int8" else "model.onnx")
        task._runtime = OnnxModel(graph, device=device, origin=origin)
        return task

    @classmethod
    def saved_config(cls, stored: dict[str, Any]) -> dict[str, Any]:
        """A saved model's config, with :attr:`predates` filling fields added after it was written."""
        return {**cls.predates, **stored}

    def load_extra_files(self, artifact: Artifact) -> None:
        """Read task-specific files written by :meth:`extra_files` (default: none)."""

    def info(self) -> dict[str, Any]:
        """A short description for `shopfloor info`."""
        return {"task": self.name, "config": self.config.model_dump(mode="json"), "metrics": self.metrics}


def _requires_fitted(method: Callable) -> Callable:
    @functools.wraps(method)
    def checked(self: "Task", *args: Any, **kwargs: Any) -> Any:
        self.require_model()
        return method(self, *args, **kwargs)

    checked._requires_fitted = True  # type: ignore[attr-defined]
    return checked


def read_inputs(items: Sequence[T], read: Callable[[T], V], skip_bad: bool = False,
                name: Callable[[T], str] = str) -> tuple[list[tuple[int, V]], list[dict[str, Any]]]:
    """Read every input with ``read``; the ones that raise :class:`DataError` are listed together.

    By default one bad input refuses the whole batch (all problems in one message). With ``skip_bad`` they are
    skipped with one warning and returned as rows ``{"input", "skipped": True, "error"}`` for the result, so the
    caller reports how many were skipped. Returns ``([(index, value), ...], skipped_rows)``.
    """
    kept: list[tuple[int, V]] = []
    bad: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        try:
            kept.append((i, read(item)))
        except DataError as exc:
            bad.append({"input": name(item), "skipped": True, "error": str(exc)})
    if bad:
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        listed = "\n  ".join(row["error"] for row in bad[:10]) + more
        if not skip_bad:
            raise DataError(f"{len(bad)} of {len(items)} input(s) could not be read:\n  {listed}\n"
                            "Fix or remove them, or skip them with --skip-bad (skip_bad=True)")
        warnings.warn(f"skipped {len(bad)} of {len(items)} input(s) that could not be read:\n  {listed}",
                      UserWarning, stacklevel=2)
    return kept, bad


def batched(n: int, batch_size: int):
    """Yield slices covering range(n) in batches."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars and arrays inside ``obj`` to plain Python for json."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj

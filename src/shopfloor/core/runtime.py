"""The one inference path: ONNX Runtime over the exported graph, used by evaluate, predict and serving.

Devices are ONNX Runtime execution providers (:func:`select_providers`): ``cpu`` (the reference), ``cuda`` and
``tensorrt`` (package ``onnxruntime-gpu``), ``openvino`` (package ``onnxruntime-openvino``; ``openvino:GPU`` or
``openvino:NPU`` for an Intel GPU or AI accelerator) and ``auto`` (CUDA where present, else the CPU). A device that
is asked for but not present is a :class:`ConfigError` naming what to install, never a silent fallback.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np

from .errors import ArtifactError, ConfigError
from .quiet import quiet_libraries

Item = TypeVar("Item")

DEVICES = ("auto", "cpu", "cuda", "tensorrt", "openvino")
CPU = "CPUExecutionProvider"
PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
             "openvino": "OpenVINOExecutionProvider"}
INSTALL = {
    "cuda": "install onnxruntime-gpu in place of onnxruntime (`pip uninstall onnxruntime && pip install "
            "onnxruntime-gpu`) on a machine with an NVIDIA GPU, CUDA 12 and cuDNN 9",
    "tensorrt": "install onnxruntime-gpu in place of onnxruntime and NVIDIA TensorRT 10 (`pip install tensorrt`) on a "
                "machine with an NVIDIA GPU",
    "openvino": "install the OpenVINO build of ONNX Runtime in place of onnxruntime: `pip uninstall -y onnxruntime && "
                "pip install shopfloor[openvino]`",
}
OPENVINO_TARGETS = ("CPU", "GPU", "NPU")


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def parse_device(device: str) -> tuple[str, str | None]:
    """``"openvino:NPU"`` -> ``("openvino", "NPU")``; unknown devices are a :class:`ConfigError` listing the choices."""
    kind, _, target = str(device).partition(":")
    kind = kind.strip().lower()
    target = target.strip().upper() or None
    if kind not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; use one of {', '.join(DEVICES)} (openvino:GPU or openvino:NPU "
                          "for an Intel GPU or AI accelerator)")
    if target is not None and (kind != "openvino" or target not in OPENVINO_TARGETS):
        raise ConfigError(f"device {device!r}: only openvino takes a target, one of "
                          f"{', '.join('openvino:' + t for t in OPENVINO_TARGETS)}")
    return kind, target


def select_providers(device: str = "auto", threads: int | None = None) -> list[str | tuple[str, dict[str, str]]]:
    """ONNX Runtime execution providers for ``device``, most preferred first, the CPU provider last (for the
    few operators an accelerator lacks). A device that is asked for but absent is a :class:`ConfigError` saying what
    to install. ``threads`` (CPU-side threads per session) also reaches OpenVINO, which keeps its own thread pool."""
    kind, target = parse_device(device)
    available = available_providers()
    if kind == "cpu" or (kind == "auto" and PROVIDERS["cuda"] not in available):
        return [CPU]
    if kind == "auto":
        kind = "cuda"
    needed = [PROVIDERS[kind]] + ([PROVIDERS["cuda"]] if kind == "tensorrt" else [])
    missing = [p for p in needed if p not in available]
    if missing:
        import onnxruntime as ort

        raise ConfigError(f"device {device!r} was asked for but ONNX Runtime {ort.__version__} here has no "
                          f"{' or '.join(missing)} (it has {', '.join(available)}): {INSTALL[kind]}; or use "
                          "--device cpu")
    if kind == "openvino":
        options = {"device_type": target or "CPU"}
        if threads and (target or "CPU") == "CPU":
            options["num_of_threads"] = str(threads)
        return [(PROVIDERS["openvino"], options), CPU]
    return [*needed, CPU]


def runs_on_host(device: str) -> bool:
    """Whether ``device`` computes on this machine's CPU cores (the CPU provider or OpenVINO's CPU target), so
    one-thread sessions side by side pay off (see :class:`ParallelRunner`)."""
    kind, target = parse_device(device)
    if kind == "auto":
        return PROVIDERS["cuda"] not in available_providers()
    return kind == "cpu" or (kind == "openvino" and (target or "CPU") == "CPU")


class OnnxModel:
    """An ONNX Runtime session with named inputs and outputs, run in batches.

    ``origin`` names where the graph came from (e.g. ``model_dir/model.onnx``; a path given as ``model`` is its own
    origin): a graph from a file that ONNX Runtime cannot load is then an :class:`ArtifactError` naming that file,
    not a runtime traceback. Graphs exported in memory (no origin) raise ONNX Runtime's own error: that is a bug.
    """

    def __init__(self, model: bytes | str | os.PathLike, device: str = "auto", threads: int | None = None,
                 origin: str | os.PathLike | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
            # shared machine: idle ONNX Runtime threads sleep instead of spinning, like OpenMP's passive policy
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = model if isinstance(model, bytes) else str(model)
        if origin is None and not isinstance(model, bytes):
            origin = source
        providers = select_providers(device, threads)  # a device problem stays a ConfigError
        try:
            self.session = ort.InferenceSession(source, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime's InvalidProtobuf, Fail, InvalidGraph... derive from Exception only
            if origin is None:
                raise
            raise ArtifactError(
                f"cannot load the ONNX graph {origin}: {exc}; the graph is broken (if its hash matches the manifest, "
                "the directory was written broken or its hashes were recomputed after an edit): restore model.onnx "
                "from a good copy of the model directory, or retrain") from exc
        self.origin = None if origin is None else str(origin)
        self.device = device
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    @property
    def on_cpu(self) -> bool:
        """Whether the graph runs on this machine's cores (CPU provider, or OpenVINO on its CPU target)."""
        return self.providers[0] == CPU or (self.providers[0] == PROVIDERS["openvino"] and runs_on_host(self.device))

    def run(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch; inputs by name, outputs as a name -> array dict."""
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise ValueError(f"missing ONNX inputs: {sorted(missing)}")
        feeds = {k: np.ascontiguousarray(v) for k, v in inputs.items()}
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def run_batches(self, batches: Iterator[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Run many batches and concatenate each output along the first axis."""
        collected: dict[str, list[np.ndarray]] = {}
        for batch in batches:
            for name, value in self.run(**batch).items():
                collected.setdefault(name, []).append(value)
        return {k: np.concatenate(v, axis=0) for k, v in collected.items()}


class ParallelRunner:
    """Runs one ONNX graph over many items, preparing (e.g. decoding) and scoring them side by side.

    On CPU, with at least one item per core: a one-thread session shared by one worker thread per core,
    each taking one item at a time through ``prepare`` and the graph (PIL and ONNX Runtime release the
    GIL). For throughput this beats one multi-threaded session over large batches: no intra-op
    synchronisation and cache-sized activations (PatchCore, 2 cores, batches of 16: 52.7 vs 40.9
    images/s). Fewer items than cores (a single image) run as one batch on the multi-threaded session.
    On a GPU the jobs are whole batches and the threads only overlap preparation with the device.
    Results equal a single batched run and come back in input order.
    """

    def __init__(self, model: bytes | str | os.PathLike, device: str = "auto", workers: int | None = None,
                 batch_model: OnnxModel | None = None):
        self.batch_model = batch_model or OnnxModel(model, device=device)
        on_cpu = self.batch_model.on_cpu
        origin = self.batch_model.origin
        self.item_model = OnnxModel(model, device=device, threads=1, origin=origin) if on_cpu else self.batch_model
        self.workers = workers or (cpu_cores() if on_cpu else 2)

    def side_by_side(self, n_items: int) -> bool:
        """Whether ``n_items`` run on the one-thread session, one worker per core (CPU, an item per core)."""
        return self.item_model is not self.batch_model and n_items >= self.workers > 1

    def job_size(self, n_items: int, batch_size: int, per_run: int | None = None) -> int:
        """Items per graph run: side by side ``per_run`` (default one, at most an equal share per core);
        otherwise ``batch_size`` items on the multi-threaded (or accelerator) session."""
        if not self.side_by_side(n_items):
            return max(1, batch_size)
        return max(1, min(per_run or 1, -(-n_items // self.workers)))

    def map(self, prepare: Callable[[Sequence[Item]], dict[str, np.ndarray]], items: Sequence[Item],
            batch_size: int, progress: Callable[[int], Any] | None = None,
            per_run: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Outputs of ``graph(prepare(job))`` for consecutive jobs of :meth:`job_size` items, in order;
        ``progress(n)`` is called with the number of items of each finished job. ``per_run``: items per
        run when they run side by side (graphs that read large fitted tensors per run prefer several)."""
        size = self.job_size(len(items), batch_size, per_run)
        model = self.item_model if self.side_by_side(len(items)) else self.batch_model
        jobs = [items[i:i + size] for i in range(0, len(items), size)]

        def run(job: Sequence[Item]) -> dict[str, np.ndarray]:
            return model.run(**prepare(job))

        with ThreadPoolExecutor(max_workers=min(self.workers, max(1, len(jobs)))) as pool:
            for job, out in zip(jobs, pool.map(run, jobs)):
                if progress is not None:
                    progress(len(job))
                yield out


def export_onnx(module: Any, example_inputs: tuple, input_names: list[str], output_names: list[str],
                dynamic_batch: bool = True, opset: int = 17) -> bytes:
    """Export a torch module to ONNX bytes (TorchScript exporter, opset 17), batch axis dynamic."""
    import io

    import torch

    module = module.eval()
    dynamic_axes = {n: {0: "batch"} for n in input_names + output_names} if dynamic_batch else None
    buffer = io.BytesIO()
    with torch.no_grad(), quiet_libraries():
        torch.onnx.export(
            module, example_inputs, buffer, input_names=input_names, output_names=output_names,
            dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False,
        )
    return buffer.getvalue()

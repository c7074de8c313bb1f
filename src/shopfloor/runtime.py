"""The one inference path: ONNX Runtime over the exported graph, used by evaluate, predict and serving."""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np

from .errors import ConfigError


def available_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def select_providers(device: str = "auto") -> list[str]:
    """Execution providers for ``device`` (auto | cpu | cuda); asking for cuda without it is an error."""
    available = available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ConfigError(
                "device 'cuda' was asked for but ONNX Runtime has no CUDAExecutionProvider here "
                "(install onnxruntime-gpu on a machine with CUDA, or use --device cpu)"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto":
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]
    raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")


class OnnxModel:
    """An ONNX Runtime session with named inputs and outputs, run in batches."""

    def __init__(self, model: bytes | str | os.PathLike, device: str = "auto", threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
            # shared machine: idle ONNX Runtime threads sleep instead of spinning, like OpenMP's passive policy
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, sess_options=options, providers=select_providers(device))
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

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


def export_onnx(module: Any, example_inputs: tuple, input_names: list[str], output_names: list[str],
                dynamic_batch: bool = True, opset: int = 17) -> bytes:
    """Export a torch module to ONNX bytes (TorchScript exporter, opset 17), batch axis dynamic."""
    import io

    import torch

    module = module.eval()
    dynamic_axes = {n: {0: "batch"} for n in input_names + output_names} if dynamic_batch else None
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            module, example_inputs, buffer, input_names=input_names, output_names=output_names,
            dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False,
        )
    return buffer.getvalue()

"""The ONNX Runtime inference path: the parallel runner gives the batched run's results, in order."""

import numpy as np
import pytest
import torch
from torch import nn

from shopfloor.core.errors import ConfigError
from shopfloor.core.runtime import OnnxModel, ParallelRunner, available_providers, export_onnx, select_providers


class Affine(nn.Module):
    def forward(self, x):
        return x * 2.0 + 1.0, x.sum(dim=1)


@pytest.fixture(scope="module")
def graph() -> bytes:
    return export_onnx(Affine(), (torch.zeros(2, 3),), ["x"], ["y", "total"])


def test_parallel_runner_matches_one_batched_run_in_order(graph):
    items = [np.full(3, i, dtype=np.float32) for i in range(23)]
    expected = OnnxModel(graph, device="cpu").run(x=np.stack(items))
    runner = ParallelRunner(graph, device="cpu", workers=3)
    assert runner.job_size(len(items), 16) == 1  # CPU: one item per run, one run per worker
    assert runner.job_size(2, 16) == 16  # fewer items than workers: one batch on the multi-threaded session
    assert runner.job_size(16, 16, per_run=8) == 6  # several per run, but every worker gets a share
    seen = []
    outs = list(runner.map(lambda job: {"x": np.stack(job)}, items, batch_size=16, progress=seen.append))
    np.testing.assert_allclose(np.concatenate([o["y"] for o in outs]), expected["y"])
    np.testing.assert_allclose(np.concatenate([o["total"] for o in outs]), expected["total"])
    assert sum(seen) == len(items)
    chunked = list(runner.map(lambda job: {"x": np.stack(job)}, items, batch_size=16, per_run=4))
    np.testing.assert_allclose(np.concatenate([o["y"] for o in chunked]), expected["y"])
    single = list(runner.map(lambda job: {"x": np.stack(job)}, items[:1], batch_size=16))
    np.testing.assert_allclose(single[0]["y"], expected["y"][:1])


def test_parallel_runner_reraises_errors_from_prepare(graph):
    def prepare(job):
        raise ValueError("cannot decode item")

    with pytest.raises(ValueError, match="cannot decode"):
        list(ParallelRunner(graph, device="cpu").map(prepare, [1, 2, 3], batch_size=2))


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown device"):
        select_providers("tpu")


# ----------------------------------------------------------------------------------------------- devices
ACCELERATORS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
                "openvino": "OpenVINOExecutionProvider"}
# parity with the reference CPU provider, max |difference| of softmax probabilities: fp32 kernels differ in
# summation order (and CUDA may use TF32 for convolutions), so 1e-3; the int8 graph must agree with fp32 within
# its gate (top-1 on at least 99 % of the inputs)
FP32_TOLERANCE = 1e-3


def test_cpu_and_auto_select_the_cpu_provider_here():
    assert select_providers("cpu") == ["CPUExecutionProvider"]
    expected = "CUDAExecutionProvider" if "CUDAExecutionProvider" in available_providers() else "CPUExecutionProvider"
    assert select_providers("auto")[0] == expected
    assert select_providers("auto")[-1] == "CPUExecutionProvider"


@pytest.mark.parametrize("device", ["cuda:0", "cpu:NPU", "openvino:TPU"])
def test_device_targets_only_for_openvino(device):
    with pytest.raises(ConfigError, match="only openvino takes a target|unknown device"):
        select_providers(device)


@pytest.mark.parametrize("device", sorted(ACCELERATORS))
def test_absent_accelerator_is_an_error_saying_what_to_install(device):
    if ACCELERATORS[device] in available_providers() and (device != "tensorrt" or
                                                           "CUDAExecutionProvider" in available_providers()):
        pytest.skip(f"{ACCELERATORS[device]} is present here (its parity test runs instead)")
    with pytest.raises(ConfigError, match=f"{ACCELERATORS[device]}.*install.*--device cpu") as info:
        OnnxModel(export_onnx(Affine(), (torch.zeros(2, 3),), ["x"], ["y", "total"]), device=device)
    assert {"cuda": "onnxruntime-gpu", "tensorrt": "tensorrt", "openvino": "shopfloor[openvino]"}[device] in str(
        info.value)


@pytest.mark.parametrize("device", sorted(ACCELERATORS))
def test_present_accelerator_matches_the_cpu_provider_fp32_and_int8(device):
    if ACCELERATORS[device] not in available_providers():
        pytest.skip(f"{ACCELERATORS[device]} is not installed here (the refusal test covers it)")
    from int8_toy import ToyConv, make_arrays

    task = ToyConv().fit(None)
    xs, _ = make_arrays(20, 1)
    task.quantize(list(xs[::2]), max_disagreement=0.01)
    reference = OnnxModel(task._onnx_bytes, device="cpu").run(image=xs)["probabilities"]
    model = OnnxModel(task._onnx_bytes, device=device)
    assert model.providers[0] == ACCELERATORS[device]
    assert np.max(np.abs(model.run(image=xs)["probabilities"] - reference)) <= FP32_TOLERANCE
    if task._int8_bytes is not None:
        int8 = OnnxModel(task._int8_bytes, device=device).run(image=xs)["probabilities"]
        assert np.mean(int8.argmax(1) != reference.argmax(1)) <= 0.01


def test_openvino_options_reach_the_provider():
    if ACCELERATORS["openvino"] not in available_providers():
        with pytest.raises(ConfigError, match="shopfloor\\[openvino\\]"):
            select_providers("openvino:NPU")
        return
    providers = select_providers("openvino", threads=1)
    assert providers[0] == ("OpenVINOExecutionProvider", {"device_type": "CPU", "num_of_threads": "1"})
    assert select_providers("openvino:GPU")[0][1]["device_type"] == "GPU"

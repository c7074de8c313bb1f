"""The ONNX Runtime inference path: the parallel runner gives the batched run's results, in order."""

import numpy as np
import pytest
import torch
from torch import nn

from shopfloor.core.errors import ConfigError
from shopfloor.core.runtime import OnnxModel, ParallelRunner, export_onnx, select_providers


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

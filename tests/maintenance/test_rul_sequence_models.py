"""The shared sequence models: shapes, variable batch and ONNX Runtime parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shopfloor.core.errors import ConfigError
from shopfloor.core.runtime import OnnxModel, export_onnx
from shopfloor.maintenance.sequence import SEQUENCE_MODELS, build_sequence_model


@pytest.mark.parametrize("name", sorted(SEQUENCE_MODELS))
def test_sequence_model_shapes_and_onnx_parity(name):
    torch.manual_seed(0)
    model = build_sequence_model(name, in_channels=5, out_features=3, seq_len=24).eval()
    x = torch.randn(4, 5, 24)
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.shape == (4, 3)
    runtime = OnnxModel(export_onnx(model, (x[:2],), ["x"], ["y"]), device="cpu")
    got = runtime.run(x=x.numpy())["y"]  # batch of 4 through a graph exported with batch 2
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_cnn_average_pooling_takes_any_length():
    model = build_sequence_model("cnn1d", 1, 10, pooling="avg", activation="relu").eval()
    assert model(torch.randn(2, 1, 1024)).shape == (2, 10)
    assert model(torch.randn(2, 1, 300)).shape == (2, 10)


def test_bidirectional_gru():
    model = build_sequence_model("gru", 3, 2, bidirectional=True, hidden_size=8).eval()
    assert model(torch.randn(2, 3, 7)).shape == (2, 2)


def test_unknown_model_and_option_are_config_errors():
    with pytest.raises(ConfigError, match="unknown sequence model"):
        build_sequence_model("resnet", 3, 1)
    with pytest.raises(ConfigError, match="invalid option"):
        build_sequence_model("lstm", 3, 1, no_such_option=1)
    with pytest.raises(ConfigError, match="seq_len"):
        build_sequence_model("cnn1d", 3, 1)

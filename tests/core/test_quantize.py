"""int8 behind its accuracy gate: written, hashed, loaded and used; refused (fp32 kept, with the numbers) when it
disagrees; the layers chosen; the CLI end to end. A toy convolutional task keeps it fast."""

import json

import numpy as np
import onnx
import pytest
import torch
from int8_toy import CLASSES, ToyConv, make_arrays, write_folder
from torch import nn
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.core.artifact import read_artifact
from shopfloor.core.errors import ConfigError, DataError
from shopfloor.core.quantize import compare_outputs, quantize_graph, select_layers
from shopfloor.core.registry import load, register
from shopfloor.core.runtime import OnnxModel, available_providers, export_onnx
from shopfloor.core.task import INT8_MODEL

register(ToyConv.name, "int8_toy:ToyConv")
BLANK = [np.zeros((3, 16, 16), np.float32)] * 8  # calibration that sees no structure: int8 ranges collapse


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    return write_folder(root / "train", 40, 0), write_folder(root / "test", 20, 1)


@pytest.fixture
def model_dir(data, tmp_path):
    ToyConv().fit(data[0], out_dir=tmp_path / "m")
    return tmp_path / "m"


def _ops(graph: bytes) -> set[str]:
    return {n.op_type for n in onnx.load_from_string(graph).graph.node}


def test_int8_is_written_hashed_loaded_and_used(model_dir, data):
    task = load(model_dir, device="cpu")
    record = task.quantize(data[0], out_dir=model_dir)
    assert record["accepted"] and record["n_calibration"] == 60 and record["n_validation"] == 60
    assert record["layers"] == {"layers": 5, "quantized": 1,
                                "kept_fp32": {"first_and_last": ["/model/head/Gemm", "/model/trunk/trunk.0/Conv"],
                                              "last_conv_and_after": 2, "feature_taps": 1, "depthwise": 0}}
    artifact = read_artifact(model_dir)  # every file, the int8 graph included, matches its SHA-256
    assert INT8_MODEL in artifact.manifest["files"]
    assert artifact.manifest["state"]["quantization"]["accepted"] is True
    int8, fp32 = load(model_dir, device="cpu"), load(model_dir, device="cpu", precision="fp32")
    assert int8.deployed_graph()[1] == "int8" and fp32.deployed_graph()[1] == "fp32"
    assert "QuantizeLinear" in _ops(int8.deployed_graph()[0]) and "QuantizeLinear" not in _ops(fp32.deployed_graph()[0])
    # predictions within the gate on held-out data: top-1 agrees on at least 99 % of the test arrays
    xs, _ = make_arrays(20, 1)
    p8 = int8.runtime.run(image=xs)["probabilities"]
    p32 = fp32.runtime.run(image=xs)["probabilities"]
    assert np.mean(p8.argmax(1) != p32.argmax(1)) <= 0.01
    assert int8.evaluate(data[1])["accuracy"] >= fp32.evaluate(data[1])["accuracy"] - 0.01
    # a tampered int8 graph is refused at load like any other file
    (model_dir / INT8_MODEL).write_bytes(int8.deployed_graph()[0][:-8])
    with pytest.raises(Exception, match="SHA-256"):
        load(model_dir, device="cpu")


def test_gate_refuses_a_disagreeing_graph_and_keeps_fp32_with_the_numbers(model_dir, data):
    task = load(model_dir, device="cpu")
    task.quantize(data[0], out_dir=model_dir)
    assert (model_dir / INT8_MODEL).is_file()
    with pytest.warns(UserWarning, match="int8 graph refused"):
        record = task.quantize(data[0], calibration_data=BLANK, out_dir=model_dir)
    assert not record["accepted"] and record["disagreement"] > 0.01
    assert record["n_validation"] == 120  # calibrated elsewhere: every input is checked
    assert not (model_dir / INT8_MODEL).exists()  # the earlier int8 graph goes too
    again = load(model_dir, device="cpu")
    assert again.deployed_graph()[1] == "fp32"
    notes = again.state["warnings"]
    assert len(notes) == 1 and f"{round(record['disagreement'] * 120)} of 120" in notes[0]
    with pytest.raises(ConfigError, match="refused by the accuracy gate"):
        load(model_dir, device="cpu", precision="int8")
    # a tiny gate refuses too: any disagreement at all is over max_disagreement=0
    with pytest.warns(UserWarning):
        strict = task.quantize(data[0], calibration_data=BLANK, max_disagreement=0.0)
    assert not strict["accepted"]


def test_new_weights_drop_the_int8_graph(model_dir, data):
    task = load(model_dir, device="cpu")
    task.quantize(data[0])
    assert task.deployed_graph()[1] == "int8"
    task.export()  # weights changed (refit, adapt): the int8 graph of the old ones must not be used
    assert task.deployed_graph()[1] == "fp32" and "quantization" not in task.state
    task.save(model_dir)
    assert not (model_dir / INT8_MODEL).exists()


def test_bad_quantize_requests_are_clear_errors(model_dir, tmp_path):
    task = load(model_dir, device="cpu")
    with pytest.raises(ConfigError, match="max_disagreement"):
        task.quantize(BLANK, max_disagreement=1.5)
    with pytest.raises(DataError, match="at least 4"):
        task.quantize(BLANK[:2])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no file files"):
        task.quantize(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        task.quantize(tmp_path / "missing")
    with pytest.raises(ConfigError, match="unknown precision"):
        load(model_dir, device="cpu", precision="int4")


class BankSearch(nn.Module):
    """A PatchCore-like graph: conv trunk, then a nearest-neighbour Gemm against a constant bank and a map head."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.ReLU(),
                                   nn.Conv2d(8, 8, 3, padding=1))
        self.register_buffer("bank", torch.randn(32, 8))
        self.register_buffer("rows", torch.rand(16, 16))

    def forward(self, x):
        f = self.trunk(x).flatten(2).transpose(1, 2)  # [B, 256, 8]
        d = torch.addmm((self.bank * self.bank).sum(1), f.reshape(-1, 8), self.bank.t() * -2).amin(1)
        m = torch.matmul(self.rows, d.reshape(-1, 16, 16))
        return torch.sigmoid(m.flatten(1).amax(1)), m


def test_only_the_trunk_is_quantised_search_and_post_processing_stay_fp32():
    graph = export_onnx(BankSearch().eval(), (torch.rand(1, 3, 16, 16),), ["images"], ["score", "anomaly_map"])
    chosen, info = select_layers(onnx.load_from_string(graph))
    names = {n.name: n.op_type for n in onnx.load_from_string(graph).graph.node}
    # the second conv only: the first (stem), the depthwise conv, the 1x1 conv feeding the last conv (a feature tap),
    # the last conv (the features searched) and the search Gemm stay fp32
    assert [names[c] for c in chosen] == ["Conv"] and chosen[0].endswith("trunk.2/Conv")
    assert info["kept_fp32"] == {"first_and_last": ["/Gemm", "/trunk/trunk.0/Conv"], "last_conv_and_after": 2,
                                 "feature_taps": 1, "depthwise": 1}
    rows = [{"images": np.random.default_rng(i).random((1, 3, 16, 16), np.float32)} for i in range(8)]
    int8, _ = quantize_graph(graph, rows)
    quantised = {n.input[0] for n in onnx.load_from_string(int8).graph.node if n.op_type == "DequantizeLinear"}
    gemm = [n for n in onnx.load_from_string(int8).graph.node if n.op_type == "Gemm"]
    assert gemm and not any(i in quantised for i in gemm[0].input)
    out = OnnxModel(int8, device="cpu").run(images=rows[0]["images"])
    assert out["anomaly_map"].shape == (1, 16, 16)


def test_compare_outputs_per_check():
    ref = {"probabilities": np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]]), "score": np.array([0.2, 0.45, 0.7]),
           "rul": np.array([[10.0], [20.0], [30.0]]), "anomaly_map": np.full((3, 2, 2), 0.4)}
    cand = {"probabilities": np.array([[0.8, 0.2], [0.6, 0.4], [0.5, 0.5]]), "score": np.array([0.21, 0.55, 0.69]),
            "rul": np.array([[10.1], [20.0], [32.0]]), "anomaly_map": np.full((3, 2, 2), 0.6)}
    rows, figures = compare_outputs(ref, cand)
    assert figures["probabilities"]["disagreement"] == pytest.approx(1 / 3)  # row 1 changes class
    assert figures["score"]["disagreement"] == pytest.approx(1 / 3)  # 0.45 -> 0.55 crosses the threshold
    assert figures["score"]["spearman"] == pytest.approx(1.0)
    assert figures["rul"]["disagreement"] == pytest.approx(1 / 3)  # 2.0 off is over 5 % of the spread (8.2)
    assert figures["anomaly_map"] == {"check": "report", "max_abs_diff": pytest.approx(0.2),
                                      "flipped_element_share": 1.0}  # measured, not gated
    assert rows.tolist() == [False, True, True]
    declared, _ = compare_outputs({"rul": ref["rul"]}, {"rul": cand["rul"]}, {"rul": "report"})
    assert not declared.any()


runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_optimize_then_predict_on_each_precision_and_device(model_dir, data):
    result = invoke("optimize", model_dir, "--data", data[0])
    assert result.exit_code == 2 and "give --int8" in result.output
    result = invoke("optimize", model_dir, "--int8", "--data", data[0])
    assert result.exit_code == 0, result.output
    assert "disagree on 0 of 60" in result.output and "int8 graph written" in result.output
    rows = {}
    for precision in ("auto", "int8", "fp32"):
        result = invoke("predict", model_dir, data[1], "--device", "cpu", "--precision", precision, "-q")
        assert result.exit_code == 0, result.output
        rows[precision] = json.loads(result.stdout)
    assert [r["label"] for r in rows["int8"]] == [r["label"] for r in rows["fp32"]]
    assert rows["auto"] == rows["int8"]
    assert sum(r["label"] == r["input"].split("/")[-2] for r in rows["int8"]) >= 0.99 * len(CLASSES) * 20
    result = invoke("evaluate", model_dir, "--data", data[1], "--precision", "int8", "--json", "-")
    assert result.exit_code == 0 and json.loads(result.stdout)["accuracy"] >= 0.99
    result = invoke("optimize", model_dir, "--int8", "--data", data[0], "--calibration", data[0] / CLASSES[0],
                    "--max-disagreement", "0")
    assert result.exit_code == 0, result.output  # one class to calibrate on is still within 0 here, or refused:
    record = read_artifact(model_dir).manifest["state"]["quantization"]
    assert record["accepted"] == ("int8 graph written" in result.output)
    if "TensorrtExecutionProvider" not in available_providers():
        result = invoke("predict", model_dir, data[1], "--device", "tensorrt")
        assert result.exit_code == 2 and "TensorrtExecutionProvider" in result.output and "install" in result.output
    result = invoke("predict", model_dir, data[1], "--precision", "int4")
    assert result.exit_code == 2 and "unknown precision" in result.output


def test_export_compares_the_fp32_graph_even_beside_an_int8_one(model_dir, data, tmp_path):
    from shopfloor.core.export import export_artifact

    load(model_dir, device="cpu").quantize(data[0], out_dir=model_dir)
    assert export_artifact(model_dir, output=tmp_path / "m.onnx")["max_abs_diff"] <= 1e-5

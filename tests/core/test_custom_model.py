"""Your own architecture, the generic part: the YAML layer builder with shape inference, class-path import with
clear errors, and the input/output contract check (expected vs got)."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from torch import nn

from shopfloor.core.custom import (
    ModelContract,
    build_layers,
    build_user_model,
    import_model_class,
    parse_layers,
    read_model_file,
)
from shopfloor.core.custom.user_model import check_model_name
from shopfloor.core.errors import ConfigError
from shopfloor.inspection.classification.task import DefectClassification, DefectClassificationConfig

IMAGES = ModelContract((3, 28, 28), 10, "RGB", "logits")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """An importable module ``cm_user_nets`` with a good and a few broken networks."""
    (tmp_path / "cm_user_nets.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Good(nn.Module):
            def __init__(self, num_outputs, input_shape, hidden=8):
                super().__init__()
                self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), hidden),
                                         nn.ReLU(), nn.Linear(hidden, num_outputs))
            def forward(self, x):
                return self.net(x)

        class WrongWidth(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3 * 28 * 28, 7)
            def forward(self, x):
                return self.fc(x.flatten(1))

        class Pair(Good):
            def forward(self, x):
                return self.net(x), x

        class FixedBatch(Good):
            def forward(self, x):
                return self.net(x.reshape(2, -1))

        class Doubles(Good):
            def forward(self, x):
                return self.net(x).double()

        class NoWeights(nn.Module):
            def forward(self, x):
                return x.flatten(1)[:, :10]

        not_a_class = 3
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "cm_user_nets"
    sys.modules.pop("cm_user_nets", None)


def test_layer_list_infers_shapes_and_fills_outputs():
    net = build_layers(["grayscale", {"conv": {"filters": 4, "kernel": 3, "activation": "relu"}}, {"pool": 2},
                        "flatten", {"dropout": 0.1}, {"dense": 16}, "relu", {"dense": "outputs"}],
                       (3, 28, 28), 10)
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    assert convs[0].in_channels == 1  # after grayscale
    dense = [m for m in net if isinstance(m, nn.Linear)]
    assert dense[0].in_features == 4 * 13 * 13 and dense[-1].out_features == 10
    assert net(torch.zeros(5, 3, 28, 28)).shape == (5, 10)


def test_recurrent_layers_on_channels_first_sequences():
    net = build_layers([{"lstm": {"units": 6, "return_sequences": True}}, {"gru": {"units": 5, "bidirectional": True}},
                        {"dense": "outputs"}], (4, 12), 1)
    assert net(torch.zeros(3, 4, 12)).shape == (3, 1)
    assert [m for m in net if isinstance(m, nn.Linear)][0].in_features == 10  # both directions
    net = build_layers([{"conv": {"filters": 8, "padding": "same"}}, {"lstm": {"units": 6, "return_sequences": True}},
                        "global_pool", {"dense": 2}], (4, 12), 2)
    assert net(torch.zeros(3, 4, 12)).shape == (3, 2)


def test_layer_list_problems_are_listed_together():
    with pytest.raises(ConfigError) as info:
        parse_layers([{"convv": 3}, {"dense": {"unit": 3}}, "softmax", {"dense": None},
                      {"conv": {"filters": 3, "activation": "x"}}])
    message = str(info.value)
    assert "layer 1: unknown layer 'convv'" in message
    assert "layer 2: dense: unknown option(s) unit; dense takes units" in message
    assert "layer 3: softmax: leave it out" in message
    assert "layer 4: dense needs units" in message
    assert "layer 5: conv: unknown activation 'x'" in message


def test_layer_that_does_not_fit_its_input_names_the_shape():
    with pytest.raises(ConfigError, match=r"layer 2 \(dense\) gets \(N, 8, 26, 26\).*put - flatten"):
        build_layers([{"conv": 8}, {"dense": 10}], (3, 28, 28), 10)
    with pytest.raises(ConfigError, match=r"layer 3 \(pool\) cannot run on its input \(N, 8, 1, 1\)"):
        build_layers([{"conv": 8}, {"pool": 26}, {"pool": 2}], (3, 28, 28), 10)
    with pytest.raises(ConfigError, match=r"layer 1 \(lstm\) gets \(N, 3, 28, 28\)"):
        build_layers([{"lstm": 8}], (3, 28, 28), 10)


def test_contract_names_expected_and_got_output():
    with pytest.raises(ConfigError) as info:
        build_user_model("layers", {"layers": [{"conv": 4}, "flatten", {"dense": 12}]}, IMAGES)
    message = str(info.value)
    assert "feeds it input (N, 3, 28, 28) float32 (RGB), output (N, 10)" in message
    assert "expected (N, 10) = (2, 10) for a batch of 2, got (2, 12)" in message and "dense: outputs" in message


def test_class_path_builds_with_task_sizes_and_options(user_module):
    model = build_user_model(f"{user_module}:Good", {"hidden": 5}, IMAGES)
    assert model.net[1].out_features == 5 and model.net[-1].out_features == 10  # num_outputs from the task
    assert model(torch.zeros(4, 3, 28, 28)).shape == (4, 10)


@pytest.mark.parametrize("cls, expected", [
    ("WrongWidth", r"output shape: expected \(N, 10\) = \(2, 10\) for a batch of 2, got \(2, 7\)"),
    ("Pair", "forward returns a tuple; it must return one tensor"),
    ("FixedBatch", r"batch of 3 .*got \(2, 10\)|forward on a batch \(N, 3, 28, 28\) = \(3, 3, 28, 28\) failed"),
    ("Doubles", "output dtype: expected float32, got float64"),
    ("NoWeights", "no trainable parameters"),
])
def test_contract_errors_for_broken_classes(user_module, cls, expected):
    with pytest.raises(ConfigError, match=expected):
        build_user_model(f"{user_module}:{cls}", {}, IMAGES)


def test_class_path_import_errors_say_what_is_missing(user_module):
    with pytest.raises(ConfigError, match="no module named 'cm_nowhere'.*PYTHONPATH"):
        import_model_class("cm_nowhere.nets:Net")
    with pytest.raises(ConfigError, match="has no class 'Gods'; nn.Module classes in it: .*Good"):
        import_model_class(f"{user_module}:Gods")
    with pytest.raises(ConfigError, match="is a int, not an nn.Module subclass"):
        import_model_class(f"{user_module}:not_a_class")
    with pytest.raises(ConfigError, match="takes no option\\(s\\) widht; its constructor takes: num_outputs, "
                                          "input_shape, hidden"):
        build_user_model(f"{user_module}:Good", {"widht": 3}, IMAGES)
    with pytest.raises(ConfigError, match="not a class path"):
        check_model_name("my nets:Net", ())


def test_yaml_file_becomes_layers_in_the_config(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("# a comment\nlayers:\n  - conv: 4\n  - global_pool\n  - dense: outputs\n")
    cfg = DefectClassificationConfig(model=str(path))
    assert cfg.model == "layers" and cfg.model_options == {"layers": [{"conv": 4}, "global_pool", {"dense": "outputs"}]}
    assert read_model_file(path) == cfg.model_options
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers:\n  - convolution: 4\n")
    with pytest.raises(ConfigError, match="unknown layer 'convolution'"):  # refused before any data is read
        DefectClassification(model=str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        DefectClassification(model=str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="unknown model 'resnet'.*efficientnet-lite0"):
        DefectClassification(model="resnet")
    with pytest.raises(ConfigError, match="drop model_options"):
        DefectClassification(model=str(path), model_options={"width": 3})
    with pytest.raises(ConfigError, match="the built-in 'simple-cnn' takes none"):
        DefectClassification(model="simple-cnn", model_options={"width": 3})

import pytest

from shopfloor.core.config import TrainingConfig, build_config, load_yaml, parse_cli_overrides
from shopfloor.core.errors import ConfigError
from shopfloor.inspection.classification.task import DefectClassificationConfig


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="colour_jitter: unknown option"):
        build_config(DefectClassificationConfig, {"colour_jitter": 3})


def test_nested_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="training.epochz"):
        build_config(DefectClassificationConfig, {"training": {"epochz": 3}})


def test_bad_value_is_reported_with_its_location():
    with pytest.raises(ConfigError, match="training.epochs"):
        build_config(DefectClassificationConfig, {"training": {"epochs": 0}})


def test_image_size_must_suit_efficientnet():
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_config(DefectClassificationConfig, {"image_size": 100})
    assert build_config(DefectClassificationConfig, {"image_size": 100, "model": "simple-cnn"}).image_size == 100


def test_layers_merge_later_wins():
    cfg = build_config(DefectClassificationConfig, {"training": {"epochs": 7, "seed": 3}}, {"training": {"epochs": 2}})
    assert cfg.training.epochs == 2 and cfg.training.seed == 3


def test_cli_overrides_find_nested_fields():
    out = parse_cli_overrides(["--epochs", "3", "--rotation-range", "15", "--vertical-flip", "false",
                               "--model=simple-cnn", "--keep-aspect"], DefectClassificationConfig)
    assert out == {"training": {"epochs": 3}, "augment": {"rotation_range": 15, "vertical_flip": False},
                   "model": "simple-cnn", "keep_aspect": True}
    cfg = build_config(DefectClassificationConfig, out)
    assert cfg.augment.rotation_range == 15 and cfg.keep_aspect


def test_cli_overrides_lists_and_unknown():
    class Opts(TrainingConfig):
        snr_db: list[float] = []

    assert parse_cli_overrides(["--snr-db", "0,-4"], Opts)["snr_db"] == [0, -4]
    from shopfloor.maintenance.failure_prediction.task import FailurePredictionConfig

    # mappings and bracketed lists are read as YAML/JSON, commas inside them included
    out = parse_cli_overrides(["--ordinal", '{"Type": ["L", "M", "H"]}', "--hidden", "[64, 32]"],
                              FailurePredictionConfig)
    assert out == {"ordinal": {"Type": ["L", "M", "H"]}, "hidden": [64, 32]}
    with pytest.raises(ConfigError, match="YAML/JSON"):
        parse_cli_overrides(["--ordinal", "{Type: [L, M"], FailurePredictionConfig)
    with pytest.raises(ConfigError, match="unknown option --bogus"):
        parse_cli_overrides(["--bogus", "1"], DefectClassificationConfig)


def test_yaml_loading_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(listy)
    good = tmp_path / "good.yaml"
    good.write_text("model: simple-cnn\ntraining:\n  epochs: 2\n")
    assert load_yaml(good) == {"model": "simple-cnn", "training": {"epochs": 2}}


def test_partial_training_override_keeps_the_task_defaults():
    from shopfloor.inspection.classification.task import DefectClassification

    task = DefectClassification(training={"epochs": 5})
    default = DefectClassificationConfig().training
    assert task.training.epochs == 5
    assert task.training.batch_size == default.batch_size and task.training.patience == default.patience
    assert task.training.learning_rate == default.learning_rate

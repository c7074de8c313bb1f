"""Defect classification that configures itself: recorded decisions, calibration in the graph, TTA, balancing."""

import json
import shutil

import numpy as np
import pytest
import torch

from shopfloor.core.errors import ConfigError
from shopfloor.core.registry import load
from shopfloor.core.runtime import OnnxModel
from shopfloor.inspection.classification.autoconfig import (
    Figures,
    choose_depth,
    choose_smallest_within,
    sampling_decision,
    size_candidates,
)
from shopfloor.inspection.classification.calibration import (
    CalibratedOutput,
    expected_calibration_error,
    fit_temperature,
    view_probabilities,
)
from shopfloor.inspection.classification.stages import loaders
from shopfloor.inspection.classification.task import DefectClassification
from shopfloor.inspection.images import read_images, to_model_input
from shopfloor.inspection.synthetic import make_defect_classes

FAST = {"epochs": 3, "batch_size": 16, "progress": False}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    return (make_defect_classes(root / "train", n_per_class=12, size=64, seed=0),
            make_defect_classes(root / "test", n_per_class=5, size=64, seed=1))


@pytest.fixture(scope="module")
def auto_fitted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("auto") / "m"
    task = DefectClassification(image_size=64, feature_views=0, auto=True, auto_finetune_epochs=2, training=FAST)
    return task.fit(data[0], out_dir=out), out


@pytest.fixture(scope="module")
def tta_fitted(data):
    return DefectClassification(image_size=64, feature_views=0, auto=False, tta=True, training=FAST).fit(data[0])


def _images(data, n=6):
    paths = [p for c in ("crack", "good", "scratch") for p in sorted((data[1] / c).iterdir())[:2]][:n]
    return paths


def test_auto_decisions_are_recorded_and_honoured(auto_fitted, data):
    task, out = auto_fitted
    auto = task.state["autoconfig"]
    # sizes: the configured 64 and a larger one, each scored on the validation split
    assert set(auto["sizes"]["candidates"]) == {"64", "96"}
    assert all("errors" in f and "macro_f1" in f for f in auto["sizes"]["candidates"].values())
    chosen = auto["chosen_size"]
    loaded = load(out, device="cpu")
    assert loaded.image_spec.height == loaded.config.image_size == chosen
    assert loaded.build_model().backbone._global_params.image_size == chosen
    # depth: the head is always tried; the chosen one is what the model records
    depth = auto["depth"]
    assert depth["trials"][0]["depth"] == "head" and depth["chosen"] == loaded.state["training_depth"]
    # tta and temperature: what was decided is what the graph holds
    assert loaded.tta_flips == (["h", "v", "hv"] if auto["tta"]["on"] else [])
    assert loaded.temperature == pytest.approx(task.state["calibration"]["temperature"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"]["summary"].startswith(f"auto: {chosen} px")
    assert "temperature" in manifest["state"]["summary"]
    # a second fit starts again from the requested configuration
    assert task._requested_config.image_size == 64


def test_temperature_is_inside_the_graph(auto_fitted, data):
    task, out = auto_fitted
    loaded = load(out, device="cpu")
    x = to_model_input(read_images(_images(data), loaded.image_spec))
    outputs = OnnxModel(out / "model.onnx", device="cpu").run(image=x)
    temperature = loaded.temperature
    assert temperature != 1.0  # fitted: tiny validation split, several errors
    flips = loaded.tta_flips
    with torch.no_grad():
        views = [torch.from_numpy(x)] + [torch.flip(torch.from_numpy(x), {"h": (3,), "v": (2,), "hv": (2, 3)}[f])
                                         for f in flips]
        logits = torch.stack([loaded.torch_model(v) for v in views])
        expected = torch.softmax(logits / temperature, dim=-1).mean(0).numpy()
        plain = torch.softmax(logits, dim=-1).mean(0).numpy()
    assert np.max(np.abs(outputs["probabilities"] - expected)) <= 1e-4
    assert np.max(np.abs(outputs["uncalibrated_probabilities"] - plain)) <= 1e-4


def test_tta_graph_matches_the_flip_average(tta_fitted, data):
    task = tta_fitted
    assert task.tta_flips == ["h", "v", "hv"] and task.state["tta"]["why"] == "set in the config"
    x = to_model_input(read_images(_images(data), task.image_spec))
    onnx = task.runtime.run(image=x)["probabilities"]
    t = torch.from_numpy(x)
    with torch.no_grad():
        views = [t, torch.flip(t, (3,)), torch.flip(t, (2,)), torch.flip(t, (2, 3))]
        expected = torch.stack([torch.softmax(task.torch_model(v) / task.temperature, 1) for v in views]).mean(0)
    assert np.max(np.abs(onnx - expected.numpy())) <= 1e-4
    # fixed mode: no auto record, the configured size, the head only
    assert "autoconfig" not in task.state and task.state["training_depth"] == "head"


def test_evaluate_reports_calibration_before_and_after(auto_fitted, data, tmp_path):
    task, _ = auto_fitted
    metrics = task.evaluate(data[1], report_dir=tmp_path / "report")
    assert 0 <= metrics["ece"] <= 1 and 0 <= metrics["ece_uncalibrated"] <= 1
    assert metrics["temperature"] == pytest.approx(task.temperature)
    assert (tmp_path / "report" / "reliability.png").stat().st_size > 1000
    html = (tmp_path / "report" / "report.html").read_text()
    assert "reliability.png" in html and "How this model was configured" in html and "Input size" in html


def test_balanced_sampler_kicks_in_on_an_imbalanced_set(tmp_path):
    root = make_defect_classes(tmp_path / "imb", n_per_class=20, size=64, seed=3, include_good=False)
    for extra in sorted((root / "spot").iterdir())[5:]:
        extra.unlink()  # 20 / 20 / 5 images: ratio 4 > 3
    task = DefectClassification(image_size=64, feature_views=0, auto=False, training=FAST).fit(root)
    sampling = task.state["sampling"]
    assert sampling["balanced_sampling"] is True and sampling["imbalance_ratio"] == 4.0
    assert "> 3" in sampling["why"] and "balanced sampling" in task.state["summary"]
    balanced = DefectClassification(image_size=64, feature_views=0, auto=False, training=FAST)
    # the same set, balanced classes: off
    for extra in sorted((root / "crack").iterdir())[5:] + sorted((root / "scratch").iterdir())[5:]:
        extra.unlink()
    assert balanced.fit(root).state["sampling"]["balanced_sampling"] is False


def test_weighted_sampler_draws_classes_equally():
    labels = np.array([0] * 90 + [1] * 10)
    ds = torch.utils.data.TensorDataset(torch.zeros(100, 1), torch.as_tensor(labels))
    cfg = DefectClassification().training.model_copy(update={"batch_size": 1000})
    train, _ = loaders(ds, ds, cfg, labels)
    drawn = torch.cat([y for _, y in train] * 1).numpy()
    draws = np.concatenate([torch.cat([y for _, y in train]).numpy() for _ in range(20)])
    assert len(drawn) == 100
    assert 0.4 < draws.mean() < 0.6  # class 1 is 10 % of the set, about half of the draws
    assert sampling_decision([90, 10], "auto", 3.0)["balanced_sampling"] is True
    assert sampling_decision([90, 40], "auto", 3.0)["balanced_sampling"] is False
    assert sampling_decision([90, 40], "on", 3.0)["balanced_sampling"] is True


def test_bad_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="tta true averages the flips.*enable a flip or set tta false"):
        DefectClassification(tta=True, augment={"horizontal_flip": False, "vertical_flip": False})
    with pytest.raises(ConfigError, match="tta true"):
        DefectClassification(tta=True, augment={"enabled": False})
    for bad in (0, -1.5, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="temperature must be a positive finite number"):
            DefectClassification(temperature=bad)
    with pytest.raises(ConfigError, match="temperature"):
        DefectClassification(temperature="hot")
    with pytest.raises(ConfigError, match="unknown test-time flips"):
        CalibratedOutput(torch.nn.Identity(), flips=["diagonal"])
    with pytest.raises(ConfigError, match="temperature must be"):
        CalibratedOutput(torch.nn.Identity(), temperature=-2)


def test_fixed_temperature_is_honoured(data):
    task = DefectClassification(image_size=64, feature_views=0, auto=False, temperature=2.5,
                                training={**FAST, "epochs": 1}).fit(data[0])
    assert task.temperature == 2.5 and task.state["calibration"]["how"] == "set in the config"
    x = to_model_input(read_images(_images(data, 2), task.image_spec))
    with torch.no_grad():
        expected = torch.softmax(task.torch_model(torch.from_numpy(x)) / 2.5, 1).numpy()
    assert np.max(np.abs(task.runtime.run(image=x)["probabilities"] - expected)) <= 1e-4


def test_top_finetune_keeps_the_frozen_part(data):
    task = DefectClassification(image_size=64, feature_views=0, auto=False, finetune_epochs=1, finetune_depth="top",
                                training=FAST)
    task.fit(data[0])
    fresh = task.build_model(pretrained=True).state_dict()
    now = task.torch_model.state_dict()
    assert torch.equal(now["backbone._conv_stem.weight"], fresh["backbone._conv_stem.weight"])
    assert torch.equal(now["backbone._bn0.running_mean"], fresh["backbone._bn0.running_mean"])
    assert not torch.equal(now["backbone._conv_head.weight"], fresh["backbone._conv_head.weight"])
    assert task.state["training_depth"] == "top"
    assert all(p.requires_grad for p in task.torch_model.parameters())


# ------------------------------------------------------------------ pure rules
def _fig(errors, n=200):
    return Figures(errors, n, 1 - errors / n, 1 - errors / n, 0.1)


def test_depth_rule_stops_when_frozen_features_are_enough():
    ran = []
    search = choose_depth(_fig(1), ["top", "all"], 100, lambda d: (1.0, 8), lambda d, e: ran.append(d))
    assert search.chosen == "head" and not ran and "enough" in search.reason


def test_depth_rule_prefers_cheaper_on_ties_and_respects_the_budget():
    results = {"top": _fig(8), "all": _fig(8)}
    search = choose_depth(_fig(20), ["top", "all"], 100, lambda d: (10.0, 8),
                          lambda d, e: (results[d], e, 10.0 * e))
    assert search.chosen == "top"  # all ties with top: the cheaper wins
    assert [t.epochs for t in search.trials[1:]] == [8, 2]  # 100 s: 8 epochs of top, 20 s left for all
    skipped = choose_depth(_fig(20), ["top", "all"], 15, lambda d: (10.0, 8), lambda d, e: (_fig(0), e, 10.0 * e))
    assert skipped.chosen == "head" and all(t.skipped for t in skipped.trials[1:])
    better = choose_depth(_fig(20), ["top", "all"], 1000, lambda d: (10.0, 8),
                          lambda d, e: ({"top": _fig(15), "all": _fig(2)}[d], e, 10.0))
    assert better.chosen == "all"  # 20 -> 15 is noise, 20 -> 2 is not
    noise = choose_depth(_fig(6), ["top"], 1000, lambda d: (10.0, 8), lambda d, e: (_fig(4), e, 10.0))
    assert noise.chosen == "head"  # NEU's 2 -> 1 looked like this: not worth a fine-tune


def test_size_rule():
    assert size_candidates(224, 200) == [192, 224, 320]
    assert size_candidates(224, 128) == [128, 224, 320]
    assert size_candidates(224, 1024) == [224, 448]  # large images: up to 2x for fine detail
    # 2 or 3 errors against 0 on the same 288 images is noise: the smallest size stays
    assert choose_smallest_within({192: _fig(2, 288), 224: _fig(3, 288), 320: _fig(0, 288)}) == 192
    assert choose_smallest_within({192: _fig(12, 288), 224: _fig(9, 288), 320: _fig(2, 288)}) == 320
    assert choose_smallest_within({192: _fig(5, 288), 224: _fig(3, 288), 320: _fig(2, 288)}) == 192


def test_temperature_fit_and_ece():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (2000, 3))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in probs])  # calibrated at temperature 1 by construction
    overconfident = logits[None] * 4  # the same ranking, 4x too sharp
    t = fit_temperature(overconfident, labels)
    assert 3.0 < t < 5.5
    before = expected_calibration_error(view_probabilities(overconfident, 1.0), labels)
    after = expected_calibration_error(view_probabilities(overconfident, t), labels)
    assert after < before / 2
    perfect = np.eye(3)[labels]
    assert expected_calibration_error(perfect, labels) == pytest.approx(0.0)
    # a separable validation split (no errors) would drive T to its bound: it may only soften
    separable = np.eye(3)[labels][None] * 3.0
    assert fit_temperature(separable, labels) >= 1.0


def test_model_saved_without_calibration_still_exports_one_output(auto_fitted, tmp_path):
    """A model whose state predates calibration and TTA: one output, a plain softmax (temperature 1)."""
    task, out = auto_fitted
    old = tmp_path / "old"
    shutil.copytree(out, old)
    loaded = load(old, device="cpu")
    for key in ("calibration", "tta"):
        loaded.state.pop(key)
    assert loaded.onnx_signature().output_names == ["probabilities"]
    assert loaded.temperature == 1.0 and loaded.tta_flips == []


def test_cli_options_and_info_show_the_decisions(data, auto_fitted, tmp_path):
    from typer.testing import CliRunner

    from shopfloor.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["train", "defect-classification", "--data", str(data[0]), "--out", str(tmp_path / "m"),
                                 "--auto", "false", "--tta", "true", "--temperature", "2", "--image-size", "64",
                                 "--feature-views", "0", "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["config"]["tta"] is True and manifest["state"]["tta"]["flips"] == ["h", "v", "hv"]
    assert manifest["state"]["calibration"]["temperature"] == 2.0
    _, out = auto_fitted
    shown = runner.invoke(app, ["info", str(out), "--json"])
    assert shown.exit_code == 0, shown.output
    state = json.loads(shown.stdout)["state"]
    assert state["summary"].startswith("auto:") and state["autoconfig"]["depth"]["trials"]
    bad = runner.invoke(app, ["train", "defect-classification", "--data", str(data[0]), "--out", str(tmp_path / "b"),
                              "--temperature", "-1"])
    assert bad.exit_code != 0 and "temperature must be a positive finite number" in bad.output


def test_timing_a_candidate_leaves_the_model_untouched():
    from shopfloor.inspection.augment import AugmentConfig, ImageAugmenter
    from shopfloor.inspection.classification.models import build_classifier
    from shopfloor.inspection.classification.stages import seconds_per_image

    model = build_classifier("efficientnet-lite0", 3, 64, pretrained=False).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    for depth in ("top", "all"):
        assert seconds_per_image(model, depth, images, ImageAugmenter(AugmentConfig()), torch.nn.CrossEntropyLoss(),
                                 4) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and all(p.grad is None for p in model.parameters())

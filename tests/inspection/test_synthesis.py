"""Defect synthesis: the plain modules, DiffAugment, the quality measures on known answers, and the task end to end
on tiny synthetic images (fit, save/load, torch vs ONNX, predict, CLI, use in defect classification)."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.cli.predict_options import predict_options
from shopfloor.core.errors import ConfigError, DataError, NotFittedError
from shopfloor.core.registry import get_task, load
from shopfloor.inspection.synthesis.adversarial import mode_seeking_loss
from shopfloor.inspection.synthesis.diffaugment import cutout, diff_augment, translation
from shopfloor.inspection.synthesis.networks import (
    Discriminator,
    Generator,
    MinibatchStd,
    ProjectedDiscriminator,
    SamplingGraph,
    SynthesisModel,
)
from shopfloor.inspection.synthesis.paste import blob_mask, paste_defects
from shopfloor.inspection.synthesis.quality import (
    kernel_inception_distance,
    memorisation_ratio,
    nearest_neighbours,
    precision_recall,
)
from shopfloor.inspection.synthesis.task import DefectSynthesis, holdout_split, to_gan_range
from shopfloor.inspection.synthetic import make_defect_classes

TINY = {"steps": 4, "generator_width": 4, "discriminator_width": 4, "latent_dim": 8, "sample_every": 2,
        "quality_samples": 6, "feature_size": 32, "holdout_fraction": 0.25,
        "training": {"batch_size": 8, "progress": False}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_defect_classes(tmp_path_factory.mktemp("synth") / "train", n_per_class=8, size=64, seed=0)


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "model"
    return DefectSynthesis(TINY).fit(data, out_dir=out), out


# ------------------------------------------------------------------------------------------------ modules
def test_generator_and_discriminator_shapes():
    g = Generator(n_classes=3, channels=1, image_size=32, latent_dim=8, width=4)
    d = Discriminator(n_classes=3, channels=1, image_size=32, width=4)
    x = g(torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1]))
    assert x.shape == (5, 1, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert d(x, torch.tensor([0, 1, 2, 0, 1])).shape == (5,)
    rgb = Generator(n_classes=2, channels=3, image_size=16, latent_dim=8, width=4)
    assert SamplingGraph(rgb)(torch.randn(2, 8), torch.tensor([0, 1])).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="power of two"):
        Generator(2, image_size=48)


def test_minibatch_std_sees_a_collapsed_batch():
    same = torch.ones(4, 2, 3, 3)
    varied = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 2, 3, 3)
    out_same, out_varied = MinibatchStd()(same), MinibatchStd()(varied)
    assert out_same.shape == (4, 3, 3, 3) and torch.equal(out_same[:, :2], same)
    assert out_same[:, 2].max() < 1e-3  # identical samples: no spread
    assert torch.allclose(out_varied[:, 2], torch.full((4, 3, 3), float(np.sqrt(1.25))), atol=1e-4)


def test_projected_discriminator_keeps_its_backbone_frozen():
    d = ProjectedDiscriminator(n_classes=2, channels=1, feature_size=64, width=4, pretrained=False).train()
    assert not d.features.training and d.heads.training
    image = torch.randn(3, 1, 32, 32, requires_grad=True)
    d(image, torch.tensor([0, 1, 1])).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0  # the generator gets gradients through it
    assert all(p.grad is None for p in d.features.parameters())


def test_mode_seeking_loss_grows_when_latents_give_the_same_image():
    latent = torch.randn(4, 8)
    same = torch.zeros(4, 1, 8, 8)
    varied = torch.cat([torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8)])
    gap = float((latent[:2] - latent[2:]).abs().mean(dim=1).reciprocal().mean())  # image gap 1 per pair
    assert mode_seeking_loss(same, latent) > 1e4
    assert mode_seeking_loss(varied, latent) == pytest.approx(1 / gap, rel=1e-4)


def test_paste_defects_changes_only_the_masked_pixels():
    rng = np.random.default_rng(0)
    good = np.random.default_rng(1).integers(100, 140, (3, 48, 64, 3)).astype(np.uint8)
    textures = np.random.default_rng(2).normal(0, 1, (2, 16, 16))
    images, masks = paste_defects(good, textures, rng, size=(0.2, 0.3))
    assert images.shape == good.shape and masks.shape == good.shape[:3] and masks.dtype == bool
    assert masks.any(axis=(1, 2)).all() and not masks.all(axis=(1, 2)).any()
    assert np.array_equal(images[~masks], good[~masks])
    assert np.abs(images[masks].astype(int) - good[masks]).mean() > 5  # visible at the contrast floor
    soft = blob_mask(40, 40, 0.5, np.random.default_rng(3))
    assert soft.min() == 0 and soft.max() == 1 and 0.02 < (soft > 0).mean() < 0.6
    with pytest.raises(DataError, match="uint8 images"):
        paste_defects(good.astype(np.float32), textures, rng)


def test_class_changes_the_generated_image():
    g = Generator(n_classes=2, channels=1, image_size=16, latent_dim=8, width=4).eval()
    z = torch.randn(1, 8).repeat(2, 1)
    out = g(z, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1])


def test_ema_update_known_answer():
    model = SynthesisModel(2, 1, 16, 8, 4)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.ema.parameters()]
    model.update_ema(0.75)  # ema <- 0.75 ema + 0.25 generator
    for b, e, g in zip(before, model.ema.parameters(), model.generator.parameters()):
        assert torch.allclose(e, 0.75 * b + 0.25 * g, atol=1e-6)
    model.update_ema(0.0)
    for e, g in zip(model.ema.parameters(), model.generator.parameters()):
        assert torch.equal(e, g)


def test_diffaugment_is_differentiable_and_keeps_shape():
    x = torch.rand(4, 1, 16, 16, requires_grad=True)
    y = diff_augment(x * 2 - 1, ["color", "translation", "cutout"])
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(diff_augment(x, []), x)


def test_translation_moves_content_and_cutout_zeroes_a_square():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0
    moved = translation(x, ratio=0.125)
    assert torch.all(moved.sum(dim=(1, 2, 3)) == 1)  # the dot is shifted by at most 2 px, never lost
    where = moved[:, 0].nonzero()[:, 1:]
    assert ((where - 8).abs() <= 2).all()
    ones = torch.ones(8, 1, 16, 16)
    zeroed = (cutout(ones, ratio=0.5) == 0).sum(dim=(1, 2, 3))
    assert (zeroed > 0).all() and (zeroed <= 9 * 9).all()


# ------------------------------------------------------------------------------------------------ quality
def test_kid_known_answers():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    same, _ = kernel_inception_distance(a, b)
    shifted, _ = kernel_inception_distance(a, b + 3.0)
    assert abs(same) < 0.05 < shifted


def test_precision_recall_known_answers():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(100, 8))
    assert precision_recall(real, real + 1e-9) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    # generated images covering only half of the real ones: full precision, partial recall
    half = real[real[:, 0] > 0]
    precision, recall = precision_recall(real, half)
    assert precision == 1.0 and recall < 0.9


def test_memorisation_ratio_flags_copies():
    rng = np.random.default_rng(2)
    train, held = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    assert memorisation_ratio(train[:20].copy(), held, train) == 0.0
    assert 0.6 < memorisation_ratio(rng.normal(size=(50, 8)), held, train) < 1.6
    index, distance = nearest_neighbours(train[[3, 7]], train)
    assert list(index) == [3, 7] and np.allclose(distance, 0)


def test_holdout_split_per_class_and_range():
    labels = np.array([0] * 10 + [1] * 3)
    train, held = holdout_split(labels, 0.2, seed=0)
    assert len(set(train) & set(held)) == 0 and len(train) + len(held) == 13
    assert (labels[held] == 0).sum() == 2 and (labels[held] == 1).sum() == 0  # classes under 4 images keep all
    frames = np.full((1, 4, 4, 3), 255, np.uint8)
    assert np.allclose(to_gan_range(frames, 1), 1.0) and to_gan_range(frames, 3).shape == (1, 3, 4, 4)


# ------------------------------------------------------------------------------------------------ task
def test_registered_and_config_errors():
    assert get_task("defect-synthesis") is DefectSynthesis
    with pytest.raises(ConfigError, match="power of two"):
        DefectSynthesis(image_size=48)
    with pytest.raises(ConfigError, match="multiple of 32"):
        DefectSynthesis(feature_size=100)
    with pytest.raises(NotFittedError, match="fit"):
        DefectSynthesis().predict(n=1)


def test_fit_records_quality_and_samples(fitted):
    task, out = fitted
    assert task.classes == ["crack", "good", "scratch", "spot"]
    assert task.metrics["n_holdout"] == 8 and task.metrics["n_train"] == 24
    per_class = task.state["quality"]["per_class"]
    assert set(per_class) == set(task.classes)
    for row in per_class.values():
        assert 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1 and np.isfinite(row["kid"])
        assert row["memorisation_ratio"] > 0
    assert (out / "report" / "report.html").is_file() and (out / "report" / "nearest_training.png").is_file()
    assert list((out / "training" / "samples").glob("samples_step*.png"))
    # the discriminator is a training tool: only generator and EMA weights are kept
    assert all(k.startswith(("generator.", "ema.")) for k in task.torch_model.state_dict())


def test_onnx_matches_torch_and_survives_save_load(fitted):
    task, out = fitted
    latent = torch.randn(5, 8)
    classes = torch.tensor([0, 1, 2, 3, 0])
    with torch.no_grad():
        eager = task.export_module()(latent, classes).numpy()
    graph = task.runtime.run(latent=latent.numpy(), class_index=classes.numpy())["image"]
    assert graph.shape == (5, 1, 64, 64)
    assert np.abs(graph - eager).max() < 1e-2  # on the 0..255 scale
    loaded = load(out, device="cpu")
    a, labels = loaded.generate(3, "spot", seed=4)
    b, _ = task.generate(3, "spot", seed=4)
    assert a.shape == (3, 64, 64, 1) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert list(labels) == [3, 3, 3]
    assert not np.array_equal(a, task.generate(3, "spot", seed=5)[0])


def test_predict_writes_images(fitted, tmp_path):
    task, _ = fitted
    rows = task.predict(n=3, class_name="scratch", out_dir=tmp_path / "synth")
    assert [r["class"] for r in rows] == ["scratch"] * 3
    files = sorted((tmp_path / "synth" / "scratch").glob("*.png"))
    assert len(files) == 3
    from PIL import Image

    assert Image.open(files[0]).size == (64, 64) and Image.open(files[0]).mode == "L"
    assert len(task.predict(n=2, out_dir=tmp_path / "all")) == 8  # every class
    assert [r["class"] for r in task.predict(["spot", "crack", "spot"], out_dir=tmp_path / "named")] == \
        ["spot", "spot", "crack"]
    with pytest.raises(ConfigError, match="unknown class"):
        task.predict(n=1, class_name="dent", out_dir=tmp_path / "x")
    with pytest.raises(ConfigError, match="class names"):
        task.predict(["dent"], out_dir=tmp_path / "x")


def test_evaluate_against_other_real_images(fitted, data, tmp_path):
    task, _ = fitted
    other = make_defect_classes(tmp_path / "other", n_per_class=4, size=64, seed=3, include_good=False)
    metrics = task.evaluate(other, report_dir=tmp_path / "report", training_data=str(data))
    assert set(metrics["per_class"]) == {"crack", "scratch", "spot"}
    assert "memorisation_ratio_mean" in metrics and (tmp_path / "report" / "report.html").is_file()
    bad = make_defect_classes(tmp_path / "bad", n_per_class=2, size=64, seed=3)
    (bad / "dent").mkdir()
    (bad / "spot" / "spot_000.png").rename(bad / "dent" / "dent_000.png")
    with pytest.raises(DataError, match="not trained on"):
        task.evaluate(bad)


def test_cli_predict_generates(fitted, tmp_path):
    _, out = fitted
    result = CliRunner().invoke(app, ["predict", str(out), "--n", "2", "--class", "crack", "--out",
                                      str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "cli" / "crack").glob("*.png"))) == 2
    result = CliRunner().invoke(app, ["predict", str(out), "--n", "0"])
    assert result.exit_code == 2 and "error" in result.output


def test_predict_options_refused_by_other_tasks():
    class Scorer:
        name = "defect-classification"

    with pytest.raises(ConfigError, match="only for generator"):
        predict_options(Scorer(), {"n": 3, "class_name": None}, has_inputs=True)
    with pytest.raises(ConfigError, match="needs INPUTS"):
        predict_options(Scorer(), {"n": None, "class_name": None}, has_inputs=False)
    assert predict_options(Scorer(), {"n": None}, has_inputs=True) == {}
    assert predict_options(DefectSynthesis, {"n": 5, "class_name": "spot"}, False) == {"n": 5, "class_name": "spot"}


# ------------------------------------------------------------------------------------------------ classification
def test_classification_mixes_generated_images_into_training_only(fitted, data):
    from shopfloor.inspection.classification.task import DefectClassification

    _, out = fitted
    fast = {"image_size": 64, "feature_views": 0, "training": {"epochs": 1, "batch_size": 16, "progress": False}}
    plain = DefectClassification(fast).fit(data)
    mixed = DefectClassification({**fast, "synthetic": str(out), "synthetic_per_class": 5,
                                  "synthetic_classes": "spot,crack"}).fit(data)
    record = mixed.state["synthetic"]
    assert record["classes"] == ["spot", "crack"] and record["n_images"] == 10
    # the validation split is the same real images with and without generated ones
    assert mixed.metrics["n_val"] == plain.metrics["n_val"] and mixed.metrics["n_train"] == plain.metrics["n_train"]
    assert mixed.state["sampling"]["class_counts"][3] == plain.state["sampling"]["class_counts"][3] + 5
    with pytest.raises(ConfigError, match="no class"):
        DefectClassification({**fast, "synthetic": str(out), "synthetic_classes": "dent"}).fit(data)

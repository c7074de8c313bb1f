"""Auto-configuration of anomaly detection from good images only: pseudo-anomalies, the search, tiling in the graph,
``--auto false``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from shopfloor.core.errors import ConfigError, DataError
from shopfloor.inspection.anomaly import autoconfig
from shopfloor.inspection.anomaly.autoconfig import (
    Candidate,
    bank_rule,
    base_frame,
    budget_plan,
    geometry_candidates,
    holdout_plan,
    select,
)
from shopfloor.inspection.anomaly.patchcore import PatchCore
from shopfloor.inspection.anomaly.pseudo import PSEUDO_KINDS, pseudo_anomaly, resize_mask
from shopfloor.inspection.anomaly.task import AnomalyDetection
from shopfloor.inspection.synthetic import make_anomaly_dataset

QUIET = {"progress": False, "batch_size": 8}


@pytest.mark.parametrize("kind", PSEUDO_KINDS)
def test_pseudo_anomaly_shapes_and_masks(kind):
    rng = np.random.default_rng(0)
    image = (np.random.default_rng(1).random((80, 120, 3)) * 60 + 100).astype(np.uint8)
    out, mask = pseudo_anomaly(image, rng, kind, min_size=0.05, max_size=0.1)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert mask.shape == (80, 120) and mask.dtype == bool and mask.any()
    assert mask.mean() < 0.3  # a defect, not a new image
    changed = (np.abs(out.astype(int) - image) > 8).any(axis=2)
    assert changed[mask].all() and not changed[~mask].any()  # the mask is exactly what changed visibly


def test_pseudo_anomaly_refuses_bad_input():
    with pytest.raises(DataError, match="uint8"):
        pseudo_anomaly(np.zeros((8, 8), np.float32), np.random.default_rng(0))
    with pytest.raises(DataError, match="kind"):
        pseudo_anomaly(np.zeros((8, 8, 3), np.uint8), np.random.default_rng(0), kind="dent")


def test_resize_mask_keeps_thin_defects():
    mask = np.zeros((256, 256), bool)
    mask[100:102, 20:200] = True  # a 2 px line, 4x downscaled
    small = resize_mask(mask, 64, 64)
    assert small.shape == (64, 64) and small.any()


def test_geometry_keeps_aspect_and_tiles_large_images():
    assert base_frame([(1024, 256)], 256) == (64, 256)  # an elongated part is not squashed
    assert [c.tiles for c in geometry_candidates([(200, 200)], 256)] == [(1, 1)]
    tiled = geometry_candidates([(640, 640)], 256)[-1]
    assert tiled.tiles == (3, 3) and tiled.image_size == (672, 672)  # tiles of 224 px, near the base size
    huge = geometry_candidates([(4000, 4000)], 256)[-1]
    assert huge.tiles == (3, 3) and huge.tile_size == (320, 320)  # bounded cost


def _build(candidate: Candidate) -> PatchCore:
    return PatchCore(image_size=candidate.image_size, blocks=candidate.blocks, tiles=candidate.tiles,
                     pretrained=False)


def _rule(model: PatchCore, n_patches: int):
    return bank_rule(model, n_patches, 0.1, 1.0, 256)


def test_latency_budget_prunes_candidates_by_cost():
    """640 px boards, 256 px base frame: the near-native 3x3 tiling costs several times the fixed defaults and is
    pruned before any validation; every kept candidate is inside the budget, and a larger budget keeps larger
    frames."""
    keep, plan = budget_plan([(640, 640)], 256, _build, _rule, 2.0)
    assert plan["budget_gflops"] == pytest.approx(2.0 * plan["reference_gflops"], rel=1e-3)
    cost = {r["candidate"]: r for r in plan["candidates"]}
    assert "672x672 as 3x3 tiles, blocks [4, 10]" in plan["pruned"]
    assert "over the budget" in cost["672x672 as 3x3 tiles, blocks [4, 10]"]["reason"]
    assert keep and all(cost[c.label()]["gflops_per_image"] <= plan["budget_gflops"] for c in keep)
    assert keep[0] == Candidate((256, 256))  # the base frame is always validated when it fits
    assert any(c.blocks == (2, 4) for c in keep)
    frames = {c.blocks: c.image_size[0] * c.image_size[1] for c in keep[1:]}
    wide_keep, wide = budget_plan([(640, 640)], 256, _build, _rule, 8.0)
    wide_frames = {c.blocks: c.image_size[0] * c.image_size[1] for c in wide_keep[1:]}
    assert all(wide_frames[b] >= frames[b] for b in frames) and len(wide["pruned"]) < len(plan["pruned"])
    small_keep, small = budget_plan([(640, 640)], 256, _build, _rule, 0.5)  # nothing fits, all on record
    assert small_keep == [] and len(small["pruned"]) == len(small["candidates"])


def _trial(label_cost: float, good: np.ndarray, bad: np.ndarray) -> dict:
    masks = np.zeros((len(bad), 4, 4), bool)
    masks[:, 0, 0] = True
    bad_maps = np.zeros((len(bad), 4, 4))
    bad_maps[:, 0, 0] = bad
    good_maps = np.zeros((len(good), 4, 4))
    samples = autoconfig._bootstrap_samples(good, bad, good_maps, bad_maps, masks, 0)
    from sklearn.metrics import roc_auc_score

    image = roc_auc_score(np.r_[np.zeros(len(good)), np.ones(len(bad))], np.r_[good, bad])
    return {"image_auroc": image, "pixel_auroc": 1.0, "cost_gflops_at_bank_cap": label_cost, "_samples": samples}


def test_select_prefers_the_cheaper_candidate_within_noise():
    rng = np.random.default_rng(0)
    good = rng.normal(0, 1, 16)
    bad = np.r_[rng.normal(1.2, 1, 16), rng.normal(1.2, 1, 16)]  # two pseudo copies per source image
    slightly_better = bad.copy()
    slightly_better[0] += 0.8  # a better figure by one pair: noise with 16 validation images
    cheap, costly = _trial(1.0, good, bad), _trial(2.0, good, slightly_better)
    assert costly["image_auroc"] > cheap["image_auroc"]
    assert select([costly, cheap], 16, 0) == 1 and cheap["tied_with_best"] and cheap["difference_se"] > 0
    separated = _trial(2.0, good, bad + 5.0)  # clearly better: the cost does not matter
    assert select([cheap, separated], 16, 0) == 1 and not cheap["tied_with_best"]


def test_holdout_plan_cross_fits_small_sets():
    assert holdout_plan(40, 0.2)["method"] == "cross-fit"
    big = holdout_plan(500, 0.2)
    assert big["method"] == "held-out" and big["n_heldout"] == 100


def test_tiles_and_stitch_are_inverse_layouts():
    model = PatchCore(image_size=(64, 128), tiles=(1, 2), pretrained=False)
    images = torch.arange(2 * 3 * 64 * 128, dtype=torch.float32).reshape(2, 3, 64, 128)
    tiles = model.tile(images)
    assert tiles.shape == (4, 3, 64, 64)
    assert torch.equal(tiles[1], images[0, :, :, 64:]) and torch.equal(tiles[2], images[1, :, :, :64])
    grid = torch.arange(4 * 8 * 8, dtype=torch.float32).reshape(4, 8, 8)
    stitched = model.stitch(grid)
    assert stitched.shape == (2, 8, 16) and torch.equal(stitched[0, :, 8:], grid[1])


def test_tiles_config_is_checked():
    with pytest.raises(ConfigError, match="tiles"):
        AnomalyDetection(image_size=[64, 96], tiles=[1, 2])  # 48 px tiles
    with pytest.raises(ConfigError, match="patchcore"):
        AnomalyDetection(model="padim", image_size=[64, 128], tiles=[1, 2])


@pytest.fixture(scope="module")
def plain_root(tmp_path_factory) -> Path:
    return make_anomaly_dataset(tmp_path_factory.mktemp("auto"), n_train=12, n_test_good=3, n_test_per_defect=2,
                                size=64, seed=3)


def test_tiled_model_torch_and_onnx_agree(plain_root, tmp_path):
    task = AnomalyDetection(auto=False, image_size=[64, 128], tiles=[1, 2], training=QUIET)
    task.fit(plain_root, out_dir=tmp_path / "m")
    assert task.state["patch_grid"] == [8, 16]
    x = torch.rand(3, 3, 64, 128) * 255
    with torch.no_grad():
        score, amap = task.torch_model(x)
    out = task.runtime.run(images=x.numpy())
    assert np.allclose(out["score"], score.numpy(), atol=1e-4)
    assert np.allclose(out["anomaly_map"], amap.numpy(), atol=1e-4)
    loaded = AnomalyDetection.load(tmp_path / "m")
    files = sorted((plain_root / "test" / "good").iterdir())[:2]
    assert np.allclose(loaded.score_images(files)[0], task.score_images(files)[0], atol=1e-6)


def test_auto_false_keeps_the_fixed_defaults(plain_root):
    task = AnomalyDetection(auto=False, image_size=64, training=QUIET).fit(plain_root)
    assert "autoconfig" not in task.state and "bank_rule" not in task.state
    assert task.config.image_size == 64 and task.config.tiles == 1 and task.config.feature_blocks == [4, 10]
    assert task.metrics["n_heldout_good"] == 2 and task.metrics["threshold_images"] == "held-out"
    stored = task.state["patches_per_image"] * task.metrics["n_train"]
    assert task.state["bank_size"] == min(round(0.1 * stored), 1536)
    # a model written before the option existed reads as auto false
    assert AnomalyDetection.saved_config({"image_size": 64})["auto"] is False


def test_search_picks_tiling_for_tiny_defects_on_large_images(tmp_path):
    """Large textured images, defects of ~2 % of the side, a 64 px base frame and a budget that allows the native
    resolution: the pseudo-anomalies are lost when the image is squashed to 64 px, so the search chooses tiles."""
    root = make_anomaly_dataset(tmp_path / "big", n_train=12, n_test_good=2, n_test_per_defect=1, size=192, seed=4)
    task = AnomalyDetection(image_size=64, min_defect_size=0.02, latency_budget=12.0,
                            training=QUIET).fit(root, out_dir=tmp_path / "m")
    assert task.state["autoconfig"]["latency_budget"]["ratio"] == 12.0
    chosen = task.state["autoconfig"]
    assert chosen["tiles"] != [1, 1] and task.config.tiles == chosen["tiles"]
    assert len(chosen["trials"]) >= 2 and sum(t["chosen"] for t in chosen["trials"]) == 1
    budget = chosen["latency_budget"]
    assert budget["ratio"] == 12.0 and chosen["gflops_per_image"] <= budget["budget_gflops"]
    assert all("criterion" in t and "tied_with_best" in t for t in chosen["trials"])
    assert chosen["data_used"].startswith("good training images only")
    assert task.metrics["threshold_images"] == "cross-fit" and task.metrics["n_train"] == 12
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["config"]["tiles"] == chosen["tiles"] and "bank_rule" in manifest["state"]
    assert task.image_spec.height == chosen["image_size"][0]
    task.evaluate(root, report_dir=tmp_path / "report", examples=0)
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Auto-configuration" in html and "pseudo image AUROC" in html


def test_default_budget_keeps_the_choice_cheap_and_on_record(tmp_path):
    """With the default budget (2x the fixed defaults' cost) the near-native tiling of the same images is pruned
    and recorded; the fitted model's estimated cost stays inside the budget."""
    root = make_anomaly_dataset(tmp_path / "big", n_train=12, n_test_good=2, n_test_per_defect=1, size=192, seed=4)
    task = AnomalyDetection(image_size=64, training=QUIET).fit(root)
    chosen = task.state["autoconfig"]
    budget = chosen["latency_budget"]
    assert budget["ratio"] == autoconfig.LATENCY_BUDGET == 2.0
    assert "192x192 as 3x3 tiles, blocks [4, 10]" in chosen["pruned"]
    assert chosen["gflops_per_image"] <= budget["budget_gflops"]
    rule = task.state["bank_rule"]
    assert rule["backbone_gflops_per_image"] + rule["search_gflops_per_image"] <= budget["budget_gflops"]


def test_cli_auto_option(plain_root, tmp_path):
    from typer.testing import CliRunner

    from shopfloor.cli import app

    result = CliRunner().invoke(app, ["train", "anomaly-detection", "--data", str(plain_root), "--out",
                                      str(tmp_path / "m"), "--auto", "false", "--image-size", "64", "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["config"]["auto"] is False and "autoconfig" not in manifest["state"]


def test_cross_fit_scores_from_the_store_equal_a_second_pass(plain_root):
    """Cross-fitting scores each fold from the stored features instead of decoding and extracting again."""
    from shopfloor.inspection.layouts import read_anomaly_data

    task = AnomalyDetection(auto=False, image_size=[64, 128], tiles=[1, 2], training=QUIET).fit(plain_root)
    model = task.torch_model
    good = read_anomaly_data(plain_root, need="train").train
    extract = task._feature_extractor(model)
    with torch.no_grad():
        store, keep = task._fit_patchcore(model, good, extract)
        stored = task._stored_scores(model, store, keep, np.array([1, 3]))
        again = task._raw_scores(model, [good[1], good[3]], extract, "scoring")
    assert np.allclose(stored[0], again[0], atol=1e-3)
    assert np.allclose(stored[1], again[1], atol=0.05)  # sqrt of near-zero distances amplifies rounding

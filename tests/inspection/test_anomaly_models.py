"""PatchCore / PaDiM modules, coreset selection and exported-vs-in-memory parity."""

import numpy as np
import pytest
import torch

from shopfloor.inspection.anomaly.coreset import greedy_coreset, random_projection
from shopfloor.inspection.anomaly.padim import GaussianAccumulator
from shopfloor.inspection.anomaly.patchcore import AnomalyMapHead


def test_greedy_coreset_picks_far_points_first():
    torch.manual_seed(0)
    cluster = torch.randn(500, 8) * 0.01
    outliers = torch.tensor([[10.0] * 8, [-10.0] * 8, [10.0, -10.0] * 4])
    feats = torch.cat([cluster, outliers])
    idx = greedy_coreset(feats, 4, projection_dim=32, seed=0)
    assert len(set(idx.tolist())) == 4
    assert {500, 501, 502} <= set(idx.tolist())


def test_greedy_coreset_chunking_does_not_change_result():
    feats = torch.randn(3000, 64, generator=torch.Generator().manual_seed(1))
    a = greedy_coreset(feats, 50, projection_dim=16, seed=3, chunk=256)
    b = greedy_coreset(feats, 50, projection_dim=16, seed=3, chunk=1 << 20)
    assert torch.equal(a, b)
    assert greedy_coreset(feats, 5000).numel() == 3000  # never more than there are


def test_random_projection_keeps_distances_roughly():
    x = torch.randn(200, 256, generator=torch.Generator().manual_seed(0))
    p = random_projection(x, 64)
    ratio = torch.pdist(p) / torch.pdist(x)
    assert ratio.median() == pytest.approx(1.0, abs=0.05)
    assert 0.7 < torch.quantile(ratio, 0.01) and torch.quantile(ratio, 0.99) < 1.3


def test_gaussian_accumulator_matches_numpy():
    feats = torch.randn(10, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    acc = GaussianAccumulator(3, 4)
    acc.update(feats[:4])
    acc.update(feats[4:])
    mean, inv = acc.finalize(regularization=0.01)
    x = feats[:, :, 0, 1].numpy().astype(np.float64)  # position 1
    np.testing.assert_allclose(mean[1].numpy(), x.mean(0), rtol=1e-5, atol=1e-6)
    cov = np.cov(x, rowvar=False) + 0.01 * np.eye(3)
    np.testing.assert_allclose(inv[1].numpy(), np.linalg.inv(cov), rtol=1e-4, atol=1e-4)


def test_map_head_matrices_equal_upsample_then_reflect_blur():
    import torch.nn.functional as F

    from shopfloor.inspection.anomaly.patchcore import gaussian_kernel1d

    head = AnomalyMapHead((48, 64), (6, 8), sigma=3.0)
    patch = torch.rand(2, 6, 8)
    k = gaussian_kernel1d(3.0)
    r = k.numel() // 2
    ref = F.interpolate(patch.unsqueeze(1), size=(48, 64), mode="bilinear", align_corners=False)
    ref = F.conv2d(F.pad(ref, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    ref = F.conv2d(F.pad(ref, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1)).squeeze(1)
    torch.testing.assert_close(head.raw(patch)[1], ref, atol=1e-5, rtol=1e-5)


def test_map_head_threshold_is_half_and_order_kept():
    head = AnomalyMapHead((32, 32), (4, 4), sigma=2.0)
    head.set_calibration(image_threshold=1.0, image_scale=0.5, pixel_threshold=1.0, pixel_scale=0.5)
    patch = torch.zeros(3, 4, 4)
    patch[1, 1, 1] = 5.0
    patch[2] = 1.0
    raw_score, raw_map = head.raw(patch)
    score, amap = head(patch)
    assert raw_map.shape == (3, 32, 32) and torch.allclose(raw_score, raw_map.flatten(1).amax(1))
    assert score[2] == pytest.approx(0.5, abs=1e-5)  # raw == threshold -> 0.5
    assert score[1] > 0.5 > score[0]
    order = torch.argsort(raw_map[1].flatten())
    assert torch.all(amap[1].flatten()[order].diff() >= 0)  # monotone: ranking preserved


@pytest.mark.parametrize("model", ["patchcore", "padim"])
def test_exported_and_in_memory_models_agree(model, tmp_path):
    from shopfloor.inspection.anomaly.task import AnomalyDetection
    from shopfloor.inspection.synthetic import make_anomaly_dataset

    root = make_anomaly_dataset(tmp_path / "data", n_train=8, n_test_good=2, n_test_per_defect=1, size=64)
    task = AnomalyDetection(model=model, image_size=64, training={"progress": False})
    task.fit(root)
    paths = sorted((root / "test").rglob("*.png"))
    onnx_scores, onnx_maps = task.score_images(paths)
    from shopfloor.inspection.images import read_images, to_model_input

    x = torch.from_numpy(to_model_input(read_images(paths, task.image_spec)))
    with torch.no_grad():
        torch_scores, torch_maps = task.torch_model(x)
    np.testing.assert_allclose(onnx_scores, torch_scores.numpy(), atol=2e-4)
    np.testing.assert_allclose(onnx_maps, torch_maps.numpy(), atol=2e-4)
    assert onnx_maps.shape == (len(paths), 64, 64)

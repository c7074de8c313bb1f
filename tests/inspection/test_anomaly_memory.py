"""Peak memory of PatchCore fitting stays bounded by ``feature_memory_mb`` on a large training set.

Each fit runs in a fresh subprocess that reports its resident-set growth (peak RSS during fit minus
RSS before fit), so the figures are the fit's own. Memory is measured, not time.
"""

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import psutil
    from shopfloor.inspection.anomaly.task import AnomalyDetection

    cap = int(sys.argv[1])
    rng = np.random.default_rng(0)
    images = rng.integers(90, 170, size=(1000, 32, 32), dtype=np.uint8)  # upsampled to 128 px in fit
    task = AnomalyDetection(image_size=128, feature_blocks=[2], max_bank_size=64, feature_memory_mb=cap, auto=False,
                            training={"progress": False, "batch_size": 16, "val_fraction": 0.02})
    before = psutil.Process().memory_info().rss / 2**20
    task.fit(images)
    # VmHWM: this process's own peak. ru_maxrss would not do: Linux carries the forking parent's peak across exec,
    # so a child of a large pytest process reported the parent's size
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"growth_mb": peak - before, "patches_per_image": task.state["patches_per_image"],
                      "subsampled": task.state["patches_subsampled"]}))
""")


def _fit_growth(cap_mb: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(cap_mb)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_feature_memory_cap_bounds_rss():
    # 980 training images x 1,024 patches x 24 channels: ~96 MB of features without a cap (plus the
    # coreset's per-patch buffers); with a 16 MB cap the store is subsampled to fit.
    uncapped = _fit_growth(4096)
    capped = _fit_growth(16)
    assert not uncapped["subsampled"] and capped["subsampled"]
    assert capped["patches_per_image"] < 1024
    assert uncapped["growth_mb"] > 96
    assert capped["growth_mb"] < uncapped["growth_mb"] - 80


def test_padim_inverse_covariance_survives_a_thread_count_change():
    """torch 2.13's batched LU breaks once set_num_threads changed in the process (control training did that);
    the Gaussian fit must still give the inverse covariance."""
    import torch

    from shopfloor.inspection.anomaly.padim import GaussianAccumulator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_num_threads(threads)
    acc = GaussianAccumulator(152, 64)
    feats = torch.randn(200, 152, 8, 8, generator=torch.Generator().manual_seed(0))
    acc.update(feats)
    mean, inv = acc.finalize(0.01)
    cov = (acc.outer - acc.n * acc.sum[:, :, None] / acc.n * (acc.sum[:, None, :] / acc.n)) / (acc.n - 1)
    cov += 0.01 * torch.eye(152, dtype=cov.dtype)
    assert torch.allclose(inv.double() @ cov, torch.eye(152, dtype=torch.float64).expand_as(cov), atol=1e-3)

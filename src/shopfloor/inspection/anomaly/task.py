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
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import nn
from tqdm.auto import tqdm

from shopfloor.core.artifact import fingerprint_arrays, fingerprint_files
from shopfloor.core.config import StrictModel, TrainingConfig
from shopfloor.core.errors import ConfigError, DataError
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
    read_frames,
    split_image_stack,
    stretch_message,
    to_model_input,
)
from ..inputs import check_ranges, finish_predictions, fit_input_ranges, settle_bad_inputs
from ..layouts import AnomalyData, AnomalySample, has_masks, read_anomaly_data, read_masks
from .autoconfig import Candidate, PseudoValidation, bank_rule, holdout_plan, search
from .coreset import greedy_coreset
from .metrics import f1_optimal_threshold, false_alarm_threshold
from .padim import Padim
from .patchcore import PatchCore
from .evaluation import evaluate_streamed
from .sampling import MapSample

log = logging.getLogger(__name__)

MIN_HELDOUT_GOOD = 10  # fewer held-out good images than this: the threshold is a training warning
MIN_VALIDATION_DEFECTS = 5  # the same for the defective validation images behind an F1 threshold

STREAM_CHUNK = 256  # images handed to the parallel runner at a time while streaming (bounds pending results)

Extractor = Callable[[torch.Tensor], torch.Tensor]


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


class AnomalyDetection(Task):
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

    def _load_batch(self, source: list[Path] | np.ndarray, sl: slice,
                    infos: list[FrameInfo] | None = None) -> torch.Tensor:
        spec = self.image_spec
        if isinstance(source, np.ndarray):
            decoded = [decode_frame(a, spec, f"in-memory training image {sl.start + k}")
                       for k, a in enumerate(source[sl])]
            arrays, found = np.stack([frame for frame, _ in decoded]), [info for _, info in decoded]
        else:
            arrays, found = read_frames(source[sl], spec)
        if infos is not None:
            infos.extend(found)
        return torch.from_numpy(to_model_input(arrays))

    def _batches(self, source: list[Path] | np.ndarray, desc: str, infos: list[FrameInfo] | None = None):
        n = len(source)
        for sl in tqdm(list(batched(n, self.training.batch_size)), desc=desc, leave=False,
                       disable=not self.training.progress):
            yield self._load_batch(source, sl, infos)

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
                            self._feature_extractor, rule, bit_depth, cfg.training.seed)
        chosen = result.chosen
        update = {"image_size": list(chosen.image_size), "tiles": list(chosen.tiles),
                  "feature_blocks": list(chosen.blocks), "smoothing_sigma": result.smoothing_sigma}
        self.config = self.Config.model_validate({**cfg.model_dump(), **update})
        state = result.to_state()
        log.info("auto-configuration chose %s, sigma %g (pseudo-anomaly image AUROC %.3f, pixel AUROC %.3f) in %.1f s",
                 chosen.label(), result.smoothing_sigma, state["pseudo_image_auroc"], state["pseudo_pixel_auroc"],
                 result.seconds)
        return state

    def _feature_extractor(self, model: nn.Module) -> Extractor:
        """The backbone part exported and run in ONNX Runtime (several times faster than eager torch on CPU;
        it matches torch to ~1e-5): batch ``[B, 3, H, W]`` -> features ``[B, C, h, w]``."""
        from shopfloor.core.runtime import OnnxModel, export_onnx

        onnx = export_onnx(model.extractor, (torch.zeros(1, 3, *model.extractor.image_size),), ["images"],
                           ["features"])
        session = OnnxModel(onnx, device=self.training.device)
        return lambda batch: torch.from_numpy(session.run(images=batch.numpy())["features"])

    def _fit_patchcore(self, model: PatchCore, source: list[Path] | np.ndarray, extract: Extractor,
                       infos: list[FrameInfo] | None = None) -> tuple[torch.Tensor, int]:
        """Fill the memory bank; returns the feature store (``keep`` rows per image, in image order) and ``keep``."""
        cfg = self.config
        th, tw = model.extractor.grid
        gh, gw = th * model.tiles[0], tw * model.tiles[1]
        per_image = gh * gw
        c = model.feature_dim
        bytes_per_row = 4 * (c + min(cfg.coreset_projection_dim, c) + 2)
        cap_rows = max(1, cfg.feature_memory_mb * 2 ** 20 // bytes_per_row)
        keep = min(per_image, max(1, cap_rows // len(source)))
        store = torch.empty(len(source) * keep, c)
        gen = torch.Generator().manual_seed(cfg.training.seed)
        row = 0
        for batch in self._batches(source, "extracting features", infos):
            feats = extract(model.tile(batch))
            rows = feats.permute(0, 2, 3, 1).reshape(len(batch), per_image, c)
            if keep < per_image:
                idx = torch.stack([torch.randperm(per_image, generator=gen)[:keep] for _ in range(len(rows))])
                rows = torch.gather(rows, 1, idx.unsqueeze(-1).expand(-1, -1, c))
            rows = rows.reshape(-1, c)
            store[row:row + len(rows)] = rows
            row += len(rows)
        size = self._bank_size(model, len(source) * per_image, len(store))
        chosen = greedy_coreset(store, size, cfg.coreset_projection_dim, seed=cfg.training.seed,
                                progress=self.training.progress)
        model.set_memory_bank(store[chosen].clone())
        self.state.update(bank_size=int(size), patches_per_image=int(keep), patch_grid=[gh, gw],
                          patches_subsampled=bool(keep < per_image))
        if keep < per_image:
            log.warning("feature_memory_mb=%d caps the feature store: %d of %d patches kept per image",
                        cfg.feature_memory_mb, keep, per_image)
        return store, keep

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

    @classmethod
    def _stored_scores(cls, model: PatchCore, store: torch.Tensor, keep: int, images: np.ndarray,
                       chunk: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores and maps of the ``images`` (positions in the store) from their stored features, which hold
        every patch (tile-major, row-major within a tile), as ``extract(model.tile(batch))`` gave them."""
        return _joined(cls._stored_batches(model, store, keep, images, chunk))

    @staticmethod
    def _stored_batches(model: PatchCore, store: torch.Tensor, keep: int, images: np.ndarray, chunk: int = 8):
        """:meth:`_stored_scores` as ``(scores, maps)`` per chunk of images (memory flat in their number)."""
        th, tw = model.extractor.grid
        n_tiles = model.tiles[0] * model.tiles[1]
        c = store.shape[1]
        for start in range(0, len(images), chunk):
            part = images[start:start + chunk]
            rows = torch.cat([store[i * keep:(i + 1) * keep] for i in part])
            feats = rows.reshape(len(part) * n_tiles, th, tw, c).permute(0, 3, 1, 2)
            s, m = model.head.raw(model.stitch(model.feature_scores(feats)))
            yield s.numpy(), m.numpy()

    def _cross_fit_scores(self, model: PatchCore, source: list[Path] | np.ndarray, store: torch.Tensor, keep: int,
                          extract: Extractor, folds: int) -> tuple[np.ndarray, MapSample]:
        """Raw scores and a pixel sample of the maps (:class:`.sampling.MapSample`) of every bank image, each from a
        bank built without its fold (then the full bank is put back): the threshold's good images without holding
        any out of the bank."""
        cfg = self.config
        full_bank = model.memory_bank.clone()
        n = len(source)
        fold_of = np.arange(n) % folds
        scores = np.zeros(n, np.float32)
        sample = MapSample(n, self.image_spec.height * self.image_spec.width, seed=cfg.training.seed)
        pick = (lambda idx: source[idx]) if isinstance(source, np.ndarray) else (lambda idx: [source[i] for i in idx])
        for f in range(folds):
            inside = np.flatnonzero(fold_of == f)
            rows = torch.from_numpy(np.repeat(fold_of != f, keep))
            kept = store[rows]
            per_image = model.extractor.grid[0] * model.extractor.grid[1] * model.tiles[0] * model.tiles[1]
            size = self._bank_size(model, int((fold_of != f).sum()) * per_image, len(kept), record=False)
            chosen = greedy_coreset(kept, size, cfg.coreset_projection_dim, seed=cfg.training.seed + 1 + f)
            model.set_memory_bank(kept[chosen].clone())
            if keep == per_image:  # every patch of every image is stored: score the fold from the store
                batches = self._stored_batches(model, store, keep, inside)
            else:
                batches = self._raw_batches(model, pick(inside), extract, f"cross-fitting fold {f + 1}/{folds}")
            done = 0
            for s, m in batches:
                scores[inside[done:done + len(s)]] = s
                sample.add(m)
                done += len(s)
        model.set_memory_bank(full_bank)
        return scores, sample

    def _fit_padim(self, model: Padim, source: list[Path] | np.ndarray, extract: Extractor,
                   infos: list[FrameInfo] | None = None) -> None:
        acc = model.accumulator()
        for batch in self._batches(source, "extracting features", infos):
            acc.update(extract(batch))
        mean, inv_cov = acc.finalize(self.config.padim_regularization)
        model.set_gaussians(mean, inv_cov)
        self.state.update(patch_grid=list(model.extractor.grid))

    def _raw_scores(self, model: nn.Module, source: list[Path] | np.ndarray, extract: Extractor,
                    desc: str, infos: list[FrameInfo] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores ``[N]`` and maps ``[N, H, W]`` of ``source`` by the eager model (few images: all maps held)."""
        return _joined(self._raw_batches(model, source, extract, desc, infos))

    def _raw_batches(self, model: nn.Module, source: list[Path] | np.ndarray, extract: Extractor,
                     desc: str, infos: list[FrameInfo] | None = None):
        """Raw ``(scores, maps)`` batch by batch, decoding each batch from disk as it goes (memory flat)."""
        for batch in self._batches(source, desc, infos):
            if isinstance(model, PatchCore):
                s, m = model.head.raw(model.stitch(model.feature_scores(extract(model.tile(batch)))))
            else:
                s, m = model.head.raw(model.feature_scores(extract(batch)))
            yield s.numpy(), m.numpy()

    def _calibrate(self, model: nn.Module, held_good: list[Path] | np.ndarray,
                   validation: list[AnomalySample], extract: Extractor, infos: list[FrameInfo] | None = None,
                   n_good: int | None = None, held: tuple[np.ndarray, MapSample] | None = None) -> None:
        """Set image and pixel thresholds and scales from held-out good (and validation) images, or from the
        cross-fitted raw scores and map sample of the good images given as ``held``; warn (kept in the artifact)
        when they rest on too few images. Maps are streamed into bounded pixel samples (:mod:`.sampling`)."""
        cfg = self.config
        pixels = self.image_spec.height * self.image_spec.width
        if held is not None:
            good_scores, good_maps = held
        else:
            good_maps = MapSample(len(held_good), pixels, seed=cfg.training.seed)
            good_scores = self._sampled_scores(model, held_good, extract, "scoring held-out good images", good_maps,
                                               infos=infos)
        val_scores = np.zeros(0)
        val_labels = np.zeros(0, dtype=int)
        val_maps = MapSample(len(validation), pixels, seed=cfg.training.seed + 1)
        if validation:
            val_scores = self._sampled_scores(model, [s.path for s in validation], extract,
                                              "scoring validation images", val_maps, validation)
            val_labels = np.array([s.label for s in validation])
        has_defects = bool(val_labels.sum())
        rule = cfg.threshold_rule
        if rule == "auto":
            rule = "f1" if has_defects else "quantile"
        if rule == "f1" and not has_defects:
            raise ConfigError("threshold_rule 'f1' needs defective validation images (plain layout: a defect/ folder; "
                              "MVTec layout: validation/<type>/); use 'quantile' for good images only")
        if rule == "f1":
            labels = np.concatenate([np.zeros(len(good_scores), int), val_labels])
            image_threshold = f1_optimal_threshold(labels, np.concatenate([good_scores, val_scores]))
            method = "maximum F1 on held-out good + validation images"
        else:
            image_threshold, method = false_alarm_threshold(good_scores, cfg.false_alarm_rate)
        pixel_rule = "image threshold (an image is flagged exactly when a pixel is)"
        pixel_threshold = image_threshold
        if rule == "f1" and has_masks(validation):
            truth = np.concatenate([good_maps.truth, val_maps.truth])
            values = np.concatenate([good_maps.values, val_maps.values])
            pixel_threshold = f1_optimal_threshold(truth, values)
            pixel_rule = "f1 on validation masks"
        image_scale = _scale(image_threshold, np.median(good_scores))
        pixel_scale = _scale(pixel_threshold, np.median(good_maps.values))
        model.head.set_calibration(image_threshold, image_scale, pixel_threshold, pixel_scale)
        self.state["threshold_rule"] = rule
        self.state["calibration"] = {
            "image_threshold_raw": float(image_threshold), "image_scale": float(image_scale),
            "pixel_threshold_raw": float(pixel_threshold), "pixel_scale": float(pixel_scale),
            "image_rule": method, "pixel_rule": pixel_rule,
            "false_alarm_rate_target": cfg.false_alarm_rate if rule == "quantile" else None,
            "n_heldout_good": int(len(good_scores)), "n_validation": int(len(val_labels)),
            "heldout_good_flagged": float((good_scores >= image_threshold).mean()),
            "normalisation": "sigmoid((raw - threshold) / scale): 0.5 is the threshold",
        }
        self._warn_weak_threshold(rule, method, good_scores, image_threshold, int(val_labels.sum()),
                                  n_good or len(good_scores), cross_fitted=held is not None)

    def _sampled_scores(self, model: nn.Module, source: list[Path] | np.ndarray, extract: Extractor, desc: str,
                        sample: MapSample, samples: list[AnomalySample] | None = None,
                        infos: list[FrameInfo] | None = None) -> np.ndarray:
        """Raw scores of ``source``; their maps go into ``sample`` batch by batch (with the masks of ``samples``)."""
        scores, done = [], 0
        for s, m in self._raw_batches(model, source, extract, desc, infos):
            masks = None
            if samples is not None and has_masks(samples):
                masks = read_masks(samples[done:done + len(s)], self.image_spec)
            sample.add(m, masks)
            scores.append(s)
            done += len(s)
        return np.concatenate(scores) if scores else np.zeros(0, np.float32)

    def _warn_weak_threshold(self, rule: str, method: str, good_scores: np.ndarray, threshold: float,
                             n_defective: int, n_good: int, cross_fitted: bool = False) -> None:
        """A training warning (``state["warnings"]``) when the threshold rests on too few images."""
        cfg = self.config
        n_held, rate = len(good_scores), cfg.false_alarm_rate
        problems = []
        if n_held < MIN_HELDOUT_GOOD:
            problems.append(f"it was set on only {n_held} held-out good image(s) (fewer than {MIN_HELDOUT_GOOD}), so "
                            "the share of new good parts it flags is uncertain")
        if rule == "quantile" and n_held * rate < 1:
            need = math.ceil(1 / rate) if rate > 0 else None
            resolved = (f"--false-alarm-rate {rate:g} needs at least {need} held-out good images to be resolved"
                        if need else "--false-alarm-rate 0 puts it at the highest held-out score")
            problems.append(f"{resolved}; with {n_held} the threshold ({threshold:.4g}; highest held-out score "
                            f"{float(np.max(good_scores)):.4g}) is set by the {method}")
        if rule == "f1" and n_defective < MIN_VALIDATION_DEFECTS:
            problems.append(f"the F1 rule chose it on only {n_defective} defective validation image(s) (fewer than "
                            f"{MIN_VALIDATION_DEFECTS})")
        if not problems:
            return
        rate_hint = (f"; or accept --false-alarm-rate {math.ceil(100 / n_held) / 100:g} or more"
                     if rule == "quantile" and n_held >= 2 and n_held * rate < 1 else "")
        where = (f"All {n_good} good training images were scored by cross-fitting. Add good training images"
                 if cross_fitted else f"{n_held} of {n_good} good training images were held out (--val-fraction "
                 f"{cfg.training.val_fraction:g}). Add good training images or raise --val-fraction")
        self.note_warning(
            "anomaly threshold may not hold on new parts: " + "; ".join(problems) + f". {where}{rate_hint}; "
            f"{'or use --threshold-rule f1 with' if rule == 'quantile' else 'add'} "
            "defective validation images (plain layout: defect/; MVTec layout: validation/<type>/)")

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


def _joined(batches) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, maps)`` batches joined into one ``(scores [N], maps [N, H, W])``."""
    scores, maps = zip(*batches)
    return np.concatenate(scores), np.concatenate(maps)


def _scale(threshold: float, typical_good: float) -> float:
    """Sigmoid scale: the gap between the threshold and a typical good value (floored at 5 % of the threshold)."""
    return float(max(threshold - typical_good, 0.05 * abs(threshold), 1e-6))


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

"""Auto-configuration of PatchCore from good images only: candidates scored on pseudo-anomalies.

What is chosen, and how:

- **Latency budget** (first): every candidate's cost per image is estimated in FLOPs (backbone convolutions +
  nearest-neighbour search against the largest bank the bank rule allows it), and candidates over the budget are
  pruned before any validation. The budget is ``latency_budget`` (default :data:`LATENCY_BUDGET` = 2) times the cost
  of the fixed defaults at the same long side (square frame, blocks (4, 10), a bank of 1536). Since the bank cap
  scales with the backbone's cost, a candidate's cost grows with its pixels: each block set gets the largest frame
  (tiled or not) that fits.
- **Geometry** (searched): the base frame keeps the images' aspect ratio (elongated parts are never squashed) with
  its long side at the configured ``image_size``; when the images are larger, the largest frame within the budget
  (up to their native resolution, as a grid of tiles of at most 1.25 base frames, scored apart inside the exported
  graph, maps stitched back, image score = maximum over tiles) is tried too.
- **Feature blocks** (searched): the default mid-level pair (4, 10) and a finer pair (2, 4) (stride 4), the finer
  one on its own largest frame within the budget, when its bank cap is still useful (:data:`MIN_FINE_BANK`).
- **Smoothing** (searched, no extra feature extraction): sigma of the anomaly-map Gaussian, relative to the
  patch stride (ties go to half a stride, the fixed default's ratio).
- **Memory bank** (rule): ``coreset_ratio`` of the training patches, capped so that the nearest-neighbour search
  costs at most ``bank_flops_ratio`` times the backbone's own FLOPs per image, and by ``bank_memory_mb``.
- **Held-out images** (rule, :func:`holdout_plan`): few good images -> every one of them goes into the bank and
  the threshold is set on cross-fitted scores (each image scored by a bank built without it); many -> a share is
  held out.

Each candidate is fitted on a subset of the good images and scored on held-out good images and on pseudo-anomalous
copies of the same held-out images (:mod:`.pseudo`, drawn once at the images' original resolution, so every
candidate sees the same defects); the criterion is image AUROC + pixel AUROC on them. Candidates whose criterion is
within the noise of the best one's (``NOISE_SE`` paired-bootstrap standard errors of the difference, resampling the
validation images; at least ``TIE``) are tied, and the cheapest of the tied wins. No real defect is ever looked at.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn

from ..images import ImageSpec, resize_array, to_model_input
from .coreset import greedy_coreset
from .patchcore import DEFAULT_BLOCKS, AnomalyMapHead, PatchCore
from .pseudo import PSEUDO_KINDS, pseudo_anomaly, resize_mask

TIE = 0.005  # criterion differences below this are always ties, won by the cheaper candidate
NOISE_SE = 1.0  # ... and so are differences within this many paired-bootstrap standard errors
BOOTSTRAPS = 200
PIXELS_PER_IMAGE = 256  # pixels per image and class kept for the bootstrap of pixel AUROC
LATENCY_BUDGET = 2.0  # default per-image cost budget, in multiples of the fixed defaults' cost
FIXED_BANK = 1536  # the fixed defaults' bank cap (AnomalyDetectionConfig.max_bank_size), for the reference cost
FINE_BLOCKS = (2, 4)
SIGMA_STRIDES = (0.25, 0.5, 1.0)  # smoothing sigma candidates, in patch strides (0.5 stride = 4 px at stride 8)
MAX_TILES = 9
MAX_TILE_SCALE = 1.25  # a tile's side is at most this times the base frame's
MIN_TILE_SCALE = 0.5  # ... and at least this times it (and 64 px): smaller tiles lose the backbone's context
CROSS_FIT_MAX_IMAGES = 120  # up to this many good images, all go into the bank and the threshold is cross-fitted
CROSS_FIT_FOLDS = 4
MIN_FINE_BANK = 512  # the finer blocks are tried only when the latency budget allows a bank this large

Builder = Callable[["Candidate"], PatchCore]
ExtractorFactory = Callable[[PatchCore], Callable[[torch.Tensor], torch.Tensor]]
BankRule = Callable[[PatchCore, int], "tuple[int, dict]"]


def _round32(value: float) -> int:
    return max(32, int(round(value / 32)) * 32)


@dataclass(frozen=True)
class Candidate:
    """One configuration tried by the search: full frame ``[height, width]``, tiles ``[rows, cols]``, blocks."""

    image_size: tuple[int, int]
    tiles: tuple[int, int] = (1, 1)
    blocks: tuple[int, ...] = DEFAULT_BLOCKS

    @property
    def tile_size(self) -> tuple[int, int]:
        return self.image_size[0] // self.tiles[0], self.image_size[1] // self.tiles[1]

    def label(self) -> str:
        h, w = self.image_size
        tiled = f" as {self.tiles[0]}x{self.tiles[1]} tiles" if self.tiles != (1, 1) else ""
        return f"{h}x{w}{tiled}, blocks {list(self.blocks)}"


def base_frame(sizes: Sequence[tuple[int, int]], long_side: int) -> tuple[int, int]:
    """``(height, width)``: the median image's aspect ratio with its long side at ``long_side`` (multiples of 32)."""
    w, h = np.median(np.asarray(sizes, dtype=np.float64), axis=0)
    if w >= h:
        return _round32(long_side * h / w), _round32(long_side)
    return _round32(long_side), _round32(long_side * w / h)


def geometry_candidates(sizes: Sequence[tuple[int, int]], long_side: int) -> list[Candidate]:
    """The untiled base frame, plus a tiled frame near the native resolution when the images are >= 1.5x larger."""
    base = base_frame(sizes, long_side)
    found = [Candidate(base)]
    w, h = np.median(np.asarray(sizes, dtype=np.float64), axis=0)
    ratio = min(h / base[0], w / base[1])
    if ratio >= 1.5:
        ty, tx = max(1, int(math.floor(h / base[0] + 0.5))), max(1, int(math.floor(w / base[1] + 0.5)))
        while ty * tx > MAX_TILES:
            ty, tx = max(1, ty - 1), max(1, tx - 1)
        # tiles near the base frame's size: very large images are seen at a bounded, not their full, resolution
        tile = (min(_round32(h / ty), _round32(MAX_TILE_SCALE * base[0])),
                min(_round32(w / tx), _round32(MAX_TILE_SCALE * base[1])))
        found.append(Candidate((tile[0] * ty, tile[1] * tx), (ty, tx)))
    return found


def conv_flops(module: nn.Module, example: torch.Tensor) -> float:
    """Multiply-add FLOPs (2 per MAC) of the convolutions and linear layers of one forward pass of ``example``."""
    total = [0.0]

    def hook(layer: nn.Module, _inputs, output: torch.Tensor) -> None:
        if isinstance(layer, nn.Conv2d):
            k = layer.kernel_size[0] * layer.kernel_size[1] * layer.in_channels // layer.groups
            total[0] += 2.0 * output.numel() * k
        elif isinstance(layer, nn.Linear):
            total[0] += 2.0 * output.numel() * layer.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in handles:
            h.remove()
    return total[0]


def bank_rule(model: PatchCore, n_patches: int, coreset_ratio: float, flops_ratio: float,
              memory_mb: float) -> tuple[int, dict]:
    """Bank size: ``coreset_ratio`` of the training patches under a latency cap (nearest-neighbour FLOPs per image
    at most ``flops_ratio`` x the backbone's) and a memory cap; returns (size, the figures behind it)."""
    th, tw = model.extractor.grid
    positions = th * tw * model.tiles[0] * model.tiles[1]
    c = model.feature_dim
    tile = model.extractor.features
    ts = (model.head.image_size[0] // model.tiles[0], model.head.image_size[1] // model.tiles[1])
    backbone = conv_flops(tile, torch.zeros(1, 3, *ts)) * model.tiles[0] * model.tiles[1]
    latency_cap = int(flops_ratio * backbone / (2.0 * positions * c))
    memory_cap = int(memory_mb * 2 ** 20 / (4 * c))
    wanted = int(round(coreset_ratio * n_patches))
    size = max(1, min(wanted, latency_cap, memory_cap))
    return size, {"from_patches": wanted, "latency_cap": latency_cap, "memory_cap": memory_cap,
                  "backbone_gflops_per_image": round(backbone / 1e9, 3),
                  "search_gflops_per_image": round(2.0 * positions * c * size / 1e9, 3)}


def holdout_plan(n_good: int, val_fraction: float) -> dict:
    """How the threshold's good images are found: cross-fitting (every image in the bank) for small sets, a
    held-out share for large ones (the bank hardly gains from more images there, and fitting stays fast)."""
    if n_good <= CROSS_FIT_MAX_IMAGES and n_good >= 2 * CROSS_FIT_FOLDS:
        return {"method": "cross-fit", "folds": CROSS_FIT_FOLDS, "n_heldout": 0}
    n_held = min(max(1, int(round(val_fraction * n_good))), n_good - 2)
    return {"method": "held-out", "folds": 0, "n_heldout": n_held}


def candidate_cost(build: Builder, bank_size: BankRule, candidate: Candidate) -> dict:
    """Estimated GFLOPs per image of ``candidate``: backbone + nearest-neighbour search against the largest bank
    the bank rule allows it (whatever the number of training images, so the fitted model cannot exceed it)."""
    size, figures = bank_size(build(candidate), 10 ** 9)
    return {"bank_cap": int(size), "backbone_gflops": figures["backbone_gflops_per_image"],
            "gflops_per_image": round(figures["backbone_gflops_per_image"] + figures["search_gflops_per_image"], 3)}


def reference_cost(build: Builder, long_side: int, bank: int = FIXED_BANK) -> float:
    """GFLOPs per image of the fixed defaults at ``long_side``: square frame, blocks (4, 10), ``bank`` entries."""
    model = build(Candidate((long_side, long_side)))
    backbone = conv_flops(model.extractor.features, torch.zeros(1, 3, long_side, long_side))
    th, tw = model.extractor.grid
    return (backbone + 2.0 * th * tw * model.feature_dim * bank) / 1e9


def frames_within(base: tuple[int, int], native: tuple[float, float], max_pixels: float) -> list[Candidate]:
    """Frames above the base frame with at most ``max_pixels`` pixels, largest first (fewer tiles first among equal
    sizes): same aspect, tiles of ``MIN_TILE_SCALE`` to ``MAX_TILE_SCALE`` base frames, up to ``MAX_TILES`` tiles,
    at most the native size."""
    found = []
    shortest = max(64, _round32(MIN_TILE_SCALE * max(base)))
    for t in range(1, int(math.isqrt(MAX_TILES)) + 1):
        for long_tile in range(shortest, _round32(MAX_TILE_SCALE * max(base)) + 1, 32):
            f = long_tile / max(base)
            tile = (_round32(base[0] * f), _round32(base[1] * f))
            frame = (tile[0] * t, tile[1] * t)
            if frame[0] * frame[1] <= base[0] * base[1] or frame[0] * frame[1] > max_pixels:
                continue
            if frame[0] > _round32(native[0]) or frame[1] > _round32(native[1]):
                continue
            found.append(Candidate(frame, (t, t)))
    found.sort(key=lambda c: (-c.image_size[0] * c.image_size[1], c.tiles[0]))
    return found


def budget_plan(sizes: Sequence[tuple[int, int]], long_side: int, build: Builder, bank_size: BankRule,
                ratio: float) -> tuple[list[Candidate], dict]:
    """The candidates to validate under a per-image budget of ``ratio`` x the fixed defaults' cost, and the record
    of the budget and of every candidate considered (cost, pruned or kept and why).

    Per block set: the base frame (default blocks only) and the largest frame within the budget; the near-native
    tiled frame of :func:`geometry_candidates` is also costed, so that what the budget ruled out is on record."""
    reference = reference_cost(build, long_side)
    budget = ratio * reference
    base = base_frame(sizes, long_side)
    w, h = np.median(np.asarray(sizes, dtype=np.float64), axis=0)
    native = (max(h, base[0]), max(w, base[1]))
    record: list[dict] = []
    keep: list[Candidate] = []

    def consider(candidate: Candidate, cost: dict | None = None, why: str = "", validate: bool = True) -> bool:
        cost = cost or candidate_cost(build, bank_size, candidate)
        over = cost["gflops_per_image"] > budget
        small = candidate.blocks == FINE_BLOCKS and cost["bank_cap"] < MIN_FINE_BANK
        status = "pruned" if over or small else "kept" if validate else "not validated"
        entry = {"candidate": candidate.label(), **cost, "status": status}
        if over:
            entry["reason"] = f"over the budget ({cost['gflops_per_image']:.3g} > {budget:.3g} GFLOPs per image)"
        elif small:
            entry["reason"] = f"bank cap {cost['bank_cap']} under {MIN_FINE_BANK} within the budget"
        elif not validate:
            entry["reason"] = "within the budget; only the largest frame up to the native size is validated"
        elif why:
            entry["reason"] = why
        if all(r["candidate"] != entry["candidate"] for r in record):
            record.append(entry)
        return entry["status"] == "kept"

    for blocks in (DEFAULT_BLOCKS, FINE_BLOCKS):
        start = Candidate(base, (1, 1), blocks)
        unit = candidate_cost(build, bank_size, start)
        if blocks == DEFAULT_BLOCKS and consider(start, unit, "base frame"):
            keep.append(start)
        # cost grows with the frame's pixels (the bank cap scales with the backbone's cost): largest frame first
        max_pixels = budget / unit["gflops_per_image"] * base[0] * base[1]
        tried = 0
        for candidate in [Candidate(c.image_size, c.tiles, blocks) for c in frames_within(base, native, max_pixels)]:
            tried += 1
            if consider(candidate, why="largest frame within the budget"):
                keep.append(candidate)
                break
            if tried >= 4:  # rounding put the estimate just over: a few steps down at most
                break
        else:
            if blocks == FINE_BLOCKS and consider(start, unit, "largest frame within the budget"):
                keep.append(start)
        for candidate in geometry_candidates(sizes, long_side)[1:]:  # the near-native frame, costed for the record
            consider(Candidate(candidate.image_size, candidate.tiles, blocks), validate=False)
    return keep, {"ratio": ratio, "reference": f"fixed defaults: {long_side}x{long_side}, blocks "
                  f"{list(DEFAULT_BLOCKS)}, bank {FIXED_BANK}", "reference_gflops": round(reference, 3),
                  "budget_gflops": round(budget, 3), "candidates": record,
                  "pruned": [r["candidate"] for r in record if r["status"] == "pruned"]}


@dataclass
class SearchResult:
    """What the search chose and the pseudo-anomaly figures of every candidate it tried."""

    chosen: Candidate
    smoothing_sigma: float
    trials: list[dict] = field(default_factory=list)
    n_fit_images: int = 0
    n_validation_good: int = 0
    n_pseudo_anomalies: int = 0
    seconds: float = 0.0
    latency_budget: dict = field(default_factory=dict)

    def to_state(self) -> dict:
        best = next(t for t in self.trials if t["chosen"])
        return {"image_size": list(self.chosen.image_size), "tiles": list(self.chosen.tiles),
                "feature_blocks": list(self.chosen.blocks), "smoothing_sigma": self.smoothing_sigma,
                "pseudo_image_auroc": best["image_auroc"], "pseudo_pixel_auroc": best["pixel_auroc"],
                "gflops_per_image": best["gflops_per_image"], "latency_budget": self.latency_budget,
                "pruned": self.latency_budget.get("pruned", []), "trials": self.trials,
                "n_fit_images": self.n_fit_images,
                "n_validation_good": self.n_validation_good, "n_pseudo_anomalies": self.n_pseudo_anomalies,
                "pseudo_kinds": list(PSEUDO_KINDS), "search_seconds": round(self.seconds, 1),
                "data_used": "good training images only (real defects never used for choosing)"}


class PseudoValidation:
    """Good images for fitting candidates, held-out good images and their pseudo-anomalous copies (originals)."""

    def __init__(self, fit_images: list[Image.Image], val_images: list[Image.Image], seed: int,
                 min_defect_size: float, per_image: int = 2):
        rng = np.random.default_rng(seed + 7)
        self.fit_images = fit_images
        self.val_images = val_images
        self.pseudo: list[Image.Image] = []
        self.masks: list[np.ndarray] = []
        for k in range(per_image):
            for i, img in enumerate(val_images):
                kind = PSEUDO_KINDS[(i + k) % len(PSEUDO_KINDS)]
                out, mask = pseudo_anomaly(np.asarray(img), rng, kind, min_size=min_defect_size,
                                           max_size=4 * min_defect_size)
                self.pseudo.append(Image.fromarray(out))
                self.masks.append(mask)


def _frames(images: Sequence[Image.Image], spec: ImageSpec) -> torch.Tensor:
    return torch.from_numpy(to_model_input(np.stack([resize_array(img, spec) for img in images])))


def _features(model: PatchCore, extract, images: Sequence[Image.Image], spec: ImageSpec,
              batch: int = 8) -> torch.Tensor:
    out = [extract(model.tile(_frames(images[i:i + batch], spec))) for i in range(0, len(images), batch)]
    return torch.cat(out)


def evaluate_candidate(candidate: Candidate, data: PseudoValidation, build: Builder, make_extractor: ExtractorFactory,
                       bank_size: BankRule, bit_depth: int | None, seed: int,
                       max_rows: int = 150_000) -> dict:
    """Fit a bank for ``candidate`` on ``data.fit_images`` and score the held-out good and pseudo images; returns
    the figures of every smoothing sigma tried (image and pixel AUROC), the best first, and under ``"_samples"``
    the per-image scores and pixel samples of the best sigma (for the paired bootstrap of :func:`select`)."""
    start = time.perf_counter()
    model = build(candidate)
    extract = make_extractor(model)
    spec = ImageSpec(height=candidate.image_size[0], width=candidate.image_size[1], bit_depth=bit_depth)
    feats = _features(model, extract, data.fit_images, spec)
    c = feats.shape[1]
    rows = feats.permute(0, 2, 3, 1).reshape(-1, c)
    if len(rows) > max_rows:
        rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:max_rows]]
    size, figures = bank_size(model, int(feats.shape[0] * feats.shape[2] * feats.shape[3]))
    model.set_memory_bank(rows[greedy_coreset(rows, size, 32, seed=seed)].clone())
    good = model.stitch(model.feature_scores(_features(model, extract, data.val_images, spec)))
    bad = model.stitch(model.feature_scores(_features(model, extract, data.pseudo, spec)))
    h, w = candidate.image_size
    masks = np.stack([resize_mask(m, h, w) for m in data.masks])
    stride = h / good.shape[1]
    results = []
    for rel in SIGMA_STRIDES:
        sigma = round(max(1.0, rel * stride), 2)
        head = AnomalyMapHead((h, w), tuple(good.shape[1:]), sigma)
        gs, gm = head.raw(good)
        bs, bm = head.raw(bad)
        labels = np.r_[np.zeros(len(gs)), np.ones(len(bs))]
        image_auroc = float(roc_auc_score(labels, np.r_[gs.numpy(), bs.numpy()]))
        pixel_auroc = _pixel_auroc(gm.numpy(), bm.numpy(), masks, seed)
        results.append({"sigma": sigma, "rel": rel, "image_auroc": round(image_auroc, 4),
                        "pixel_auroc": round(pixel_auroc, 4),
                        "_samples": _bootstrap_samples(gs.numpy(), bs.numpy(), gm.numpy(), bm.numpy(), masks, seed)})
    # best criterion first; within TIE of it, the sigma nearest half a stride (the fixed default's ratio) wins
    top = max(r["image_auroc"] + r["pixel_auroc"] for r in results)
    results.sort(key=lambda r: (r["image_auroc"] + r["pixel_auroc"] < top - TIE, abs(r["rel"] - 0.5),
                                -(r["image_auroc"] + r["pixel_auroc"])))
    samples = results[0]["_samples"]
    for r in results:
        del r["_samples"]
    return {"candidate": candidate.label(), "image_size": list(candidate.image_size), "tiles": list(candidate.tiles),
            "feature_blocks": list(candidate.blocks), "bank_size": size, **results[0],
            "sigmas": results, "seconds": round(time.perf_counter() - start, 1), "_samples": samples,
            "gflops_per_image": round(figures["backbone_gflops_per_image"] + figures["search_gflops_per_image"], 3)}


def _pixel_auroc(good_maps: np.ndarray, bad_maps: np.ndarray, masks: np.ndarray, seed: int,
                 max_good: int = 300_000) -> float:
    """Pixel AUROC over the good maps and the pseudo maps (every defect pixel, a sample of the good ones)."""
    pos = bad_maps[masks]
    neg = np.concatenate([good_maps.ravel(), bad_maps[~masks]])
    if len(neg) > max_good:
        neg = neg[np.random.default_rng(seed).choice(len(neg), max_good, replace=False)]
    return float(roc_auc_score(np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos]))


def _bootstrap_samples(good_scores: np.ndarray, bad_scores: np.ndarray, good_maps: np.ndarray,
                       bad_maps: np.ndarray, masks: np.ndarray, seed: int) -> dict:
    """Per-image image scores and a fixed sample of pixel scores (``PIXELS_PER_IMAGE`` per image and class):
    enough to resample the validation images for the noise of the criterion without keeping every map."""
    rng = np.random.default_rng(seed + 11)

    def sample(values: np.ndarray) -> np.ndarray:
        return values if len(values) <= PIXELS_PER_IMAGE else rng.choice(values, PIXELS_PER_IMAGE, replace=False)

    return {"good": good_scores, "bad": bad_scores,
            "good_pixels": [sample(m.ravel()) for m in good_maps],
            "bad_pixels": [(sample(m[k]), sample(m[~k])) for m, k in zip(bad_maps, masks)]}


def bootstrap_criteria(samples: dict, n_sources: int, seed: int, rounds: int = BOOTSTRAPS) -> np.ndarray:
    """Criterion (image + pixel AUROC) on ``rounds`` resamples of the validation images. Resampling is by source
    image (a good image and its pseudo-anomalous copies together) with the same seed for every candidate, so the
    differences between candidates are paired."""
    rng = np.random.default_rng(seed + 13)
    n_bad = len(samples["bad"])
    out = np.empty(rounds)
    for r in range(rounds):
        src = rng.integers(0, n_sources, n_sources)
        bad = np.concatenate([src + k * n_sources for k in range(n_bad // n_sources)])
        gs, bs = samples["good"][src], samples["bad"][bad]
        image = roc_auc_score(np.r_[np.zeros(len(gs)), np.ones(len(bs))], np.r_[gs, bs])
        neg = np.concatenate([samples["good_pixels"][i] for i in src] + [samples["bad_pixels"][j][1] for j in bad])
        pos = np.concatenate([samples["bad_pixels"][j][0] for j in bad])
        pixel = roc_auc_score(np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos])
        out[r] = image + pixel
    return out


def select(trials: list[dict], n_sources: int, seed: int) -> int:
    """Index of the chosen trial: the best criterion, or the cheapest candidate tied with it within noise
    (``NOISE_SE`` paired-bootstrap standard errors of the difference, at least ``TIE``). Annotates every trial
    with its criterion, the standard error of its difference to the best and whether it is tied."""
    crit = [t["image_auroc"] + t["pixel_auroc"] for t in trials]
    best = int(np.argmax(crit))
    boots = [bootstrap_criteria(t["_samples"], n_sources, seed) for t in trials]
    for i, t in enumerate(trials):
        se = float(np.std(boots[best] - boots[i])) if i != best else 0.0
        t.update(criterion=round(crit[i], 4), difference_se=round(se, 4),
                 tied_with_best=bool(crit[best] - crit[i] <= max(TIE, NOISE_SE * se)))
    tied = [i for i, t in enumerate(trials) if t["tied_with_best"]]
    return min(tied, key=lambda i: (trials[i]["cost_gflops_at_bank_cap"], -crit[i]))


def search(data: PseudoValidation, sizes: Sequence[tuple[int, int]], long_side: int, build: Builder,
           make_extractor: ExtractorFactory, bank_size: BankRule, bit_depth: int | None,
           seed: int, latency_budget: float | None = None) -> SearchResult:
    """Prune the candidates by their estimated cost (:func:`budget_plan`; ``latency_budget`` in multiples of the
    fixed defaults' cost, default :data:`LATENCY_BUDGET`), validate the rest on the pseudo-anomalies (smoothing
    with each) and choose with :func:`select`."""
    start = time.perf_counter()
    ratio = LATENCY_BUDGET if latency_budget is None else float(latency_budget)
    candidates, plan = budget_plan(sizes, long_side, build, bank_size, ratio)
    if not candidates:  # the budget rules out even the base frame: it is still tried, and the record says so
        candidates = [Candidate(base_frame(sizes, long_side))]
        plan["note"] = "no candidate fits the budget: the base frame was used"
    cost = {r["candidate"]: r["gflops_per_image"] for r in plan["candidates"]}
    trials = []
    for candidate in candidates:
        result = evaluate_candidate(candidate, data, build, make_extractor, bank_size, bit_depth, seed)
        result["cost_gflops_at_bank_cap"] = cost.get(candidate.label(), result["gflops_per_image"])
        trials.append(result)
    chosen = select(trials, len(data.val_images), seed)
    for i, t in enumerate(trials):
        t["chosen"] = i == chosen
        del t["_samples"]
    return SearchResult(candidates[chosen], trials[chosen]["sigma"], trials, len(data.fit_images),
                        len(data.val_images), len(data.pseudo), time.perf_counter() - start, plan)

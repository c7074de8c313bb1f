"""Feature extraction and fitting of the anomaly-detection models, streaming the good images from disk in batches:
the PatchCore memory bank (feature store capped by ``feature_memory_mb``, greedy coreset), cross-fitted scores, the
PaDiM Gaussians, and raw scores of image batches by the eager model. Mixed into
:class:`~.task.AnomalyDetection`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from shopfloor.core.task import batched

from ..images import FrameInfo, decode_frame, read_frames, to_model_input
from .coreset import greedy_coreset
from .padim import Padim
from .patchcore import PatchCore
from .sampling import MapSample

log = logging.getLogger(__name__)

Extractor = Callable[[torch.Tensor], torch.Tensor]


class FeatureFitting:
    """Fitting steps of :class:`~.task.AnomalyDetection` (uses its ``config``, ``training``, ``state``,
    ``image_spec`` and ``_bank_size``)."""

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


def _joined(batches) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, maps)`` batches joined into one ``(scores [N], maps [N, H, W])``."""
    scores, maps = zip(*batches)
    return np.concatenate(scores), np.concatenate(maps)

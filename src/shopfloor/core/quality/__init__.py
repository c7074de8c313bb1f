"""Data quality and what to label next, for every application.

The generic machinery lives here and knows nothing about images or sensors: an application fills a
:class:`QualityData` (names, splits, labels, embeddings, per-item facts, a table) through the task hook
:meth:`shopfloor.core.task.Task.quality_data`, and the checks find

- exact and near duplicates, and duplicates across a train/test split (:mod:`.duplicates`, faiss);
- suspected label errors from out-of-fold predicted probabilities (:mod:`.labels`, cleanlab's confident learning);
- class balance, outliers of per-item facts (blur, exposure), mixes of size / bit depth / colour, and for tables
  constant, drifting, mostly-missing columns and duplicate rows (:mod:`.columns`);

each with what to do (:mod:`.check`), written as HTML and JSON (:mod:`.report`). :mod:`.active` ranks unlabelled
items by the value of labelling them (uncertainty with diversity).
"""

from .data import ImageFacts, QualityData, read_embedding_cache, write_embedding_cache

__all__ = ["ImageFacts", "QualityData", "read_embedding_cache", "write_embedding_cache"]

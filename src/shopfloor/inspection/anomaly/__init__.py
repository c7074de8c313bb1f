"""``anomaly-detection``: anomaly scores and defect maps, trained on good parts only.

``task`` (the task), ``patchcore`` / ``padim`` (pure, exportable detectors with their fitted state in buffers),
``coreset`` (greedy memory-bank selection), ``metrics`` (AUROC, AUPRO, threshold rules), ``report``.
"""

from .task import AnomalyDetection, AnomalyDetectionConfig, AnomalyEvaluateOptions

__all__ = ["AnomalyDetection", "AnomalyDetectionConfig", "AnomalyEvaluateOptions"]

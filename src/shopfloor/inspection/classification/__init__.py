"""``defect-classification``: a CNN sorts product-surface images into defect classes.

``task`` (the task), ``models`` (exportable classifiers), ``dataset`` (torch Dataset over image arrays),
``report`` (evaluation report and Grad-CAM overlays, from results only).
"""

from .task import DefectClassification, DefectClassificationConfig

__all__ = ["DefectClassification", "DefectClassificationConfig"]

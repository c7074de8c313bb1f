"""``fault-diagnosis``: bearing/machine condition from raw vibration segments.

``task`` (the task), ``models`` (WDCNN and sequence classifiers), ``augment`` (noise at a random SNR, scaling),
``simulator`` (seeded bearing signals for demos and tests).
"""

from .task import FaultDiagnosis, FaultDiagnosisConfig

__all__ = ["FaultDiagnosis", "FaultDiagnosisConfig"]

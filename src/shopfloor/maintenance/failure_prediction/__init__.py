"""``failure-prediction``: will this process record end in a failure, and which mode.

``task`` (the task), ``models`` (in-graph feature step, MLP, cross-fitted ensemble), ``simulator`` (seeded
records with rule-driven failure modes for demos and tests).
"""

from .task import FailurePrediction, FailurePredictionConfig

__all__ = ["FailurePrediction", "FailurePredictionConfig"]

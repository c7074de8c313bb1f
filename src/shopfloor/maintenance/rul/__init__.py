"""``rul``: remaining useful life from multi-unit sensor histories, with a calibrated interval.

``task`` (the task and its ensemble network), ``metrics`` (RMSE, NASA score, coverage), ``report`` (from
results only), ``simulator`` (seeded run-to-failure fleets for demos and tests).
"""

from .task import RemainingUsefulLife, RULConfig

__all__ = ["RULConfig", "RemainingUsefulLife"]

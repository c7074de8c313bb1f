"""``process-optimisation``: a deep-ensemble surrogate of settings -> quality, and recommendations.

Modules, one job each: ``data`` (the process table: validation and encoding), ``surrogate`` (the exported deep
ensemble and its Lightning training), ``baseline`` (gradient boosting, the yardstick), ``validation`` (grouped
cross-validation), ``recommend`` (optuna over the surrogate with an uncertainty penalty), ``report`` (report and
partial-dependence sensitivities), ``simulator`` (a built-in process with a known optimum), ``task``.
"""

from .task import ProcessOptimisation

__all__ = ["ProcessOptimisation"]

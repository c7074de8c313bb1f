"""``process-monitoring``: fault detection trained on normal operation, fault classification, contributions.

``task`` (the task), ``networks`` (the exported graph: standardisation, PCA T2/SPE, window autoencoders, the
classifier, limits as buffers), ``fitting`` (normal stretches, hold-out split, windows, PCA, control limits),
``metrics`` (detection rate, false alarms, delay), ``online`` (point-by-point scoring), ``report``.
"""

from .task import MonitoringConfig, ProcessMonitoring

__all__ = ["MonitoringConfig", "ProcessMonitoring"]

"""Process monitoring and optimisation from a plant's own process records.

Readers shared by the tasks: ``records`` (multivariate process records in time order: CSV/Parquet tables and the
Tennessee Eastman ``.dat`` files, with optional run id and fault label columns, validated at the edge);
``synthetic`` (a built-in process with injected faults for the demo and tests).

Tasks, one sub-package each:
- ``monitoring/``: ``process-monitoring``, fault detection trained on normal operation (PCA T2/SPE reference and
  a window autoencoder, control limits inside the graph), fault classification, per-variable contributions
  (:class:`ProcessMonitoring`).

May import ``shopfloor.core``; never another application package.
"""

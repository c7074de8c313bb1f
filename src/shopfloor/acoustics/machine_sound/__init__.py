"""Machine-sound anomaly detection from normal recordings only (task ``machine-sound``)."""

from .task import MachineSound

__all__ = ["MachineSound"]

"""Earlier import path of FaultDiagnosis; kept so existing scripts keep working. New code imports :mod:`shopfloor.maintenance.fault_diagnosis`."""

from shopfloor.maintenance.fault_diagnosis import *  # noqa: F401,F403
from shopfloor.maintenance.fault_diagnosis import __all__  # noqa: F401

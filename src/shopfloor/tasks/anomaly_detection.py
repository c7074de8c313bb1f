"""Earlier import path of AnomalyDetection; kept so existing scripts keep working. New code imports :mod:`shopfloor.inspection.anomaly`."""

from shopfloor.inspection.anomaly import *  # noqa: F401,F403
from shopfloor.inspection.anomaly import __all__  # noqa: F401

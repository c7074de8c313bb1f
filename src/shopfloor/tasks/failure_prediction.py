"""Earlier import path of FailurePrediction; kept so existing scripts keep working. New code imports :mod:`shopfloor.maintenance.failure_prediction`."""

from shopfloor.maintenance.failure_prediction import *  # noqa: F401,F403
from shopfloor.maintenance.failure_prediction import __all__  # noqa: F401

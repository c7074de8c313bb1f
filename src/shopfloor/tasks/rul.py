"""Earlier import path of RemainingUsefulLife; kept so existing scripts keep working. New code imports :mod:`shopfloor.maintenance.rul`."""

from shopfloor.maintenance.rul import *  # noqa: F401,F403
from shopfloor.maintenance.rul import __all__  # noqa: F401

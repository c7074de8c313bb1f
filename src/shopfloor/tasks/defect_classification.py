"""Earlier import path of DefectClassification; kept so existing scripts keep working. New code imports :mod:`shopfloor.inspection.classification`."""

from shopfloor.inspection.classification import *  # noqa: F401,F403
from shopfloor.inspection.classification import __all__  # noqa: F401

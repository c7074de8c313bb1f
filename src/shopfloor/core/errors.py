"""User-facing errors: each message says what is wrong and what to do about it.

Hierarchy (catch :class:`ShopfloorError` for all of them; the CLI prints them without a traceback)::

    ShopfloorError
    ├── DataError(ValueError)        the input data is missing, unreadable, malformed or outside the model's range
    ├── ConfigError(ValueError)      a configuration value or option is invalid
    ├── ArtifactError                a model directory is incomplete, tampered with or incompatible
    └── NotFittedError(AttributeError)   predict/evaluate/save before fit() or load()

Like scikit-learn, data and config errors are also ``ValueError`` and the not-fitted error is also an
``AttributeError``, so existing ``except ValueError`` code keeps working.
"""


class ShopfloorError(Exception):
    """Base class for errors caused by user input; the CLI prints them without a traceback."""


class DataError(ShopfloorError, ValueError):
    """The input data is missing, unreadable or malformed."""


class ConfigError(ShopfloorError, ValueError):
    """A configuration value or option is invalid."""


class ArtifactError(ShopfloorError):
    """A model directory is incomplete, tampered with or from an incompatible version."""


class NotFittedError(ShopfloorError, AttributeError):
    """The task has no model yet: call fit() or load a saved model directory first."""


class OutOfRangeWarning(UserWarning):
    """Inputs fall far outside what the model saw in training (see :mod:`shopfloor.core.ranges`)."""

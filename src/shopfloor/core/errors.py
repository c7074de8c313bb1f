"""User-facing errors: each message says what is wrong and what to do about it."""


class ShopfloorError(Exception):
    """Base class for errors caused by user input; the CLI prints them without a traceback."""


class DataError(ShopfloorError):
    """The input data is missing, unreadable or malformed."""


class ConfigError(ShopfloorError):
    """A configuration value or option is invalid."""


class ArtifactError(ShopfloorError):
    """A model directory is incomplete, tampered with or from an incompatible version."""

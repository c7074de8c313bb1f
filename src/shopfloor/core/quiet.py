"""A quiet console: library chatter is filtered where it arises, inside our calls, and ``--verbose`` brings it back.

What goes: Lightning's banners, tips and "Loading `train_dataloader`" lines (its loggers, held at WARNING while we
train) and the deprecation and exporter warnings that torch, Lightning and ONNX raise from inside our own calls.
What stays: the progress bar, the task's own summary and notes (the ``shopfloor`` logger), and every warning that
is about the user's data or settings.

``set_verbose(True)`` (the CLI's ``--verbose``, or ``SHOPFLOOR_VERBOSE=1``, which DDP worker processes inherit)
turns the filter off.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from contextlib import contextmanager
from typing import Iterator

VERBOSE_ENV = "SHOPFLOOR_VERBOSE"

# loggers whose INFO lines are banners and tips, not results
LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning")

# deprecations are filtered only when they come from these libraries (or from where our code calls them)
LIBRARY_MODULES = (r"(torch|lightning|pytorch_lightning|lightning_fabric|lightning_utilities|torchmetrics"
                   r"|onnx|onnxscript|onnxruntime|kornia|captum|shopfloor\.core)(\.|$)")

# (category, message regex) of warnings that libraries raise from inside our calls and that a user can do
# nothing about; everything else passes
LIBRARY_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (UserWarning, r"(?s).*Constant folding"),
    (UserWarning, r"(?s).*padding='same' with even kernel lengths"),
    (UserWarning, r"(?s).*does not have many workers"),
    (UserWarning, r"(?s).*deterministic"),
    (UserWarning, r"(?s).*is smaller than the logging interval"),
    (UserWarning, r"(?s).*exceeds the number of"),  # torch: "... exceeds the number of available threads"
    (UserWarning, r"(?s)Checkpoint directory .* exists and is not empty"),  # retraining into a model dir
    # lightning: frozen pretrained parts (backbones, feature extractors) stay in eval mode on purpose
    (UserWarning, r"(?s).*module\(s\) in eval mode at the start of training"),
)


def set_verbose(verbose: bool) -> None:
    """Show (``True``) or filter (``False``) library chatter from here on, in this process and its children."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"


def is_verbose() -> bool:
    """Whether library chatter is shown (``SHOPFLOOR_VERBOSE=1``)."""
    return os.environ.get(VERBOSE_ENV, "0") == "1"


_lock = threading.Lock()
_depth = {"count": 0, "levels": []}


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Filter library banners and warnings inside the block, unless verbose; restores everything after it.

    Logger levels are process-wide: nested or concurrent blocks share one quiet period (counted under a lock) and
    the levels come back when the last one ends. The warning filters follow :func:`warnings.catch_warnings`,
    which is process-wide too: warnings raised by other threads while a block is open are filtered the same way.
    """
    if is_verbose():
        yield
        return
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    with _lock:
        if _depth["count"] == 0:
            _depth["levels"] = [logger.level for logger in loggers]
            for logger in loggers:
                logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
        _depth["count"] += 1
    try:
        with warnings.catch_warnings():
            for category in (DeprecationWarning, FutureWarning):
                warnings.filterwarnings("ignore", category=category, module=LIBRARY_MODULES)
            for category, message in LIBRARY_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        with _lock:
            _depth["count"] -= 1
            if _depth["count"] == 0:
                for logger, level in zip(loggers, _depth["levels"]):
                    logger.setLevel(level)

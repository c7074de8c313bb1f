"""Data layouts of the machine-sound task.

A data folder holds WAV/FLAC clips, found recursively. Two ways to say what each clip is:

- **DCASE names** (DCASE 2022-2024 Task 2): ``section_00_source_train_normal_0000_<attributes>.wav`` gives the
  section (machine id), the domain (``source``/``target``), the label (``normal``/``anomaly``) and the attributes
  (``key_value`` pairs, e.g. ``pat_00`` or ``vel_6_loc_A``).
- **Folders**: a clip under a folder named ``normal`` (or ``good``/``ok``) is normal, under ``anomaly`` (or
  ``abnormal``/``anomalous``/``defect``/``fault``) anomalous; section and domain are then unknown.

``fit`` takes a folder of normal clips; given a folder with ``train/`` (and ``test/``) inside, it trains on
``train/``; ``evaluate`` scores ``test/`` of such a folder, else the folder itself, and needs both labels.
A clip with neither a DCASE label nor a label folder counts as normal for training and is refused by evaluate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shopfloor.core.errors import DataError

from ..audio import AUDIO_SUFFIXES, audio_files

DCASE_NAME = re.compile(r"^section_(?P<section>\d+)_(?P<domain>source|target)_(?P<split>train|test)_"
                        r"(?P<label>normal|anomaly)_(?P<index>\d+)(?:_(?P<attributes>.*))?$")
NORMAL_FOLDERS = {"normal", "good", "ok"}
ANOMALY_FOLDERS = {"anomaly", "abnormal", "anomalous", "defect", "fault"}


@dataclass(frozen=True)
class ClipInfo:
    """What a clip's name and folder say about it."""

    path: Path
    label: str | None = None  # normal | anomaly | None (unknown)
    section: str | None = None
    domain: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {"label": self.label, "section": self.section, "domain": self.domain, "attributes": self.attributes}


def parse_attributes(text: str | None) -> dict[str, str]:
    """``"pat_00_vel_6"`` -> ``{"pat": "00", "vel": "6"}``; an odd leftover is kept under ``"extra"``."""
    if not text:
        return {}
    parts = text.split("_")
    pairs = {parts[i]: parts[i + 1] for i in range(0, len(parts) - 1, 2)}
    if len(parts) % 2:
        pairs["extra"] = parts[-1]
    return pairs


def describe(path: Path, root: Path) -> ClipInfo:
    """A clip's :class:`ClipInfo` from its DCASE name, else from the folders between ``root`` and it."""
    match = DCASE_NAME.match(path.stem)
    if match:
        return ClipInfo(path, match["label"], match["section"], match["domain"], parse_attributes(match["attributes"]))
    folders = {part.lower() for part in path.relative_to(root).parts[:-1]}
    label = "anomaly" if folders & ANOMALY_FOLDERS else "normal" if folders & NORMAL_FOLDERS else None
    return ClipInfo(path, label)


def list_clips(data: str | Path, split: str) -> tuple[Path, list[ClipInfo]]:
    """The clips of ``split`` ("train" or "test") under ``data`` (see module docstring), described."""
    root = Path(data)
    if not root.exists():
        raise DataError(f"{root} does not exist; give a folder of {'/'.join(AUDIO_SUFFIXES)} clips")
    if root.is_file():
        raise DataError(f"{root} is a file; give a folder of {'/'.join(AUDIO_SUFFIXES)} clips (see the layouts in "
                        "`shopfloor train machine-sound --help`)")
    if (root / split).is_dir():
        root = root / split
    files = audio_files(root)
    if not files:
        raise DataError(f"{root} holds no {'/'.join(AUDIO_SUFFIXES)} files; put the clips there (any sub-folders)")
    return root, [describe(p, root) for p in files]

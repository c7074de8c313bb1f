"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def shared_datasets_dir() -> Path:
    """Where the real datasets live: $SHOPFLOOR_DATASETS or ../shared/datasets beside the project."""
    env = os.environ.get("SHOPFLOOR_DATASETS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture
def shared_dataset():
    """Return a function name -> path that skips the test when that dataset is absent."""

    def get(name: str) -> Path:
        path = shared_datasets_dir() / name
        if not path.exists():
            pytest.skip(f"real dataset {name} not found at {path} (set SHOPFLOOR_DATASETS to its parent folder)")
        return path

    return get

"""Helpers importable from any test module (no side effects on import)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def datasets_dir() -> Path:
    """Where the real public datasets live (DRIFTLOOP_DATASETS, default ../shared/datasets)."""
    return Path(
        os.environ.get("DRIFTLOOP_DATASETS", REPO_ROOT.parent / "shared" / "datasets")
    ).resolve()


def real_dataset(name: str) -> Path:
    """Path of a real dataset file, or skip the test saying where it was looked for."""
    path = datasets_dir() / name
    if not path.exists():
        pytest.skip(f"real dataset {name} not found at {path} (set DRIFTLOOP_DATASETS)")
    return path

"""Fixtures for the ingestion tests: a run folder and the ingest -> validate chain."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingestion import snapshot_sources, validate_sources


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, bytes], Path]:
    """Write raw bytes to <tmp>/incoming/<name> (the 'upstream' location)."""

    def _write(name: str, data: bytes) -> Path:
        path = tmp_path / "incoming" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    return _write


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def ingest_validate(run_dir: Path) -> Callable[..., dict]:
    """snapshot_sources then validate_sources, chained as the training DAG chains them."""

    def _run(sources: list[dict], **kwargs: Any) -> dict:
        manifest = snapshot_sources(sources, str(run_dir))
        return validate_sources(manifest, str(run_dir), **kwargs)

    return _run

"""The container-stack tests run only under `make test-compose` (they need Docker,
build images and take many minutes); a plain `make test` reports them skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("DRIFTLOOP_TEST_COMPOSE") == "1":
        return
    skip = pytest.mark.skip(reason="container stack: run by `make test-compose` (needs Docker)")
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(skip)

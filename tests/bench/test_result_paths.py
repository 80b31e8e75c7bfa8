"""Committed benchmark results carry no absolute path of the machine that measured them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.quality_bench import REPO_ROOT, repo_relative

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
# an absolute path: "/a/b" at the start of a value or after a separator, sqlite:////..., file:///
ABSOLUTE = re.compile(r"(^|[\s:=('\"])/(?:[A-Za-z0-9_.-]+/)+|sqlite:////|file:///")


def _strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")
    elif isinstance(value, str):
        yield where, value


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_result_files_hold_no_absolute_paths(path: Path) -> None:
    found = [
        (where, text)
        for where, text in _strings(json.loads(path.read_text()))
        if ABSOLUTE.search(text)
    ]
    assert not found, f"{path.name}: absolute paths {found[:3]}"


def test_repo_relative_cuts_the_checkout_path() -> None:
    uri = f"sqlite:///{REPO_ROOT}/.driftloop/mlflow/mlflow.db"
    assert repo_relative(uri) == "sqlite:///.driftloop/mlflow/mlflow.db"
    assert not ABSOLUTE.search(repo_relative(uri))

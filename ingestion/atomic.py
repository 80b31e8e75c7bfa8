"""Write-then-rename, so a reader never sees a half-written file.

Every output the next pipeline step reads (manifest, accepted and quarantine
Parquet, report) is written to a temporary name in the same folder and moved
into place with `os.replace`, which is atomic on one filesystem. A crash
leaves at most a `.tmp-*` file that nothing reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it onto `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Pretty JSON (a human reads manifests and reports), atomically."""
    with atomic_target(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, ensure_ascii=False) + "\n")

"""`python -m serving` hands its settings to uvicorn (no server started here)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import uvicorn

import serving.__main__ as entry


@pytest.mark.parametrize(("value", "expected"), [(None, 60), ("17", 17)])
def test_several_workers_get_the_configured_worker_ping_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None, expected: int
) -> None:
    """Uvicorn's default 5 s ping timeout restarts workers still importing on a busy
    machine, forever (seen in the container stack): the setting must reach uvicorn."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    monkeypatch.setenv("DRIFTLOOP_WORKERS", "2")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # keep pytest's handlers
    if value is None:
        monkeypatch.delenv("DRIFTLOOP_WORKER_HEALTHCHECK_TIMEOUT_SECONDS", raising=False)
    else:
        monkeypatch.setenv("DRIFTLOOP_WORKER_HEALTHCHECK_TIMEOUT_SECONDS", value)
    entry.main()
    assert len(calls) == 1
    assert calls[0]["workers"] == 2
    assert calls[0]["timeout_worker_healthcheck"] == expected

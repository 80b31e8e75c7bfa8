"""Parallel `tune` tasks open one new SQLite study database at the same moment.

Each family's study runs in its own process; the first time they meet a fresh
database, Optuna creates its schema on open. Without serialising that, one of
the processes fails with `table studies already exists` (seen in the embedded
stack: a tune task failed its first attempt). Processes here are released
together by a barrier, several rounds, each on a new database.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

ROUNDS = 4
PROCESSES = 6


def _open(url: str, barrier: Any, errors: Any) -> None:
    from training.search_config import open_storage

    barrier.wait()
    try:
        open_storage(url)
    except Exception as exc:  # reported to the parent
        errors.put(repr(exc)[:300])


def test_processes_opening_a_new_sqlite_study_db_together_all_succeed(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    for round_ in range(ROUNDS):
        url = f"sqlite:///{tmp_path / f'studies-{round_}.db'}"
        barrier = ctx.Barrier(PROCESSES)
        procs = [ctx.Process(target=_open, args=(url, barrier, errors)) for _ in range(PROCESSES)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=240)
            assert proc.exitcode == 0
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []

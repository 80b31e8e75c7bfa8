"""bench.serving_bench: target verdicts from measured rows, memory of a real process tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.serving_bench import Processes, batch_totals, evaluate_targets, process_memory


def _row(server: str, workers: int, conc: int, rps: float, p50: float, p99: float) -> dict:
    return {
        "server": server,
        "workers": workers,
        "concurrency": conc,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "share_of_limit": rps / (workers * 1000.0),
    }


def _report(w1_rps: float, w2_rps: float) -> dict:
    return {
        "workers": [1, 2],
        "scorer_limit": {"single_ms": 3.0, "batched_limit_rows_per_s": 1000.0},
        "results": [
            _row("driftloop", 1, 32, w1_rps, 30, 50),
            _row("driftloop", 1, 1, 300, 3.5, 5),
            _row("mlflow", 1, 32, 100, 300, 500),
            _row("bentoml", 1, 32, 300, 100, 300),
            _row("driftloop", 2, 32, w2_rps, 20, 40),
            _row("mlflow", 2, 32, 200, 150, 400),
            _row("bentoml", 2, 32, 400, 80, 250),
        ],
        "startup_seconds_by_workers": {
            "driftloop": {1: {"first": 5, "all_workers": 5}, 2: {"first": 6, "all_workers": 9}},
            "bentoml": {1: {"first": 6, "all_workers": 6}, 2: {"first": 7, "all_workers": 8}},
        },
    }


def test_targets_are_judged_from_the_rows() -> None:
    verdicts = {t["target"]: t for t in evaluate_targets(_report(1000.0, 1800.0))}
    assert verdicts["w1 c32 driftloop/mlflow req/s"]["value"] == 10.0
    assert verdicts["w1 c32 driftloop/mlflow req/s"]["met"] is True
    assert verdicts["w1 c32 driftloop/bentoml req/s"]["met"] is True  # 3.33x
    assert verdicts["w1 c32 share of the batched scorer limit"]["met"] is True  # 100 %
    assert verdicts["w1 c1 p50 ms (<= single-call limit + 1)"]["met"] is True  # 3.5 <= 4
    assert verdicts["w2/w1 driftloop c32 req/s"]["value"] == 1.8
    assert verdicts["w2 c32 driftloop/mlflow req/s"]["met"] is True  # 9x
    assert verdicts["w2 c32 p99 driftloop ms (<= mlflow p99 / 5)"]["met"] is True  # 40 <= 80
    assert verdicts["w2 start-up, all workers ready, s (<= bentoml's)"]["met"] is False  # 9 > 8


def test_targets_missed_are_reported_as_missed() -> None:
    verdicts = {t["target"]: t for t in evaluate_targets(_report(500.0, 600.0))}
    assert verdicts["w1 c32 driftloop/mlflow req/s"]["met"] is False
    assert verdicts["w1 c32 share of the batched scorer limit"]["met"] is False
    assert verdicts["w2/w1 driftloop c32 req/s"]["met"] is False


def test_memory_lists_each_worker_of_a_process_tree(tmp_path: Path) -> None:
    # A parent that forks two sleeping children: the two leaves are the workers.
    code = (
        "import subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])"
        " for _ in range(2)]\n"
        "time.sleep(30)\n"
    )
    procs = Processes()
    item = procs.start("tree", [sys.executable, "-c", code], {}, tmp_path)
    try:
        for _ in range(100):
            memory = process_memory(item)
            if memory.get("processes") == 3:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert memory["processes"] == 3
        assert len(memory["worker_rss_mb"]) == 2
        assert all(rss > 1 for rss in memory["worker_rss_mb"])
        assert memory["total_rss_mb"] >= sum(memory["worker_rss_mb"])
    finally:
        procs.stop_all()


def test_batch_totals_add_up_every_worker_of_one_use_case() -> None:
    metrics = "\n".join(
        [
            "# HELP driftloop_batch_size_rows Reviews per model call.",
            'driftloop_batch_size_rows_bucket{le="8.0",use_case="reviews"} 3.0',
            'driftloop_batch_size_rows_sum{pid="11",use_case="reviews"} 96.0',
            'driftloop_batch_size_rows_count{pid="11",use_case="reviews"} 4.0',
            'driftloop_batch_size_rows_sum{pid="12",use_case="reviews"} 64.0',
            'driftloop_batch_size_rows_count{pid="12",use_case="reviews"} 2.0',
            'driftloop_batch_size_rows_sum{use_case="credit"} 5.0',
            'driftloop_batch_size_rows_count{use_case="credit"} 5.0',
        ]
    )

    assert batch_totals(metrics) == (160.0, 6.0)
    assert batch_totals(metrics, "credit") == (5.0, 5.0)

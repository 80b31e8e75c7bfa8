"""bench.spark_events and bench.features_profile: event log, slot timeline, py-spy stacks, CPU."""

from __future__ import annotations

import json
from pathlib import Path

from bench.features_profile import bounds, cpu_delta, process_group, thread_kind
from bench.spark_events import (
    classify_stack,
    occupancy,
    process_kind,
    slot_timeline,
    stage_metrics,
    worker_shares,
)


def _task(stage: int, launch: int, finish: int, cpu_ns: int, python_ms: int) -> dict[str, object]:
    return {
        "Event": "SparkListenerTaskEnd",
        "Stage ID": stage,
        "Task Info": {
            "Launch Time": launch,
            "Finish Time": finish,
            "Accumulables": [
                {"Name": "time to execute Python code", "Update": python_ms},
                {"Name": "number of output rows", "Update": 7},
            ],
        },
        "Task Metrics": {
            "Executor Run Time": finish - launch,
            "Executor CPU Time": cpu_ns,
            "JVM GC Time": 10,
            "Shuffle Write Metrics": {"Shuffle Bytes Written": 2**20},
        },
    }


def _log(folder: Path) -> Path:
    """A rolling event log folder as Spark 4 writes it, split over two files."""
    log = folder / "eventlog_v2_local-1"
    log.mkdir(parents=True)
    events = [
        {"Event": "SparkListenerStageSubmitted", "Stage Info": {"Stage ID": 0, "Stage Name": "a"}},
        _task(0, 900, 950, 10**9, 0),  # before the window: left out
        _task(0, 1000, 3000, 10**9, 0),
        _task(0, 1000, 2000, 10**9, 0),
        {"Event": "SparkListenerStageSubmitted", "Stage Info": {"Stage ID": 1, "Stage Name": "b"}},
        _task(1, 4000, 6000, 2 * 10**9, 1500),
    ]
    lines = [json.dumps(e) for e in events]
    (log / "events_1_local-1").write_text("\n".join(lines[:3]) + "\n")
    (log / "events_2_local-1").write_text("\n".join(lines[3:]) + "\n")
    return log


def test_stage_metrics_sum_the_window_tasks_per_stage(tmp_path: Path) -> None:
    stages = stage_metrics(_log(tmp_path), 1000, 6000)
    assert [(s["stage"], s["name"], s["tasks"]) for s in stages] == [(0, "a", 2), (1, "b", 1)]
    assert stages[0]["cpu_s"] == 2.0 and stages[0]["run_s"] == 3.0
    assert stages[0]["longest_task_s"] == 2.0 and stages[0]["shortest_task_s"] == 1.0
    assert stages[0]["shuffle_write_mb"] == 2.0 and stages[0]["gc_s"] == 0.02
    assert stages[1]["sql:time to execute Python code"] == 1500.0
    assert "sql:number of output rows" not in stages[1]


def test_slot_timeline_counts_seconds_with_no_one_or_two_tasks(tmp_path: Path) -> None:
    slots = slot_timeline(_log(tmp_path), 1000, 6000, slots=2)
    # 1-2 s: two tasks; 2-3 s: one; 3-4 s: none; 4-6 s: one. 5 s window, 2 slots.
    assert slots["seconds_with_n_tasks"] == {"0": 1.0, "1": 3.0, "2": 1.0}
    assert slots["busy_share"] == 0.5 and slots["idle_slot_seconds"] == 5.0


def test_occupancy_caps_running_tasks_at_the_slots() -> None:
    edges = [(0.0, 1), (0.0, 1), (0.0, 1), (1000.0, -1), (1000.0, -1), (1000.0, -1)]
    assert occupancy(edges, 0.0, 2000.0, slots=2)["seconds_with_n_tasks"] == {
        "0": 1.0,
        "1": 0.0,
        "2": 1.0,
    }


DRIVER = 'process 1:"python -m bench.features_profile --child spark"'
JVM = 'process 2:"java org.apache.spark.deploy.SparkSubmit"'
DAEMON = 'process 3:"python -m pyspark.daemon pyspark.worker"'
WORKER = 'process 4:"python -m pyspark.daemon pyspark.worker"'


def test_process_kind_tells_a_forked_worker_from_its_daemon() -> None:
    assert process_kind([DRIVER]) == "driver"
    assert process_kind([DRIVER, JVM, DAEMON]) == "daemon"
    assert process_kind([DRIVER, JVM, DAEMON, WORKER]) == "worker"
    assert process_kind([DRIVER, JVM]) == "other"


def test_the_innermost_known_frame_decides_a_stack() -> None:
    features = "build_features (features/reviews.py:150)"
    assert classify_stack(
        ["main (worker.py:1)", features, "_signals (features/reviews.py:100)"]
    ) == ("build_features")
    # pandas called by build_features is build_features; Arrow conversion is not.
    assert classify_stack(["main (worker.py:1)", features, "array (numpy/x.py:3)"]) == (
        "build_features"
    )
    convert = "PandasToArrowConversion.convert (conversion.py:474)"
    assert classify_stack(["dump_stream (serializers.py:73)", convert]) == "pandas_to_arrow"
    assert classify_stack(["main (worker.py:1)", "_find_and_load (<frozen importlib._b>:1)"]) == (
        "imports"
    )
    assert classify_stack(["main (worker.py:1)"]) == "other"


def test_worker_shares_count_only_worker_samples() -> None:
    stack = f"{DRIVER};{JVM};{DAEMON};{WORKER};thread 9;main (worker.py:1)"
    raw = "\n".join(
        [
            f"{stack};build_features (features/reviews.py:150) 30",
            f"{stack};load_stream (serializers.py:87) 10",
            f"{DRIVER};featurize (jobs/spark/featurize.py:9) 50",
        ]
    )
    shares = worker_shares(raw)
    assert shares["samples_per_process"] == {"worker": 40, "driver": 50}
    assert shares["worker_share"] == {"build_features": 0.75, "ipc_read": 0.25}


def test_process_groups_and_cpu_delta_count_dead_children_for_their_parent() -> None:
    cmd = {1: "python -m x", 2: "/usr/bin/java -cp", 3: "python -m pyspark.daemon", 4: ""}
    cmd[4] = cmd[3]
    parents = {2: 1, 3: 2, 4: 3}
    groups = [process_group(pid, 1, parents, cmd) for pid in (1, 2, 3, 4)]
    assert groups == ["driver_python", "jvm", "python_daemon", "python_workers"]
    before = {
        2: {"group": "jvm", "own": 5.0, "children": 0.0, "threads": {"jit_compiler": 4.0}},
        3: {"group": "python_daemon", "own": 1.0, "children": 0.0},
    }
    after = {
        2: {"group": "jvm", "own": 9.0, "children": 0.0, "threads": {"jit_compiler": 6.0}},
        3: {"group": "python_daemon", "own": 1.5, "children": 3.0},  # a worker exited
        4: {"group": "python_workers", "own": 7.0, "children": 0.0},
    }
    delta = cpu_delta(before, after)
    assert delta["cpu_seconds"] == {"jvm": 4.0, "python_daemon": 3.5, "python_workers": 7.0}
    assert delta["total_cpu_seconds"] == 14.5
    assert delta["jvm_thread_cpu_seconds"] == {"jit_compiler": 2.0}


def test_thread_kinds_and_the_speedup_bound() -> None:
    assert thread_kind("C2 CompilerThre") == "jit_compiler"
    assert thread_kind("GC Thread#1") == "gc" and thread_kind("G1 Conc#0") == "gc"
    assert thread_kind("Executor task l") == "task_threads"
    assert thread_kind("Thread-12") == "Thread"
    figures = bounds(
        {"cpu_seconds": 100.0}, {"total_cpu_seconds": 125.0, "slots": {"busy_share": 0.8}}, 2
    )
    assert figures["best_speedup_from_cpu"] == 1.6 and figures["extra_cpu_seconds"] == 25.0
    assert figures["best_speedup_with_slot_idle"] == 1.28

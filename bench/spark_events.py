"""Spark's event log and py-spy's samples, reduced to where a job's time went.

Spark writes one JSON event per line (`spark.eventLog.enabled`). A task's end carries its
metrics (run time, CPU time, GC, shuffle bytes) and the SQL metrics it updated (time in
Python, bytes sent to Python); from the tasks' launch and finish times follows how long each
of the executor's task slots had nothing to run. py-spy's `raw` output (one collapsed stack
and its sample count a line) is split by what the Python workers were doing.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# SQL metrics (task accumulables) worth keeping, by the name Spark gives them.
SQL_METRICS = (
    "time to execute Python code",
    "time to run Python workers",
    "time to start Python workers",
    "time to initialize Python workers",
    "data sent to Python workers",
    "data returned from Python workers",
    "scan time",
    "duration",
    "sort time",
    "peak memory",
    "time in aggregation build",
    "task commit time",
    "job commit time",
)


def event_files(log: Path) -> list[Path]:
    """The files of one application's log: itself, or a rolling log folder's `events_N_*`."""
    if not log.is_dir():
        return [log]
    parts = [p for p in log.iterdir() if p.name.startswith("events_")]
    return sorted(parts, key=lambda p: int(p.name.split("_")[1]))


def _events(log: Path) -> Iterator[dict[str, Any]]:
    for part in event_files(log):
        with part.open() as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)


def tasks_in(log: Path, start_ms: float, end_ms: float) -> list[dict[str, Any]]:
    """The finished tasks launched within [start_ms, end_ms], with their stage's name."""
    names: dict[int, str] = {}
    tasks = []
    for event in _events(log):
        kind = event.get("Event")
        if kind == "SparkListenerStageSubmitted":
            info = event["Stage Info"]
            names[info["Stage ID"]] = info["Stage Name"]
        elif kind == "SparkListenerTaskEnd":
            info = event["Task Info"]
            if start_ms <= info["Launch Time"] <= end_ms:
                tasks.append({**event, "Stage Name": names.get(event["Stage ID"], "")})
    return tasks


def _task_figures(task: dict[str, Any]) -> dict[str, float]:
    metrics = task.get("Task Metrics") or {}
    read = metrics.get("Shuffle Read Metrics") or {}
    write = metrics.get("Shuffle Write Metrics") or {}
    out: defaultdict[str, float] = defaultdict(float)
    out.update(
        {
            "run_s": metrics.get("Executor Run Time", 0) / 1e3,
            "cpu_s": metrics.get("Executor CPU Time", 0) / 1e9,
            "gc_s": metrics.get("JVM GC Time", 0) / 1e3,
            "deserialize_s": metrics.get("Executor Deserialize Time", 0) / 1e3,
            "shuffle_read_mb": (read.get("Remote Bytes Read", 0) + read.get("Local Bytes Read", 0))
            / 2**20,
            "shuffle_write_mb": write.get("Shuffle Bytes Written", 0) / 2**20,
            "shuffle_write_s": write.get("Shuffle Write Time", 0) / 1e9,
            "input_mb": (metrics.get("Input Metrics") or {}).get("Bytes Read", 0) / 2**20,
            "output_mb": (metrics.get("Output Metrics") or {}).get("Bytes Written", 0) / 2**20,
            "memory_spilled_mb": metrics.get("Memory Bytes Spilled", 0) / 2**20,
            "disk_spilled_mb": metrics.get("Disk Bytes Spilled", 0) / 2**20,
        }
    )
    for item in task["Task Info"].get("Accumulables", []):
        name = item.get("Name")
        if name in SQL_METRICS and isinstance(item.get("Update"), int | float | str):
            try:
                out[f"sql:{name}"] += float(item["Update"])
            except ValueError:
                continue
    return out


def stage_metrics(log: Path, start_ms: float, end_ms: float) -> list[dict[str, Any]]:
    """Per stage of the window: tasks, their summed metrics, the longest and shortest task."""
    stages: dict[int, dict[str, Any]] = {}
    for task in tasks_in(log, start_ms, end_ms):
        stage = stages.setdefault(
            task["Stage ID"],
            {
                "stage": task["Stage ID"],
                "name": task["Stage Name"],
                "tasks": 0,
                "sums": defaultdict(float),
            },
        )
        info = task["Task Info"]
        duration = (info["Finish Time"] - info["Launch Time"]) / 1e3
        stage["tasks"] += 1
        for key, value in _task_figures(task).items():
            stage["sums"][key] += value
        stage["sums"]["task_wall_s"] += duration
        stage.setdefault("durations", []).append(duration)
    out = []
    for stage in sorted(stages.values(), key=lambda s: s["stage"]):
        durations = stage.pop("durations")
        sums = {k: round(v, 3) for k, v in sorted(stage.pop("sums").items()) if v}
        out.append(
            {**stage, **sums, "longest_task_s": max(durations), "shortest_task_s": min(durations)}
        )
    return out


def slot_timeline(log: Path, start_ms: float, end_ms: float, slots: int) -> dict[str, Any]:
    """How many of `slots` task slots were busy over [start_ms, end_ms], as seconds per count."""
    edges: list[tuple[float, int]] = []
    for task in tasks_in(log, start_ms, end_ms):
        info = task["Task Info"]
        edges.append((max(info["Launch Time"], start_ms), 1))
        edges.append((min(info["Finish Time"], end_ms), -1))
    return occupancy(edges, start_ms, end_ms, slots)


def occupancy(
    edges: list[tuple[float, int]], start_ms: float, end_ms: float, slots: int
) -> dict[str, Any]:
    """Seconds with 0, 1, ... tasks running, and the share of slot time that had a task."""
    seconds: defaultdict[int, float] = defaultdict(float)
    running, at = 0, start_ms
    for when, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        seconds[min(running, slots)] += (when - at) / 1e3
        running += step
        at = when
    seconds[min(running, slots)] += (end_ms - at) / 1e3
    window = (end_ms - start_ms) / 1e3
    busy = sum(count * s for count, s in seconds.items())
    return {
        "window_s": round(window, 3),
        "seconds_with_n_tasks": {str(n): round(seconds[n], 3) for n in range(slots + 1)},
        "busy_share": round(busy / (slots * window), 4) if window > 0 else 0.0,
        "idle_slot_seconds": round(slots * window - busy, 3),
    }


# ---- py-spy ---------------------------------------------------------------------------------------

# (category, test on one frame "function (file:line)"), checked from the innermost frame out,
# so pandas work called by build_features counts as build_features only if nothing inner
# matched first: the first frame out from the leaf that matches decides.
FRAME_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("imports", ("<frozen importlib", "<frozen zipimport>")),
    ("build_features", ("features/reviews.py", "features/credit.py")),
    ("feature_batches_glue", ("jobs/spark/feature_batches.py",)),
    ("arrow_to_pandas", ("ArrowArrayToPandas", "arrow_to_pandas", "to_pandas")),
    ("pandas_to_arrow", ("PandasToArrow", "_create_batch", "_create_array", "from_pandas")),
    ("ipc_read", ("load_stream", "read_next_batch", "read_int", "readinto", "read_with_length")),
    ("ipc_write", ("dump_stream", "write_batch", "flush")),
)


def classify_stack(frames: list[str]) -> str:
    """The category of one collapsed stack (root first) of a Python worker."""
    for frame in reversed(frames):
        for category, needles in FRAME_RULES:
            if any(needle in frame for needle in needles):
                return category
    return "other"


def process_kind(chain: list[str]) -> str:
    """driver, daemon or worker, from the `process PID:"cmdline"` frames, outermost first.

    With `--subprocesses` py-spy prefixes a stack with the chain of processes down to the one
    sampled; Spark's daemon forks the workers, so a worker is a daemon below a daemon.
    """
    if not chain:
        return "driver"
    if "pyspark.daemon" not in chain[-1]:
        return "driver" if len(chain) == 1 else "other"
    below_daemon = len(chain) > 1 and "pyspark.daemon" in chain[-2]
    return "worker" if below_daemon else "daemon"


def worker_shares(raw: str) -> dict[str, Any]:
    """Samples per process kind and the workers' samples per category (py-spy `raw` format)."""
    per_process: Counter[str] = Counter()
    per_category: Counter[str] = Counter()
    leaves: dict[str, Counter[str]] = defaultdict(Counter)
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        kind = process_kind([f for f in frames if f.startswith("process ")])
        per_process[kind] += count
        if kind != "worker":
            continue
        body = [f for f in frames if not f.startswith(("process ", "thread "))]
        category = classify_stack(body)
        per_category[category] += count
        leaves[category][body[-1] if body else "?"] += count
    total = sum(per_category.values())
    return {
        "samples_per_process": dict(per_process),
        "worker_samples": total,
        "worker_share": {name: round(n / total, 4) for name, n in per_category.most_common()}
        if total
        else {},
        "top_leaf_frames": {
            name: [[frame, n] for frame, n in counter.most_common(5)]
            for name, counter in leaves.items()
        },
    }

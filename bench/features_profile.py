"""Where the features benchmark's time goes, in measures a busy machine does not distort.

    python -m bench.features_profile [--rows 100000] [--input PATH] [--py-spy] [--conf K=V ...]

Wall-clock speed-ups move with whatever else runs on the machine; CPU seconds and Spark's own
task metrics barely do. For the same input as `bench.features_bench` this runs:

- `pandas`: the one-process run, with the CPU seconds (user + system) of the job itself;
- `spark`: the featurize job on `local[2]`, with the CPU seconds of each part of its process
  tree over the job only (start-up excluded): the driver JVM (which runs the tasks), the
  Python workers (forked by `pyspark.daemon`), the daemon and the driver's Python; plus
  Spark's event log, parsed per stage (task run and CPU time, GC, shuffle bytes, time in
  Python) and into a timeline of the two task slots: how long a slot had no task (stage
  barriers, stragglers, driver-side work between jobs).

From those: the best speed-up two cores could give (pandas CPU-s / (Spark CPU-s / 2)), and
how much of the gap to the ideal 2x is extra CPU work and how much is idle slots. `--py-spy`
also samples the Python processes with py-spy (needs the `py-spy` binary) and splits the
workers' samples into Arrow -> pandas, `build_features`, pandas -> Arrow, IPC and the rest.

Prints one JSON report (and writes it with `--output`); it never touches bench/results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from bench.features_bench import REPO_ROOT, SPARK_CONF, _env, build_input, feature_hash
from bench.spark_events import slot_timeline, stage_metrics, worker_shares

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---- CPU seconds of a process tree ---------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, own CPU-s, CPU-s of waited-for children) from /proc, None once gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    # Fields after the name: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return int(fields[1]), (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def process_group(pid: int, root: int, parents: dict[int, int], cmdlines: dict[int, str]) -> str:
    """Which part of a Spark run `pid` is: driver_python, jvm, python_daemon, python_workers."""
    if pid == root:
        return "driver_python"
    cmd = cmdlines.get(pid, "")
    if "java" in cmd.split(" ", 1)[0]:
        return "jvm"
    if "pyspark.daemon" in cmd:
        # The daemon forks the workers: same command line, the daemon as parent.
        parent_cmd = cmdlines.get(parents.get(pid, 0), "")
        return "python_workers" if "pyspark.daemon" in parent_cmd else "python_daemon"
    return "other"


def tree_cpu(root: int) -> dict[int, dict[str, Any]]:
    """Every live process under `root` (itself included): group, own and children's CPU-s."""
    parents: dict[int, int] = {}
    stats: dict[int, tuple[float, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is not None:
            parents[int(entry.name)] = stat[0]
            stats[int(entry.name)] = (stat[1], stat[2])
    members = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in members and pid not in members:
                members.add(pid)
                grew = True
    cmdlines = {pid: _cmdline(pid) for pid in members}
    out: dict[int, dict[str, Any]] = {}
    for pid in members:
        if pid not in stats:
            continue
        group = process_group(pid, root, parents, cmdlines)
        out[pid] = {"group": group, "own": stats[pid][0], "children": stats[pid][1]}
        if group == "jvm":
            out[pid]["threads"] = thread_cpu(pid)
    return out


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU-s of a process's live threads by name, digits dropped ("GC Thread#0" -> "GC Thread#")."""
    out: defaultdict[str, float] = defaultdict(float)
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            comm = (task / "comm").read_text().strip()
            text = (task / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        out[thread_kind(comm)] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return dict(out)


def thread_kind(name: str) -> str:
    """A JVM thread's name reduced to its kind: JIT, GC, task, or the name without digits."""
    if "Compiler" in name:
        return "jit_compiler"
    if name.startswith(("GC Thread", "G1 ")) or "GC" in name:
        return "gc"
    if name.startswith("Executor task"):
        return "task_threads"
    return "".join(ch for ch in name if not ch.isdigit()).strip(" #-") or "?"


def cpu_delta(
    before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """CPU-s per group between two snapshots; a process's dead children count for it."""
    groups: defaultdict[str, float] = defaultdict(float)
    processes: Counter[str] = Counter()
    for pid, now in after.items():
        then = before.get(pid, {"own": 0.0, "children": 0.0})
        groups[now["group"]] += (now["own"] - then["own"]) + (now["children"] - then["children"])
        processes[now["group"]] += 1
    threads: defaultdict[str, float] = defaultdict(float)
    for pid, now in after.items():
        if now["group"] == "jvm":
            earlier = before.get(pid, {}).get("threads", {})
            for name, value in now.get("threads", {}).items():
                threads[name] += value - earlier.get(name, 0.0)
    ranked = sorted(threads.items(), key=lambda item: -item[1])
    jvm_threads = {k: round(v, 2) for k, v in ranked if abs(v) >= 0.05}
    return {
        "cpu_seconds": {name: round(value, 2) for name, value in sorted(groups.items())},
        "jvm_thread_cpu_seconds": jvm_threads,
        "total_cpu_seconds": round(sum(groups.values()), 2),
        "processes": dict(sorted(processes.items())),
    }


# ---- the runs (each in a child process) ----------------------------------------------------------


def child_pandas(input_path: Path, output: Path) -> dict[str, Any]:
    """bench.features_bench's pandas run, step by step, with the CPU seconds of the job alone."""
    from bench.features_bench import LABEL, TEXT
    from contracts.reviews import ROW_ID
    from features.reviews import build_features

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    marks = [(cpu(), time.perf_counter())]
    raw = pd.read_parquet(input_path)
    marks.append((cpu(), time.perf_counter()))
    features = build_features(raw, text_col=TEXT)
    marks.append((cpu(), time.perf_counter()))
    ids = [hashlib.sha256(t.encode()).hexdigest()[:16] for t in raw[TEXT]]
    frame = pd.concat([pd.DataFrame({ROW_ID: ids, LABEL: raw[LABEL]}), features], axis=1)
    output.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(output / "part-0.parquet", index=False)
    marks.append((cpu(), time.perf_counter()))
    steps = ("read", "build_features", "ids_and_write")
    return {
        "rows": len(frame),
        "job_seconds": round(marks[-1][1] - marks[0][1], 3),
        "cpu_seconds": round(marks[-1][0] - marks[0][0], 2),
        "cpu_seconds_per_step": {
            step: round(marks[i + 1][0] - marks[i][0], 2) for i, step in enumerate(steps)
        },
        "hash": feature_hash(frame),
    }


def child_spark(input_path: Path, output: Path, master: str) -> dict[str, Any]:
    """The featurize job; CPU-s of its process tree over the job alone, and the job's window."""
    from jobs.spark.featurize import featurize, read_features
    from jobs.spark.session import build_session

    spark = build_session("driftloop-features-profile", master)
    spark.sparkContext.parallelize(range(64), 8).map(lambda x: x).count()
    root = os.getpid()
    before = tree_cpu(root)
    started_ms = time.time() * 1000
    started = time.perf_counter()
    stats = featurize(spark, str(input_path), str(output), label_column="label")
    wall = time.perf_counter() - started
    finished_ms = time.time() * 1000
    after = tree_cpu(root)
    conf = {key: spark.conf.get(key) for key in _CONF_KEYS}
    spark.stop()
    return {
        "rows": int(stats["rows_written"]),
        "job_seconds": round(wall, 3),
        "window_ms": [started_ms, finished_ms],
        "conf": conf,
        **cpu_delta(before, after),
        "hash": feature_hash(read_features(output)),
    }


_CONF_KEYS = (
    "spark.sql.shuffle.partitions",
    "spark.sql.execution.arrow.maxRecordsPerBatch",
    "spark.sql.files.maxPartitionBytes",
)


def _run(argv: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    with log.open("wb") as handle:
        done = subprocess.run(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=handle)
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed; see {log}:\n{log.read_text(errors='replace')[-3000:]}")
    # py-spy, when it wraps the run, prints its own lines after the child's JSON one.
    lines = [x for x in done.stdout.decode().splitlines() if x.startswith("{")]
    return dict(json.loads(lines[-1]))


def profile(
    work: Path, input_path: Path, conf: dict[str, str], *, pyspy: bool, pandas: bool
) -> dict[str, Any]:
    """Both runs and the derived figures."""
    child = [sys.executable, "-m", "bench.features_profile", "--input", str(input_path)]
    report: dict[str, Any] = {}
    if pandas:
        report["pandas"] = _run(
            [*child, "--child", "pandas", "--child-output", str(work / "out-pandas")],
            _env({}),
            work / "pandas.log",
        )
    events = work / "events"
    events.mkdir(exist_ok=True)
    spark_conf = {
        **SPARK_CONF,
        **conf,
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": events.as_uri(),
        "spark.eventLog.compress": "false",
    }
    argv = [*child, "--child", "spark", "--child-output", str(work / "out-spark")]
    argv += ["--master", "local[2]"]
    flame = work / "py-spy.txt"
    if pyspy:
        binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        argv = [binary, "record", "--subprocesses", "--nonblocking", "--format", "raw"]
        argv += ["--rate", "50", "--output", str(flame), "--", *child, "--child", "spark"]
        argv += ["--child-output", str(work / "out-spark"), "--master", "local[2]"]
    spark = _run(argv, _env(spark_conf), work / "spark.log")
    log = next(events.iterdir())
    start, end = spark.pop("window_ms")
    spark["stages"] = stage_metrics(log, start, end)
    spark["slots"] = slot_timeline(log, start, end, slots=2)
    if pyspy and flame.exists():
        spark["python_worker_samples"] = worker_shares(flame.read_text())
    report["spark_local"] = spark
    report["spark_conf"] = spark_conf
    if pandas:
        report["bounds"] = bounds(report["pandas"], spark, slots=2)
    return report


def bounds(pandas: dict[str, Any], spark: dict[str, Any], slots: int) -> dict[str, Any]:
    """The best speed-up `slots` cores could give, and where the rest of 2x goes."""
    p_cpu, s_cpu = pandas["cpu_seconds"], spark["total_cpu_seconds"]
    best = p_cpu / (s_cpu / slots)
    # Of the ideal `slots`x: the share lost to extra CPU work, then to slots without a task.
    busy = spark["slots"]["busy_share"]
    return {
        "best_speedup_from_cpu": round(best, 3),
        "extra_cpu_seconds": round(s_cpu - p_cpu, 2),
        "spark_over_pandas_cpu": round(s_cpu / p_cpu, 3),
        "best_speedup_with_slot_idle": round(best * busy, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--input", type=Path, help="a Parquet input to reuse (text, label)")
    parser.add_argument("--py-spy", action="store_true", help="sample the Python workers")
    parser.add_argument("--no-pandas", action="store_true", help="profile the Spark run only")
    parser.add_argument("--conf", action="append", default=[], help="extra Spark setting K=V")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--child", choices=["pandas", "spark"], help=argparse.SUPPRESS)
    parser.add_argument("--child-output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "pandas":
        print(json.dumps(child_pandas(args.input, args.child_output)))
        return 0
    if args.child == "spark":
        print(json.dumps(child_spark(args.input, args.child_output, args.master)))
        return 0

    from core.settings import get_settings

    conf = dict(item.split("=", 1) for item in args.conf)
    work = Path(tempfile.mkdtemp(prefix="driftloop-features-profile-"))
    print(f"work folder: {work}", file=sys.stderr, flush=True)
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        input_path = args.input
        if input_path is None:
            input_path = work / "input.parquet"
            frame = build_input(args.rows, get_settings().datasets_dir)
            frame.to_parquet(input_path, index=False, row_group_size=20_000)
            del frame
        report = profile(work, input_path, conf, pyspy=args.py_spy, pandas=not args.no_pandas)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["load_average_before_after"] = [load_before, [round(x, 2) for x in os.getloadavg()]]
    report["nice"] = os.nice(0)
    text = json.dumps(report, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Feature computation at scale: one pandas process against the Spark job on two cores.

    python -m bench.features_bench [--rows 500000] [--tune] [--output PATH]

1. Builds the input: every review of the real datasets under DRIFTLOOP_DATASETS (IMDB,
   Kindle, Amazon; ratings of 3 dropped, 1-2 negative, 4-5 positive), repeated with a seeded
   perturbation (words swapped, a word's case changed, punctuation added) until `--rows`
   distinct texts, none empty or longer than the contract allows, so the job keeps every row.
   Written once as Parquet; each run reads it.
2. Runs, each in its own process whose tree's resident memory is sampled for its peak:
   (a) `pandas`: read the Parquet, `build_features` in one process, row ids, write Parquet;
   (b) `spark-local`: the featurize job (`jobs.spark.featurize.featurize`) on `local[2]`;
   (c) `spark-standalone`: the same job on a standalone master and one worker with 2 cores,
       both started here from pyspark's own `spark-class` and stopped at the end.
   The Spark runs report the session's start-up (JVM, executors) apart from the job.
3. Checks that all three produce the same features: the sha256 of the feature frame sorted
   by row id (`review_id`, then FEATURE_COLUMNS with the contract's dtypes).

Writes `bench/results/features.json` with rows/s, peak RSS and `speedup_local` /
`speedup_standalone` (pandas seconds / job seconds, start-up excluded). `--tune` instead
runs the Spark job on `local[2]` over a grid of settings (shuffle partitions, Arrow batch
size, input split size), one change at a time in one session, and writes
`bench/results/features-tuning.json`. Where the time goes (CPU seconds per process and JVM
thread, Spark's stage metrics, py-spy on the workers): `python -m bench.features_profile`,
written up in `bench/results/features-profile.md`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
TEXT = "text"
LABEL = "label"

# The settings the main runs use, from the tuning run (bench/results/features-tuning.json,
# local[2]): the featurize step runs after the de-duplication shuffle, so the shuffle partitions
# are its tasks; Spark's default 200 took 4.3x as long as 2 per core (4). 1 per core measured
# 1.11x faster, 4 per core 0.85x, smaller Arrow batches (500, 2,000) and 16 MB input splits
# 0.74-0.77x of Spark's defaults, on a loaded machine whose load rose during the run; 2 per
# core is kept over 1 so one slow task cannot idle a core. Set explicitly so the standalone
# run gets the same (the session sets them for local masters only). 2 GB heaps for 500k
# texts held in the persisted frame.
SPARK_CONF: dict[str, str] = {
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.memory": "2g",
    "spark.executor.memory": "2g",
}

# What `--tune` starts from (the local[2] session's own settings: 2 shuffle partitions per
# core, Spark's Arrow batch and input split sizes) and the changes it tries, one at a time.
TUNING_BASE: dict[str, str] = {
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "10000",
    "spark.sql.files.maxPartitionBytes": "128m",
}
TUNING_GRID: list[dict[str, str]] = [
    {},
    {"spark.sql.shuffle.partitions": "2"},
    {"spark.sql.shuffle.partitions": "8"},
    {"spark.sql.shuffle.partitions": "200"},
    {"spark.sql.execution.arrow.maxRecordsPerBatch": "500"},
    {"spark.sql.execution.arrow.maxRecordsPerBatch": "2000"},
    {"spark.sql.shuffle.partitions": "8", "spark.sql.execution.arrow.maxRecordsPerBatch": "2000"},
    {"spark.sql.files.maxPartitionBytes": "16m"},
]


class BenchError(RuntimeError):
    """A step of the benchmark failed."""


# ---- input -------------------------------------------------------------------------------------


def _real_reviews(datasets: Path) -> pd.DataFrame:
    """(text, label) of every review in the datasets that are present, ratings of 3 dropped."""
    import yaml

    sources = yaml.safe_load((REPO_ROOT / "contracts" / "sources.yaml").read_text())["sources"]
    frames = []
    for name in ("imdb", "kindle", "amazon"):
        spec = sources[name]
        path = datasets / spec["file"]
        if not path.is_file():
            continue
        raw = pd.read_csv(path, usecols=[spec["text_column"], spec["label_column"]], dtype=str)
        labels = raw[spec["label_column"]].map({str(k): v for k, v in spec["label_map"].items()})
        frame = pd.DataFrame({TEXT: raw[spec["text_column"]], LABEL: labels}).dropna()
        frames.append(frame.assign(**{LABEL: frame[LABEL].astype("int64")}))
    if not frames:
        raise BenchError(f"no review dataset found under {datasets} (set DRIFTLOOP_DATASETS)")
    return pd.concat(frames, ignore_index=True)


def perturb(text: str, rng: random.Random) -> str:
    """A slightly different review: two neighbouring words swapped, a case change, punctuation."""
    words = text.split(" ")
    if len(words) > 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    if words:
        j = rng.randrange(len(words))
        words[j] = words[j].upper() if rng.random() < 0.5 else words[j].lower()
    return " ".join(words) + rng.choice(("", "!", "?", " ...", " :)", "!!", " <br />"))


def build_input(rows: int, datasets: Path, seed: int = 20) -> pd.DataFrame:
    """`rows` distinct reviews the featurize job keeps (not blank, not too long)."""
    from contracts.reviews import MAX_TEXT_CHARS

    base = _real_reviews(datasets)
    keep = base[TEXT].str.len().between(1, MAX_TEXT_CHARS) & ~base[TEXT].str.fullmatch(r"\s*")
    base = base[keep].drop_duplicates(TEXT).reset_index(drop=True)
    rng = random.Random(seed)
    texts: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    copy = 0
    while len(texts) < rows:
        for text, label in zip(base[TEXT], base[LABEL], strict=True):
            candidate = text if copy == 0 else perturb(text, rng)
            if candidate in seen or len(candidate) > MAX_TEXT_CHARS:
                continue
            seen.add(candidate)
            texts.append(candidate)
            labels.append(int(label))
            if len(texts) == rows:
                break
        copy += 1
    return pd.DataFrame({TEXT: texts, LABEL: labels})


# ---- the runs (each in a child process) ---------------------------------------------------------


def feature_hash(frame: pd.DataFrame) -> str:
    """sha256 of the feature frame sorted by row id, with the contract's dtypes."""
    from contracts.reviews import ROW_ID
    from features.reviews import FEATURE_COLUMNS, FEATURE_DTYPES

    ordered = frame[[ROW_ID, *FEATURE_COLUMNS]].astype({ROW_ID: "object", **FEATURE_DTYPES})
    ordered = ordered.sort_values(ROW_ID, kind="stable").reset_index(drop=True)
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def child_pandas(input_path: Path, output: Path) -> dict[str, Any]:
    """Read, featurize in one process, add row ids, write: what the job does, minus Spark."""
    from contracts.reviews import ROW_ID
    from features.reviews import build_features

    started = time.perf_counter()
    raw = pd.read_parquet(input_path)
    read = time.perf_counter()
    features = build_features(raw, text_col=TEXT)
    computed = time.perf_counter()
    ids = [hashlib.sha256(t.encode()).hexdigest()[:16] for t in raw[TEXT]]
    frame = pd.concat([pd.DataFrame({ROW_ID: ids, LABEL: raw[LABEL]}), features], axis=1)
    output.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(output / "part-0.parquet", index=False)
    finished = time.perf_counter()
    return {
        "rows": len(frame),
        "job_seconds": round(finished - started, 3),
        "read_seconds": round(read - started, 3),
        "features_seconds": round(computed - read, 3),
        "startup_seconds": 0.0,
        "hash": feature_hash(frame),
    }


def child_spark(input_path: Path, output: Path, master: str, ship: Path | None) -> dict[str, Any]:
    """The featurize job on `master`; the session's start-up timed apart from the job."""
    from jobs.spark.featurize import featurize, read_features
    from jobs.spark.session import build_session

    started = time.perf_counter()
    spark = build_session("driftloop-features-bench", master)
    if ship is not None:
        spark.sparkContext.addPyFile(str(ship))
    # Executors are up once a trivial job ran on every core: count that as start-up too.
    spark.sparkContext.parallelize(range(64), 8).map(lambda x: x).count()
    ready = time.perf_counter()
    try:
        stats = featurize(spark, str(input_path), str(output), label_column=LABEL)
        finished = time.perf_counter()
        conf = {
            key: spark.conf.get(key)
            for key in (
                "spark.sql.shuffle.partitions",
                "spark.sql.execution.arrow.maxRecordsPerBatch",
                "spark.sql.files.maxPartitionBytes",
            )
        }
    finally:
        spark.stop()
    frame = read_features(output)
    return {
        "rows": int(stats["rows_written"]),
        "rows_read": int(stats["rows_read"]),
        "duplicates_removed": int(stats["duplicates_removed"]),
        "quarantined": int(stats["quarantined_total"]),
        "job_seconds": round(finished - ready, 3),
        "startup_seconds": round(ready - started, 3),
        "conf": conf,
        "hash": feature_hash(frame),
    }


def child_tune(input_path: Path, output: Path, master: str) -> list[dict[str, Any]]:
    """Every TUNING_GRID trial in one session (these are runtime SQL settings): start-up once."""
    from jobs.spark.featurize import featurize, read_features
    from jobs.spark.session import build_session

    spark = build_session("driftloop-features-tune", master)
    for key, value in TUNING_BASE.items():
        spark.conf.set(key, value)
    # An unmeasured first run: JIT, Python workers and imports warm up here, not in trial 0.
    featurize(spark, str(input_path), str(output / "warm-up"), label_column=LABEL)
    trials = []
    try:
        for index, change in enumerate(TUNING_GRID):
            for key, value in {**TUNING_BASE, **change}.items():
                spark.conf.set(key, value)
            started = time.perf_counter()
            stats = featurize(
                spark, str(input_path), str(output / f"trial-{index}"), label_column=LABEL
            )
            seconds = time.perf_counter() - started
            trials.append(
                {
                    "change": change or {"(none)": "local[2] session settings"},
                    "job_seconds": round(seconds, 3),
                    "rows_per_s": round(stats["rows_written"] / seconds, 1),
                    "hash": feature_hash(read_features(output / f"trial-{index}")),
                }
            )
            print(json.dumps(trials[-1]), file=sys.stderr, flush=True)
    finally:
        spark.stop()
    return trials


# ---- process management and memory ------------------------------------------------------------


class PeakRss:
    """Samples the summed resident memory of some processes' trees; keeps the peak."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.roots: list[int] = []
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for pid in list(self.roots):
                with contextlib.suppress(psutil.Error):
                    root = psutil.Process(pid)
                    for proc in [root, *root.children(recursive=True)]:
                        with contextlib.suppress(psutil.Error):
                            total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)


def _env(conf: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    args = " ".join(f"--conf {key}={value}" for key, value in conf.items())
    env["PYSPARK_SUBMIT_ARGS"] = f"{args} pyspark-shell".strip()
    return env


def run_child(
    kind: str,
    input_path: Path,
    output: Path,
    conf: dict[str, str],
    *,
    master: str | None = None,
    ship: Path | None = None,
    watch: list[int] | None = None,
) -> dict[str, Any]:
    """Run one measured child; its result plus the peak RSS of it and of `watch` processes."""
    argv = [sys.executable, "-m", "bench.features_bench", "--child", kind]
    argv += ["--input", str(input_path), "--child-output", str(output)]
    if master:
        argv += ["--master", master]
    if ship:
        argv += ["--ship", str(ship)]
    log = output.with_suffix(".log")
    with PeakRss() as peak, log.open("wb") as handle:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=_env(conf), stdout=subprocess.PIPE, stderr=handle
        )
        peak.roots = [process.pid, *(watch or [])]
        stdout, _ = process.communicate()
        wall = time.perf_counter() - started
    if process.returncode != 0:
        raise BenchError(
            f"{kind} run failed ({process.returncode}); see {log}:\n"
            + log.read_text(errors="replace")[-3000:]
        )
    result = dict(json.loads(stdout.decode().strip().splitlines()[-1]))
    result["process_wall_seconds"] = round(wall, 3)
    result["peak_rss_mb"] = peak.peak_mb
    result["rows_per_s"] = round(result["rows"] / result["job_seconds"], 1)
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"exited with {process.returncode}; see {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise BenchError(f"nothing listened on {port} within {timeout:.0f} s; see {log}")


class Standalone:
    """A Spark standalone master and one 2-core worker on 127.0.0.1, stopped on exit."""

    def __init__(self, work: Path, cores: int = 2, memory: str = "3g") -> None:
        self.work = work
        self.cores = cores
        self.memory = memory
        self.processes: list[subprocess.Popen[bytes]] = []
        self.master_url = ""

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        spark_class = _spark_home() / "bin" / "spark-class"
        env = _env({})
        env.pop("PYSPARK_SUBMIT_ARGS", None)
        env["SPARK_HOME"] = str(_spark_home())
        env["SPARK_WORKER_DIR"] = str(self.work / "spark-worker")
        env["SPARK_LOCAL_DIRS"] = str(self.work / "spark-local")
        env["SPARK_LOCAL_IP"] = "127.0.0.1"
        log = self.work / f"{name}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [str(spark_class), *args],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def __enter__(self) -> Standalone:
        started = time.perf_counter()
        port, ui = _free_port(), _free_port()
        master = self._start(
            "spark-master",
            [
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(ui),
            ],
        )
        _wait_port(port, master, self.work / "spark-master.log", 120)
        self.master_url = f"spark://127.0.0.1:{port}"
        worker_ui = _free_port()
        self._start(
            "spark-worker",
            [
                "org.apache.spark.deploy.worker.Worker",
                self.master_url,
                "--host",
                "127.0.0.1",
                "--cores",
                str(self.cores),
                "--memory",
                self.memory,
                "--webui-port",
                str(worker_ui),
            ],
        )
        deadline = time.monotonic() + 120
        log = self.work / "spark-master.log"
        while "Registering worker" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise BenchError(f"the worker did not register within 120 s; see {log}")
            time.sleep(0.2)
        self.startup_seconds = round(time.perf_counter() - started, 3)
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def __exit__(self, *exc: object) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)


def ship_packages(work: Path) -> Path:
    """The project's packages as one zip, for the executors (`addPyFile`)."""
    import zipfile

    target = work / "driftloop-packages.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for package in ("features", "contracts", "core", "jobs"):
            for path in sorted((REPO_ROOT / package).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    archive.write(path, path.relative_to(REPO_ROOT))
    return target


# ---- report --------------------------------------------------------------------------------------


def _load_average() -> list[float]:
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


def _machine(load_before: list[float]) -> dict[str, Any]:
    import pyspark

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "load_average_before": load_before,
        "load_average_after": _load_average(),
    }


def run_main(work: Path, input_path: Path, rows: int) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {}
    print("pandas, one process ...", flush=True)
    runs["pandas"] = run_child("pandas", input_path, work / "out-pandas", {})
    print(f"  {runs['pandas']}", flush=True)
    print("spark job, local[2] ...", flush=True)
    runs["spark_local"] = run_child(
        "spark", input_path, work / "out-local", SPARK_CONF, master="local[2]"
    )
    print(f"  {runs['spark_local']}", flush=True)
    print("spark job, standalone master + 1 worker (2 cores) ...", flush=True)
    with Standalone(work) as cluster:
        runs["spark_standalone"] = run_child(
            "spark",
            input_path,
            work / "out-standalone",
            {**SPARK_CONF, "spark.cores.max": "2"},
            master=cluster.master_url,
            ship=ship_packages(work),
            watch=cluster.pids,
        )
        runs["spark_standalone"]["cluster_startup_seconds"] = cluster.startup_seconds
    print(f"  {runs['spark_standalone']}", flush=True)
    hashes = {name: run["hash"] for name, run in runs.items()}
    for name, run in runs.items():
        if run["rows"] != rows:
            raise BenchError(f"{name} wrote {run['rows']} rows, expected {rows}")
    base = runs["pandas"]["job_seconds"]
    return {
        "speedup_local": round(base / runs["spark_local"]["job_seconds"], 3),
        "speedup_standalone": round(base / runs["spark_standalone"]["job_seconds"], 3),
        "identical_output": len(set(hashes.values())) == 1,
        "output_hash": hashes["pandas"],
        "rows": rows,
        "runs": runs,
        "spark_conf": SPARK_CONF,
        "method": (
            "each run in its own process; job_seconds exclude Spark start-up (session and "
            "executors up, reported as startup_seconds); pandas reads the Parquet input, runs "
            "build_features in one process, adds row ids and writes Parquet; the Spark job also "
            "checks, de-duplicates (a shuffle) and splits every row. peak_rss_mb sums the "
            "process tree (driver JVM, Python workers; for standalone also master, worker, "
            "executor), sampled every 0.25 s. speedup = pandas job_seconds / Spark job_seconds"
        ),
    }


def run_tuning(work: Path, input_path: Path, rows: int) -> dict[str, Any]:
    """The grid on local[2], one session; each trial against the first (no change)."""
    argv = [sys.executable, "-m", "bench.features_bench", "--child", "tune"]
    argv += [
        "--input",
        str(input_path),
        "--child-output",
        str(work / "tune"),
        "--master",
        "local[2]",
    ]
    done = subprocess.run(
        argv, cwd=REPO_ROOT, env=_env({"spark.driver.memory": "2g"}), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BenchError(f"tuning run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    trials = json.loads(done.stdout.strip().splitlines()[-1])
    base = trials[0]["job_seconds"]
    for trial in trials:
        trial["speedup_vs_base"] = round(base / trial["job_seconds"], 3)
    return {
        "rows": rows,
        "master": "local[2]",
        "base": TUNING_BASE,
        "trials": trials,
        "identical_output": len({t["hash"] for t in trials}) == 1,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--tune", action="store_true", help="sweep Spark settings instead")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--child", choices=["pandas", "spark", "tune"], help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    parser.add_argument("--ship", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "pandas":
        print(json.dumps(child_pandas(args.input, args.child_output)))
        return 0
    if args.child == "spark":
        print(json.dumps(child_spark(args.input, args.child_output, args.master, args.ship)))
        return 0
    if args.child == "tune":
        print(json.dumps(child_tune(args.input, args.child_output, args.master)))
        return 0

    from core.settings import get_settings

    output = args.output or RESULTS_DIR / ("features-tuning.json" if args.tune else "features.json")
    load_before = _load_average()
    work = Path(tempfile.mkdtemp(prefix="driftloop-features-bench-"))
    print(f"work folder: {work}", flush=True)
    try:
        started = time.perf_counter()
        frame = build_input(args.rows, get_settings().datasets_dir)
        input_path = work / "input.parquet"
        frame.to_parquet(input_path, index=False, row_group_size=20_000)
        print(
            f"input: {len(frame)} distinct reviews in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        rows = len(frame)
        del frame
        if args.tune:
            report = run_tuning(work, input_path, rows)
        else:
            report = run_main(work, input_path, rows)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["data"] = (
        "IMDB 50k, Kindle and Amazon reviews (ratings of 3 dropped), repeated with a seeded "
        "perturbation (neighbouring words swapped, one word's case changed, punctuation added) "
        "until every text differs"
    )
    report["machine"] = _machine(load_before)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    if not args.tune:
        print(
            f"speed-up over one pandas process (start-up excluded): local[2] "
            f"{report['speedup_local']}x, standalone {report['speedup_standalone']}x; "
            f"identical output: {report['identical_output']}"
        )
    print(
        f"load average before/after: {report['machine']['load_average_before']} / "
        f"{report['machine']['load_average_after']}"
    )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

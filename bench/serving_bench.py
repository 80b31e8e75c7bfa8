"""Serving benchmark: this API against `mlflow models serve` and BentoML on the same model.

    python -m bench.serving_bench [--workers 1 2] [--concurrency 1 32] [--duration 12]
                                  [--rounds 2] [--peers mlflow bentoml] [--keep]

1. Starts a throw-away `mlflow server` on a free loopback port (SQLite
   metadata, local artifact store): serving reaches a registry only over HTTP.
2. Trains the baseline (`training.train.train_model`) on IMDB reviews from
   DRIFTLOOP_DATASETS (synthetic reviews when the file is missing) and
   registers it through the gate (`training.promote.register_and_gate`), which
   makes it `champion`.
3. Measures the scorer limit: the model compiled as the API compiles it
   (`serving.scoring.compile_scorer`), in this process on one core, doing what
   the micro-batcher does per batch; one review per call and batches of the
   sizes the micro-batcher forms (`scorer_limit` in the JSON).
4. For each worker count, starts this API (`python -m serving`), `mlflow models
   serve -m models:/<name>/<version> --env-manager local` and `bentoml serve
   bench.bentoml_service:ReviewScorer` with that many workers, times each from
   launch to the first and to the last worker ready, checks that all give the
   same probabilities for the same reviews and only 2xx answers under
   concurrent load (`bench.loadgen`), then drives each with `wrk` (`bench.wrk`:
   one thread, a different review per request) at each concurrency,
   alternating the servers for `--rounds` rounds and reporting the median of
   each figure (the machine may be shared), and reads each worker's RSS.

Request bodies are written per server (`write_bodies`: line i of every file is
review i in that server's format), so another use case can bring its own. The
API and BentoML get the raw text and compute the features inside the measured
time; MLflow's scoring server expects the model's input schema, so it is sent
the precomputed feature row (`dataframe_split`). Every process the benchmark
starts is stopped when it ends, also on failure or Ctrl-C. Prints a table and
the targets with their verdicts, and writes `bench/results/serving.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pandas as pd

from bench.wrk import WrkError, run_wrk
from contracts.reviews import RAW_LABEL, RAW_TEXT, ROW_ID, SPLIT
from core.settings import get_settings
from features.reviews import FEATURE_COLUMNS, build_features

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "serving.json"
IMDB = "imdb_50k.csv.gz"
MODEL_NAME = "serving-bench"
READY_TIMEOUT = 240.0
# BentoML logs this once per worker when its service instance (model loaded) is up.
BENTOML_WORKER_READY = "Service ReviewScorer initialized"


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and where its log is."""


# ---- processes -----------------------------------------------------------------------------


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Processes:
    """Every process the benchmark started, each in its own session so its children stop too."""

    started: list[Started] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Started:
        log_path = log_dir / f"{name}.log"
        handle = log_path.open("wb")
        try:
            process = subprocess.Popen(
                argv,
                env=env,
                cwd=REPO_ROOT,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            handle.close()
        item = Started(name, process, log_path)
        self.started.append(item)
        return item

    def stop(self, item: Started, timeout: float = 60.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it does not end in time."""
        process = item.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group, if any
        if item in self.started:
            self.started.remove(item)

    def stop_all(self) -> None:
        for item in list(reversed(self.started)):
            self.stop(item, timeout=30.0)


def _child_env(**extra: str) -> dict[str, str]:
    """This environment with the interpreter's bin folder first on PATH (mlflow runs `uvicorn`)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _post_json(url: str, body: Any, timeout: float = 30.0) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _wait_ready(item: Started, url: str, timeout: float = READY_TIMEOUT) -> float:
    """Seconds until `url` answers 200 (counted by the caller from launch)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if item.process.poll() is not None:
            raise BenchError(
                f"{item.name} exited with {item.process.returncode}; see {item.log_path}:\n"
                + item.log_path.read_text(errors="replace")[-2000:]
            )
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
            if _get(url) == 200:
                return time.monotonic()
        time.sleep(0.1)
    raise BenchError(f"{item.name} not ready within {timeout:.0f} s; see {item.log_path}")


# ---- data and model ---------------------------------------------------------------------------


def load_reviews(n_train: int, n_requests: int) -> tuple[pd.DataFrame, list[str], str]:
    """Training rows (text, label) and request texts that training never saw."""
    path = get_settings().datasets_dir / IMDB
    if path.is_file():
        frame = pd.read_csv(path, nrows=n_train + n_requests, keep_default_na=False)
        frame = frame.rename(columns={"review": RAW_TEXT})
        frame[RAW_LABEL] = (frame["sentiment"] == "positive").astype("int64")
        source = f"IMDB ({IMDB} in the datasets folder)"
    else:
        from synthetic.reviews import generate_reviews

        frame = generate_reviews(n=n_train + n_requests, seed=7)
        source = "synthetic reviews (IMDB file not found)"
    train = frame.iloc[:n_train][[RAW_TEXT, RAW_LABEL]].reset_index(drop=True)
    requests = frame.iloc[n_train:][RAW_TEXT].astype(str).tolist()
    return train, requests, source


def write_feature_folder(train: pd.DataFrame, folder: Path) -> Path:
    """The Parquet folder training reads: raw columns, split, features (8/1/1 by row)."""
    features = build_features(train, text_col=RAW_TEXT)
    frame = pd.concat([train, features], axis=1)
    frame[ROW_ID] = [f"bench-{i}" for i in range(len(frame))]
    position = np.arange(len(frame)) % 10
    frame[SPLIT] = np.where(position < 8, "train", np.where(position == 8, "valid", "test"))
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "part-0.parquet", index=False)
    return folder


def train_and_register(features_dir: Path) -> tuple[str, dict[str, Any]]:
    from training.promote import register_and_gate
    from training.train import train_model

    trained = train_model(str(features_dir), experiment="serving-bench", run_name="bench")
    registered = register_and_gate(trained["run_id"], MODEL_NAME, str(features_dir))
    if not registered["promoted"]:
        raise BenchError(f"the gate did not promote the bench model: {registered['decision']}")
    return str(registered["version"]), trained["valid_metrics"]


BATCH_SIZES = (8, 16, 32, 64)


def measure_scorer_limit(
    version: str, texts: list[str], batch_sizes: tuple[int, ...] = BATCH_SIZES
) -> dict[str, Any]:
    """What the API's own scoring path does in this process, on one core.

    The model is loaded and compiled as the API loads it (`compile_scorer`: the scorer the
    API serves with), and each call does what the micro-batcher does for a batch:
    `featurize` the texts, `scorer.score` the columns, zip the feature rows for the
    prediction log. (a) one review per call: median milliseconds; (b) consecutive batches of
    each size the micro-batcher forms (up to `batch_max_size`, 64): reviews per second.
    """
    import mlflow.sklearn

    from serving.scoring import compile_scorer
    from serving.usecase import served_use_case

    use_case = served_use_case()
    pipeline = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}/{version}")
    positive_index = [int(c) for c in pipeline.classes_].index(1)
    scorer = compile_scorer(pipeline, positive_index, use_case=use_case)
    names = use_case.feature_columns

    def call(batch: list[str]) -> None:
        columns = use_case.featurize(batch)
        scorer.score(columns)
        list(zip(*(columns[name] for name in names), strict=True))

    for text in texts[:50]:
        call([text])
    single: list[float] = []
    for _ in range(2):
        for text in texts:
            started = time.perf_counter()
            call([text])
            single.append(time.perf_counter() - started)
    batched: dict[str, float] = {}
    for size in batch_sizes:
        batches = [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)]
        call(batches[0])
        rates = []
        for _ in range(3):  # best of three passes: the machine may be shared
            started = time.perf_counter()
            for batch in batches:
                call(batch)
            rates.append(len(batches) * size / (time.perf_counter() - started))
        batched[str(size)] = round(max(rates), 1)
    best = max(batched, key=lambda k: batched[k])
    return {
        "scorer": scorer.name,
        "single_ms": round(statistics.median(single) * 1e3, 3),
        "single_rows_per_s": round(1.0 / statistics.median(single), 1),
        "batch_sizes": [int(k) for k in batched],
        "batched_rows_per_s_per_core": batched,
        "batched_limit_rows_per_s": batched[best],
        "batched_limit_batch_size": int(best),
        "texts": len(texts),
        "method": (
            "in-process, one thread: use_case.featurize + the compiled scorer's score + feature "
            "rows, as the micro-batcher does per batch; single_ms is the median over one review "
            "per call, batched figures the best of three passes over consecutive batches"
        ),
    }


def write_bodies(texts: list[str], folder: Path) -> dict[str, Path]:
    """One request body per line and server, line i being review i in that server's format.

    This API and BentoML get the raw text (each computes the features); MLflow's server
    gets the feature row its input schema requires (`dataframe_split`).
    """
    paths = {name: folder / f"{name}.jsonl" for name in ("driftloop", "mlflow", "bentoml")}
    features = build_features(pd.DataFrame({RAW_TEXT: texts}))
    columns = list(FEATURE_COLUMNS)
    with (
        paths["driftloop"].open("w") as ours,
        paths["mlflow"].open("w") as mlflow_out,
        paths["bentoml"].open("w") as bento_out,
    ):
        for text, row in zip(texts, features[columns].itertuples(index=False), strict=True):
            ours.write(json.dumps({RAW_TEXT: text}) + "\n")
            values = [v.item() if hasattr(v, "item") else v for v in row]
            payload = {"dataframe_split": {"columns": columns, "data": [values]}}
            mlflow_out.write(json.dumps(payload) + "\n")
            bento_out.write(json.dumps({"texts": [text]}) + "\n")
    return paths


# ---- servers ------------------------------------------------------------------------------------


def start_registry(procs: Processes, work: Path) -> str:
    port = _free_port()
    env = _child_env(
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"
    )
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{work / 'registry.db'}",
        "--artifacts-destination",
        str(work / "artifacts"),
    ]
    launched = time.monotonic()
    item = procs.start("mlflow-registry", argv, env, work)
    ready = _wait_ready(item, f"http://127.0.0.1:{port}/health")
    print(f"registry: mlflow server on 127.0.0.1:{port}, ready in {ready - launched:.1f} s")
    return f"http://127.0.0.1:{port}"


def start_driftloop(
    procs: Processes, work: Path, tracking_uri: str, workers: int
) -> tuple[Started, str, Startup]:
    port = _free_port()
    env = _child_env(
        MLFLOW_TRACKING_URI=tracking_uri,
        DRIFTLOOP_HOME=str(work / "driftloop-home"),
        DRIFTLOOP_MODEL_NAME=MODEL_NAME,
        DRIFTLOOP_PORT=str(port),
        DRIFTLOOP_WORKERS=str(workers),
        # The limiter runs on every request but must not throttle a one-client benchmark.
        DRIFTLOOP_RATE_LIMIT_PER_SECOND="1000000",
        DRIFTLOOP_RATE_LIMIT_BURST="1000000",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    launched = time.monotonic()
    item = procs.start(f"driftloop-w{workers}", [sys.executable, "-m", "serving"], env, work)
    first = _wait_ready(item, f"http://127.0.0.1:{port}/ready")
    # One worker is the server itself; with several, /ready answers once the first is up.
    every = (
        first if workers == 1 else _wait_all_workers(f"http://127.0.0.1:{port}/metrics", workers)
    )
    return item, f"http://127.0.0.1:{port}", Startup(first - launched, every - launched)


@dataclass(frozen=True)
class Startup:
    """Seconds from launch until the first worker answered ready, and until every worker had."""

    first: float
    all_workers: float


def _wait_all_workers(metrics_url: str, workers: int, timeout: float = READY_TIMEOUT) -> float:
    """With several workers /ready answers as soon as one is up; the time all of them were."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            text = response.read().decode()
        pids = {
            line.split('pid="')[1].split('"')[0]
            for line in text.splitlines()
            if line.startswith("driftloop_model_info{") and line.endswith(" 1.0")
        }
        if len(pids) >= workers:
            return time.monotonic()
        time.sleep(0.1)
    raise BenchError(f"not all {workers} workers loaded the model within {timeout:.0f} s")


def _wait_log_count(
    item: Started, marker: str, count: int, timeout: float = READY_TIMEOUT
) -> float:
    """The time `marker` had appeared `count` times in the server's log (one line per worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if item.process.poll() is not None:
            raise BenchError(
                f"{item.name} exited with {item.process.returncode}; see {item.log_path}"
            )
        if item.log_path.read_text(errors="replace").count(marker) >= count:
            return time.monotonic()
        time.sleep(0.1)
    raise BenchError(f"{item.name}: fewer than {count} {marker!r} lines within {timeout:.0f} s")


def process_memory(item: Started) -> dict[str, Any]:
    """Resident memory of the server's processes: each worker (the tree's leaves) and in all.

    With one worker the leaf is the serving process itself; with several, the supervisor that
    forks or spawns them is counted in the total only. Helper processes that serve no
    requests (multiprocessing's resource tracker) are left out of the workers.
    """
    import psutil

    try:
        root = psutil.Process(item.process.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    rows = []
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            rows.append(
                {
                    "pid": proc.pid,
                    "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                    "leaf": not proc.children(),
                    "cmd": " ".join(proc.cmdline())[:120],
                }
            )
    workers = [r for r in rows if r["leaf"] and "resource_tracker" not in r["cmd"]]
    return {
        "worker_rss_mb": [r["rss_mb"] for r in workers],
        "total_rss_mb": round(sum(r["rss_mb"] for r in rows), 1),
        "processes": len(rows),
    }


def start_mlflow_serve(
    procs: Processes,
    work: Path,
    tracking_uri: str,
    version: str,
    workers: int,
    *,
    model_name: str = MODEL_NAME,
    label: str = "mlflow-serve",
) -> tuple[Started, str, Startup]:
    """`mlflow models serve` of models:/<model_name>/<version>, timed to the first and last worker."""
    port = _free_port()
    env = _child_env(MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/{model_name}/{version}",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    launched = time.monotonic()
    item = procs.start(f"{label}-w{workers}", argv, env, work)
    first = _wait_ready(item, f"http://127.0.0.1:{port}/ping")
    # Each uvicorn worker imports the scoring app (which loads the model) and then logs this.
    every = _wait_log_count(item, "Application startup complete", workers)
    return item, f"http://127.0.0.1:{port}", Startup(first - launched, every - launched)


@dataclass
class Server:
    """One running server under test: where to send what, and what it took to start."""

    name: str
    item: Started
    predict_url: str
    bodies: Path
    startup: Startup
    probability: Callable[[Any], float]  # P(positive) out of one answer


def _driftloop_probability(answer: Any) -> float:
    return float(answer["probability"])


def _mlflow_probability(answer: Any) -> float:
    prediction = answer["predictions"][0]
    return float(prediction[1] if isinstance(prediction, list) else prediction["1"])


def _bentoml_probability(answer: Any) -> float:
    return float(answer[0])


def start_bentoml(
    procs: Processes, work: Path, tracking_uri: str, version: str, workers: int
) -> tuple[Started, str, Startup]:
    """`bentoml serve` of bench.bentoml_service (same registered model, adaptive batching)."""
    port = _free_port()
    env = _child_env(
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        BENCH_MODEL_URI=f"models:/{MODEL_NAME}/{version}",
        BENCH_WORKERS=str(workers),
        BENTOML_HOME=str(work / "bentoml-home"),
        BENTOML_DO_NOT_TRACK="true",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    argv = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "bench.bentoml_service:ReviewScorer",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    launched = time.monotonic()
    item = procs.start(f"bentoml-w{workers}", argv, env, work)
    first = _wait_ready(item, f"http://127.0.0.1:{port}/readyz")
    every = _wait_log_count(item, BENTOML_WORKER_READY, workers)
    return item, f"http://127.0.0.1:{port}", Startup(first - launched, every - launched)


def check_agreement(servers: list[Server], count: int = 20) -> float:
    """Largest |difference| of P(positive) between each server and the first, same reviews.

    Line i of every server's bodies file is the same review in that server's request format.
    """
    answers: list[list[float]] = []
    for server in servers:
        lines = server.bodies.read_text().splitlines()[:count]
        answers.append(
            [server.probability(_post_json(server.predict_url, json.loads(line))) for line in lines]
        )
    reference = answers[0]
    return max(
        (abs(a - b) for other in answers[1:] for a, b in zip(reference, other, strict=True)),
        default=0.0,
    )


def run_load(
    url: str, bodies: Path, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    """One wrk run (one thread, C, a different body per request) after a warm-up run."""
    try:
        return run_wrk(url, bodies, concurrency, duration, warmup=warmup)
    except WrkError as error:
        raise BenchError(str(error)) from error


def check_under_load(url: str, bodies: Path, concurrency: int = 8) -> dict[str, Any]:
    """Correctness under concurrency with the Python client, which checks every answer's status.

    A second's closed loop at `concurrency` must see only 2xx answers; wrk's figures count
    non-2xx answers as errors as well, this also reports which statuses came back.
    """
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        url,
        "--bodies",
        str(bodies),
        "--concurrency",
        str(concurrency),
        "--duration",
        "1",
        "--warmup",
        "0",
    ]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise BenchError(f"load generator failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    if result["errors"] or not result["requests"]:
        raise BenchError(f"{url}: answers under concurrent load were not all 2xx: {result}")
    return {"requests": result["requests"], "statuses": result["statuses"]}


def batch_totals(metrics_text: str, use_case: str = "reviews") -> tuple[float, float]:
    """(reviews, batches) the micro-batchers of every worker have scored, from /metrics."""
    totals = {"_sum": 0.0, "_count": 0.0}
    for line in metrics_text.splitlines():
        name, _, rest = line.partition("{")
        for suffix in totals:
            if name == f"driftloop_batch_size_rows{suffix}" and f'use_case="{use_case}"' in rest:
                totals[suffix] += float(line.rsplit(" ", 1)[1])
    return totals["_sum"], totals["_count"]


def _batch_totals_at(predict_url: str) -> tuple[float, float]:
    parts = urllib.parse.urlsplit(predict_url)
    with urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}/metrics", timeout=10) as answer:
        return batch_totals(answer.read().decode())


def summarise_runs(
    server: str, workers: int, concurrency: int, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Median of each figure over the rounds; errors summed; every round kept."""

    def median(key: str) -> float:
        return round(statistics.median(run[key] for run in runs), 3)

    return {
        "server": server,
        "workers": workers,
        "concurrency": concurrency,
        "rps": median("rps"),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "errors": sum(int(run["errors"]) for run in runs),
        "requests": sum(int(run["requests"]) for run in runs),
        "loadgen_cpu_share": median("loadgen_cpu_share"),
        "rounds": [
            {
                k: run[k]
                for k in (
                    "rps",
                    "p50_ms",
                    "p90_ms",
                    "p99_ms",
                    "max_ms",
                    "errors",
                    "loadgen_cpu_seconds",
                    "loadgen_cpu_share",
                    "mean_batch_rows",
                )
                if k in run
            }
            for run in runs
        ],
        **(
            {"mean_batch_rows": median("mean_batch_rows")}
            if all("mean_batch_rows" in run for run in runs)
            else {}
        ),
    }


# ---- report --------------------------------------------------------------------------------------


def _table(results: list[dict[str, Any]]) -> str:
    header = (
        f"{'server':<10} {'workers':>7} {'conc':>5} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'errors':>7} {'wrk cpu':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r['server']:<10} {r['workers']:>7} {r['concurrency']:>5} {r['rps']:>9.1f} "
            f"{r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['errors']:>7} "
            f"{r['loadgen_cpu_share']:>8.2f}"
        )
    return "\n".join(lines)


def _target(name: str, value: float | None, op: str, bound: float | None) -> dict[str, Any]:
    met = None
    if value is not None and bound is not None:
        met = value >= bound if op == ">=" else value <= bound
    return {
        "target": name,
        "value": None if value is None else round(value, 3),
        "op": op,
        "bound": None if bound is None else round(bound, 3),
        "met": met,
    }


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets at concurrency 32 and 1, each with its measured value and verdict."""
    by_key = {(r["server"], r["workers"], r["concurrency"]): r for r in report["results"]}
    limit = report["scorer_limit"]
    out: list[dict[str, Any]] = []

    def rps(server: str, workers: int, conc: int = 32) -> float | None:
        row = by_key.get((server, workers, conc))
        return row["rps"] if row and row["rps"] > 0 else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    for workers in report["workers"]:
        ours = by_key.get(("driftloop", workers, 32))
        if ours is None:
            continue
        need_mlflow = 10.0 if workers == 1 else 8.0
        out.append(
            _target(
                f"w{workers} c32 driftloop/mlflow req/s",
                ratio(ours["rps"], rps("mlflow", workers)),
                ">=",
                need_mlflow,
            )
        )
        if ("bentoml", workers, 32) in by_key:
            out.append(
                _target(
                    f"w{workers} c32 driftloop/bentoml req/s",
                    ratio(ours["rps"], rps("bentoml", workers)),
                    ">=",
                    3.0,
                )
            )
        theirs = by_key.get(("mlflow", workers, 32))
        if theirs:
            out.append(
                _target(
                    f"w{workers} c32 p99 driftloop ms (<= mlflow p99 / 5)",
                    ours["p99_ms"],
                    "<=",
                    theirs["p99_ms"] / 5,
                )
            )
        if workers == 1:
            out.append(
                _target(
                    "w1 c32 share of the batched scorer limit", ours["share_of_limit"], ">=", 0.6
                )
            )
        else:
            out.append(
                _target(
                    f"w{workers}/w1 driftloop c32 req/s",
                    ratio(ours["rps"], rps("driftloop", 1)),
                    ">=",
                    1.7,
                )
            )
        single = by_key.get(("driftloop", workers, 1))
        if single:
            out.append(
                _target(
                    f"w{workers} c1 p50 ms (<= single-call limit + 1)",
                    single["p50_ms"],
                    "<=",
                    limit["single_ms"] + 1.0,
                )
            )
        startup = report["startup_seconds_by_workers"]
        if "bentoml" in startup and workers in startup["bentoml"]:
            out.append(
                _target(
                    f"w{workers} start-up, all workers ready, s (<= bentoml's)",
                    startup["driftloop"][workers]["all_workers"],
                    "<=",
                    startup["bentoml"][workers]["all_workers"],
                )
            )
    return out


def _load_average() -> list[float]:
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so the cleanup in `finally` blocks runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        # A second SIGTERM (`timeout` sends one to the whole group) must not cut the cleanup.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


PEERS = ("mlflow", "bentoml")


def start_servers(
    procs: Processes,
    work: Path,
    tracking_uri: str,
    version: str,
    workers: int,
    bodies: dict[str, Path],
    peers: tuple[str, ...],
) -> list[Server]:
    """This API, then each peer, with `workers` workers; the API first (the reference)."""
    servers = []
    api, api_url, api_start = start_driftloop(procs, work, tracking_uri, workers)
    servers.append(
        Server(
            "driftloop",
            api,
            f"{api_url}/predict",
            bodies["driftloop"],
            api_start,
            _driftloop_probability,
        )
    )
    if "mlflow" in peers:
        mlf, mlf_url, mlf_start = start_mlflow_serve(procs, work, tracking_uri, version, workers)
        servers.append(
            Server(
                "mlflow",
                mlf,
                f"{mlf_url}/invocations",
                bodies["mlflow"],
                mlf_start,
                _mlflow_probability,
            )
        )
    if "bentoml" in peers:
        bento, bento_url, bento_start = start_bentoml(procs, work, tracking_uri, version, workers)
        servers.append(
            Server(
                "bentoml",
                bento,
                f"{bento_url}/predict",
                bodies["bentoml"],
                bento_start,
                _bentoml_probability,
            )
        )
    for server in servers:
        print(
            f"{server.name} ({workers} worker(s)): first ready in {server.startup.first:.1f} s, "
            f"all workers in {server.startup.all_workers:.1f} s"
        )
    return servers


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="driftloop-serving-bench-"))
    procs = Processes()
    print(f"work folder: {work}")
    load_before = _load_average()
    peers = tuple(p for p in args.peers if p != "driftloop")
    try:
        train, texts, source = load_reviews(args.train_rows, args.request_texts)
        print(f"data: {source}; {len(train)} training rows, {len(texts)} request texts")
        tracking_uri = start_registry(procs, work)
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        features_dir = write_feature_folder(train, work / "features")
        started = time.monotonic()
        version, valid_metrics = train_and_register(features_dir)
        print(
            f"model: {MODEL_NAME} v{version} trained and promoted in "
            f"{time.monotonic() - started:.1f} s; valid metrics {valid_metrics}"
        )
        limit = measure_scorer_limit(version, texts[: args.limit_texts])
        print(
            f"scorer limit ({limit['scorer']} path, in-process, one core): one review per call "
            f"{limit['single_ms']:.2f} ms; batched reviews/s "
            + ", ".join(f"{k}: {v:.0f}" for k, v in limit["batched_rows_per_s_per_core"].items())
        )
        bodies = write_bodies(texts, work)
        results: list[dict[str, Any]] = []
        startup: dict[str, dict[int, dict[str, float]]] = {}
        memory: dict[str, dict[int, dict[str, Any]]] = {}
        agreement: dict[int, float] = {}
        correctness: dict[str, dict[int, dict[str, Any]]] = {}
        for workers in args.workers:
            servers = start_servers(procs, work, tracking_uri, version, workers, bodies, peers)
            for server in servers:
                startup.setdefault(server.name, {})[workers] = {
                    "first": round(server.startup.first, 2),
                    "all_workers": round(server.startup.all_workers, 2),
                }
            agreement[workers] = check_agreement(servers)
            print(f"same reviews, largest |P difference| between servers: {agreement[workers]:.3g}")
            for server in servers:
                correctness.setdefault(server.name, {})[workers] = check_under_load(
                    server.predict_url, server.bodies
                )
            runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
            # Rounds alternate the servers, so a change in the machine's load hits all alike.
            for round_index in range(args.rounds):
                for concurrency in args.concurrency:
                    for server in servers:
                        batched = server.name == "driftloop"
                        before = _batch_totals_at(server.predict_url) if batched else None
                        measured = run_load(
                            server.predict_url,
                            server.bodies,
                            concurrency,
                            args.duration,
                            warmup=args.warmup,
                        )
                        if before is not None:
                            reviews, batches = _batch_totals_at(server.predict_url)
                            # Warm-up included: the micro-batcher's mean reviews per model call.
                            measured["mean_batch_rows"] = round(
                                (reviews - before[0]) / max(batches - before[1], 1.0), 2
                            )
                        runs.setdefault((server.name, concurrency), []).append(measured)
                        print(
                            f"  round {round_index + 1} {server.name:<9} w={workers} "
                            f"c={concurrency:<3} {measured['rps']:8.1f} req/s  "
                            f"p50 {measured['p50_ms']:7.2f} ms  p99 {measured['p99_ms']:8.2f} ms  "
                            f"errors {measured['errors']}  wrk cpu {measured['loadgen_cpu_share']:.2f}"
                            + (
                                f"  reviews/batch {measured['mean_batch_rows']:.1f}"
                                if "mean_batch_rows" in measured
                                else ""
                            )
                        )
            for server in servers:
                memory.setdefault(server.name, {})[workers] = process_memory(server.item)
                print(
                    f"{server.name} w={workers} memory after load: {memory[server.name][workers]}"
                )
            for (name, concurrency), measured_runs in runs.items():
                row = summarise_runs(name, workers, concurrency, measured_runs)
                if name == "driftloop":
                    bound = workers * limit["batched_limit_rows_per_s"]
                    row["share_of_limit"] = round(row["rps"] / bound, 3)
                    if concurrency == 1:
                        row["p50_over_single_call_ms"] = round(
                            row["p50_ms"] - limit["single_ms"], 3
                        )
                results.append(row)
            for server in servers:
                procs.stop(server.item)
        results.sort(key=lambda r: (r["workers"], r["server"], r["concurrency"]))
        report: dict[str, Any] = {
            "results": results,
            "scorer_limit": limit,
            "startup_seconds_by_workers": startup,
            "memory_by_workers": memory,
            "workers": list(args.workers),
            "servers": ["driftloop", *peers],
            "max_probability_difference": max(agreement.values()) if agreement else None,
            "correctness_under_load": correctness,
            "model": {"name": MODEL_NAME, "version": version, "valid_metrics": valid_metrics},
            "data": source,
            "payloads": (
                "driftloop receives the raw review text and computes the features inside the "
                "measured time; mlflow models serve receives the precomputed feature row of the "
                "same review (dataframe_split), as its input schema requires; BentoML receives "
                "the raw text ({'texts': [text]}) and computes the features with build_features "
                "in its batched API"
            ),
            "settings": {
                "rounds": args.rounds,
                "duration_seconds": args.duration,
                "warmup_seconds": args.warmup,
                "load_generator": (
                    "wrk, one thread, closed loop, keep-alive, a different review per request "
                    "(bench/wrk_rotate.lua); its CPU share of one core is in each row"
                ),
                "rate_limit": "off (limits set far above the load)",
                "prediction_log": "on",
                "metrics": "on",
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_average_before": load_before,
                "load_average_after": _load_average(),
            },
        }
        report["targets"] = evaluate_targets(report)
        return report
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--duration", type=float, default=12.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per run")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating runs per setting (median reported)"
    )
    parser.add_argument(
        "--peers", nargs="+", default=list(PEERS), choices=list(PEERS), help="servers compared"
    )
    parser.add_argument("--train-rows", type=int, default=12000)
    parser.add_argument("--request-texts", type=int, default=2000)
    parser.add_argument(
        "--limit-texts", type=int, default=1024, help="request texts the scorer limit is timed on"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)

    with _terminate_on_sigterm():
        report = run(args)
    print()
    print(_table(report["results"]))
    print(
        "\nPayloads differ: driftloop and BentoML get raw text and compute features within the "
        "measured time; mlflow models serve gets precomputed feature rows."
    )
    for target in report["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        print(f"{target['target']}: {target['value']} {target['op']} {target['bound']}: {verdict}")
    print(
        f"load average before/after: {report['machine']['load_average_before']} / "
        f"{report['machine']['load_average_after']} on {report['machine']['cpus']} CPUs"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Serving benchmark: this API against `mlflow models serve` on the same registered model.

    python -m bench.serving_bench [--workers 1 2] [--concurrency 1 32] [--duration 8]
                                  [--rounds 2] [--train-rows 12000] [--keep]

1. Starts a throw-away `mlflow server` on a free loopback port (SQLite
   metadata, local artifact store): serving reaches a registry only over HTTP.
2. Trains the baseline (`training.train.train_model`) on IMDB reviews from
   DRIFTLOOP_DATASETS (synthetic reviews when the file is missing) and
   registers it through the gate (`training.promote.register_and_gate`), which
   makes it `champion`.
3. Measures the floor: the bare in-process `predict_proba` of that model on
   one review's precomputed feature frame (median over real reviews).
4. For each worker count, starts this API (`python -m serving`) and
   `mlflow models serve -m models:/<name>/<version> --env-manager local`
   with that many workers, times each from launch to ready, checks that both
   give the same probabilities for the same reviews, and drives each with the
   same closed-loop load generator (`bench.loadgen`, a separate process) at
   each concurrency, alternating the two servers for `--rounds` rounds and
   reporting the median of each figure (the machine may be shared).

The two servers do not receive the same payload. MLflow's scoring server
expects the model's input schema, so it is sent the precomputed feature row
(`dataframe_split`) of each review; this API is sent the raw text and computes
the features inside the measured time. Both get the same reviews in the same
order. Every process the benchmark starts is stopped when it ends, also on
failure or Ctrl-C. Prints a table and writes `bench/results/serving.json`.
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
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pandas as pd

from contracts.reviews import RAW_LABEL, RAW_TEXT, ROW_ID, SPLIT
from core.settings import get_settings
from features.reviews import FEATURE_COLUMNS, build_features

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "serving.json"
IMDB = "imdb_50k.csv.gz"
MODEL_NAME = "serving-bench"
READY_TIMEOUT = 240.0


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
        source = f"IMDB ({path})"
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


def measure_floor(version: str, texts: list[str], repeats: int = 3) -> dict[str, float]:
    """Median in-process predict_proba of one review's feature frame, and feature time."""
    import mlflow.sklearn

    pipeline = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}/{version}")
    frames = [build_features(pd.DataFrame({RAW_TEXT: [t]})) for t in texts]
    for frame in frames[:20]:
        pipeline.predict_proba(frame)
    model_times: list[float] = []
    feature_times: list[float] = []
    for _ in range(repeats):
        for text, frame in zip(texts, frames, strict=True):
            started = time.perf_counter()
            pipeline.predict_proba(frame)
            model_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            build_features(pd.DataFrame({RAW_TEXT: [text]}))
            feature_times.append(time.perf_counter() - started)
    return {
        "floor_ms": round(statistics.median(model_times) * 1e3, 3),
        "features_ms": round(statistics.median(feature_times) * 1e3, 3),
    }


def write_bodies(texts: list[str], folder: Path) -> tuple[Path, Path]:
    """One request body per line: raw text for this API, feature rows for MLflow's server."""
    ours = folder / "driftloop.jsonl"
    theirs = folder / "mlflow.jsonl"
    features = build_features(pd.DataFrame({RAW_TEXT: texts}))
    columns = list(FEATURE_COLUMNS)
    with ours.open("w") as out_ours, theirs.open("w") as out_theirs:
        for text, row in zip(texts, features[columns].itertuples(index=False), strict=True):
            out_ours.write(json.dumps({RAW_TEXT: text}) + "\n")
            values = [v.item() if hasattr(v, "item") else v for v in row]
            payload = {"dataframe_split": {"columns": columns, "data": [values]}}
            out_theirs.write(json.dumps(payload) + "\n")
    return ours, theirs


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
) -> tuple[Started, str, float]:
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
    ready = _wait_ready(item, f"http://127.0.0.1:{port}/ready")
    if workers > 1:
        _wait_all_workers(f"http://127.0.0.1:{port}/metrics", workers)
    return item, f"http://127.0.0.1:{port}", ready - launched


def _wait_all_workers(metrics_url: str, workers: int, timeout: float = READY_TIMEOUT) -> None:
    """With several workers /ready answers as soon as one is up; wait for all of them."""
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
            return
        time.sleep(0.2)
    raise BenchError(f"not all {workers} workers loaded the model within {timeout:.0f} s")


def start_mlflow_serve(
    procs: Processes, work: Path, tracking_uri: str, version: str, workers: int
) -> tuple[Started, str, float]:
    port = _free_port()
    env = _child_env(MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/{MODEL_NAME}/{version}",
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
    item = procs.start(f"mlflow-serve-w{workers}", argv, env, work)
    ready = _wait_ready(item, f"http://127.0.0.1:{port}/ping")
    return item, f"http://127.0.0.1:{port}", ready - launched


def check_agreement(ours: str, theirs: str, texts: list[str]) -> float:
    """Largest |difference| between the two servers' P(positive) on the same reviews."""
    features = build_features(pd.DataFrame({RAW_TEXT: texts}))
    columns = list(FEATURE_COLUMNS)
    worst = 0.0
    for text, row in zip(texts, features[columns].itertuples(index=False), strict=True):
        mine = _post_json(f"{ours}/predict", {RAW_TEXT: text})["probability"]
        values = [v.item() if hasattr(v, "item") else v for v in row]
        answer = _post_json(
            f"{theirs}/invocations", {"dataframe_split": {"columns": columns, "data": [values]}}
        )
        prediction = answer["predictions"][0]
        theirs_p = prediction[1] if isinstance(prediction, list) else prediction["1"]
        worst = max(worst, abs(float(mine) - float(theirs_p)))
    return worst


def run_load(
    url: str, bodies: Path, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
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
        str(duration),
        "--warmup",
        str(warmup),
        "--max-requests",
        "200000",
    ]
    done = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=duration + warmup + 120
    )
    if done.returncode != 0:
        raise BenchError(f"load generator failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


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
        "rounds": [
            {k: run[k] for k in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "errors")}
            for run in runs
        ],
    }


# ---- report --------------------------------------------------------------------------------------


def _table(results: list[dict[str, Any]]) -> str:
    header = f"{'server':<10} {'workers':>7} {'conc':>5} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r['server']:<10} {r['workers']:>7} {r['concurrency']:>5} {r['rps']:>9.1f} "
            f"{r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['errors']:>7}"
        )
    return "\n".join(lines)


def _verdicts(report: dict[str, Any]) -> list[str]:
    by_key = {(r["server"], r["workers"], r["concurrency"]): r for r in report["results"]}
    lines = []
    floor = report["floor_ms"]
    for workers in report["workers"]:
        ours = by_key.get(("driftloop", workers, 32))
        theirs = by_key.get(("mlflow", workers, 32))
        if ours and theirs and theirs["rps"] > 0:
            ratio = ours["rps"] / theirs["rps"]
            lower = ours["p99_ms"] < theirs["p99_ms"]
            lines.append(
                f"workers={workers}, concurrency 32: {ratio:.1f}x MLflow's requests/s "
                f"(target >= 5x: {'met' if ratio >= 5 else 'NOT met'}), p99 "
                f"{ours['p99_ms']:.1f} vs {theirs['p99_ms']:.1f} ms "
                f"({'lower' if lower else 'NOT lower'})"
            )
        single = by_key.get(("driftloop", workers, 1))
        if single:
            bound = 1.5 * floor + 1.0
            lines.append(
                f"workers={workers}, concurrency 1: p50 {single['p50_ms']:.2f} ms vs bound "
                f"1.5 x floor {floor:.2f} + 1 = {bound:.2f} ms "
                f"({'met' if single['p50_ms'] <= bound else 'NOT met'})"
            )
    for workers, seconds in report["startup_seconds_by_workers"]["driftloop"].items():
        lines.append(
            f"workers={workers}, start-up to /ready: {seconds:.1f} s (target <= 10 s: "
            f"{'met' if seconds <= 10 else 'NOT met'}); MLflow's server: "
            f"{report['startup_seconds_by_workers']['mlflow'][workers]:.1f} s"
        )
    return lines


def _load_average() -> list[float]:
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so the cleanup in `finally` blocks runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="driftloop-serving-bench-"))
    procs = Processes()
    print(f"work folder: {work}")
    load_before = _load_average()
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
        floor = measure_floor(version, texts[:200])
        print(
            f"floor: in-process predict_proba of one review {floor['floor_ms']:.2f} ms "
            f"(median; build_features alone {floor['features_ms']:.2f} ms)"
        )
        ours_bodies, theirs_bodies = write_bodies(texts, work)
        results: list[dict[str, Any]] = []
        startup: dict[str, dict[int, float]] = {"driftloop": {}, "mlflow": {}}
        agreement: dict[int, float] = {}
        for workers in args.workers:
            api, api_url, api_start = start_driftloop(procs, work, tracking_uri, workers)
            startup["driftloop"][workers] = round(api_start, 2)
            print(f"driftloop ({workers} worker(s)) ready in {api_start:.1f} s")
            mlf, mlf_url, mlf_start = start_mlflow_serve(
                procs, work, tracking_uri, version, workers
            )
            startup["mlflow"][workers] = round(mlf_start, 2)
            print(f"mlflow models serve ({workers} worker(s)) ready in {mlf_start:.1f} s")
            agreement[workers] = check_agreement(api_url, mlf_url, texts[:20])
            print(
                f"same reviews, largest |P difference| between the servers: {agreement[workers]:.3g}"
            )
            targets = (
                ("driftloop", f"{api_url}/predict", ours_bodies),
                ("mlflow", f"{mlf_url}/invocations", theirs_bodies),
            )
            runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
            # Rounds alternate the servers, so a change in the machine's load hits both alike.
            for round_index in range(args.rounds):
                for concurrency in args.concurrency:
                    for server, url, bodies in targets:
                        measured = run_load(
                            url, bodies, concurrency, args.duration, warmup=args.warmup
                        )
                        runs.setdefault((server, concurrency), []).append(measured)
                        print(
                            f"  round {round_index + 1} {server:<9} w={workers} "
                            f"c={concurrency:<3} {measured['rps']:8.1f} req/s  "
                            f"p50 {measured['p50_ms']:7.2f} ms  p99 {measured['p99_ms']:8.2f} ms  "
                            f"errors {measured['errors']}"
                        )
            for (server, concurrency), measured_runs in runs.items():
                results.append(summarise_runs(server, workers, concurrency, measured_runs))
            procs.stop(api)
            procs.stop(mlf)
        results.sort(key=lambda r: (r["workers"], r["server"], r["concurrency"]))
        report = {
            "results": results,
            "floor_ms": floor["floor_ms"],
            "startup_seconds": {
                "driftloop": startup["driftloop"][args.workers[0]],
                "mlflow": startup["mlflow"][args.workers[0]],
            },
            "startup_seconds_by_workers": startup,
            "features_ms": floor["features_ms"],
            "workers": list(args.workers),
            "max_probability_difference": max(agreement.values()) if agreement else None,
            "model": {"name": MODEL_NAME, "version": version, "valid_metrics": valid_metrics},
            "data": source,
            "payloads": (
                "driftloop receives the raw review text and computes the features inside the "
                "measured time; mlflow models serve receives the precomputed feature row of the "
                "same review (dataframe_split), as its input schema requires"
            ),
            "settings": {
                "rounds": args.rounds,
                "duration_seconds": args.duration,
                "warmup_seconds": args.warmup,
                "load_generator": "bench.loadgen (closed loop, keep-alive, separate process)",
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_average_before": load_before,
                "load_average_after": _load_average(),
            },
        }
        return report
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per run")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating runs per setting (median reported)"
    )
    parser.add_argument("--train-rows", type=int, default=12000)
    parser.add_argument("--request-texts", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)

    with _terminate_on_sigterm():
        report = run(args)
    print()
    print(_table(report["results"]))
    print(
        "\nPayloads differ: driftloop gets raw text and computes features within the measured "
        "time; mlflow models serve gets precomputed feature rows."
    )
    for line in _verdicts(report):
        print(line)
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

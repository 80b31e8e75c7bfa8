"""CPU time a serving worker spends per answered request, compared across code trees.

    python -m bench.request_cost [--api-root DIR ...] [--concurrency 1 32] [--duration 10]
                                 [--rounds 2] [--py-spy SECONDS] [--output FILE]

Requests per second depend on what else the machine runs; the CPU seconds the worker
process was charged per request answered do much less (each request does the same work
whether or not other processes compete for the cores). So this measures, for one worker
under a fixed closed-loop `wrk -t1 -cC` load (`bench/wrk_rotate.lua`, a different review
per request): the worker's utime + stime from `/proc/<pid>/stat` (all threads) and of its
main thread (the event loop) from `/proc/<pid>/task/<pid>/stat`, divided by the requests
wrk saw answered; the main thread's wall time per request with its schedstat's running time
and time spent waiting for a core (the machine's other load; the rest is waiting for work);
the model's wall time per request from the API's own histograms
(`driftloop_scoring_duration_seconds`, inflated by waits for a core on a loaded machine); and,
in this process, the CPU time per review of featurize + scorer in a loop by batch size.

Like `bench.serving_bench` it starts a throw-away `mlflow server`, trains and registers the
review model through the gate, and starts `python -m serving` with the prediction log and
metrics on; each `--api-root` (a checkout of this repository, default: this one) is
started in turn from that folder, on the same registry and model, rounds alternating the
trees so a change in the machine's load hits all alike. `--py-spy` also records each
tree's worker (raw collapsed stacks, `--threads --nonblocking`) for that many seconds
under the same load. Prints one JSON document (and writes it to `--output` when given).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.serving_bench import (
    MODEL_NAME,
    REPO_ROOT,
    Processes,
    Started,
    _child_env,
    _free_port,
    _load_average,
    _wait_ready,
    load_reviews,
    start_registry,
    train_and_register,
    write_bodies,
    write_feature_folder,
)
from bench.wrk import run_wrk

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int, tid: int | None = None) -> tuple[float, float]:
    """(utime, stime) of a process (all its threads) or of one of its threads, in seconds."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of the process's main thread."""
    fields = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    return int(fields[0]) / 1e9, int(fields[1]) / 1e9


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    return sum(cpu_times(pid, tid))


def scoring_totals(url: str) -> tuple[float, float, float]:
    """(model calls, rows scored, featurize + scorer seconds) of the review use case so far."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()

    def value(name: str) -> float:
        match = re.search(rf'^{name}\{{use_case="reviews"\}} (\S+)$', text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    return (
        value("driftloop_batch_size_rows_count"),
        value("driftloop_batch_size_rows_sum"),
        value("driftloop_scoring_duration_seconds_sum"),
    )


def start_api(
    procs: Processes, work: Path, root: Path, tracking_uri: str, tag: str
) -> tuple[Any, str]:
    port = _free_port()
    env = _child_env(
        MLFLOW_TRACKING_URI=tracking_uri,
        DRIFTLOOP_HOME=str(work / f"home-{tag}"),
        DRIFTLOOP_MODEL_NAME=MODEL_NAME,
        DRIFTLOOP_PORT=str(port),
        DRIFTLOOP_WORKERS="1",
        DRIFTLOOP_RATE_LIMIT_PER_SECOND="1000000",
        DRIFTLOOP_RATE_LIMIT_BURST="1000000",
        PYTHONPATH=str(root),
    )
    # `nice` execs the interpreter, so the child's pid is the worker's; run from `root`, whose
    # folder `python -m` puts first on sys.path.
    argv = ["nice", "-n", "19", sys.executable, "-m", "serving"]
    log_path = work / f"api-{tag}.log"
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            argv, env=env, cwd=root, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    item = Started(f"api-{tag}", process, log_path)
    procs.started.append(item)
    _wait_ready(item, f"http://127.0.0.1:{port}/ready")
    return item, f"http://127.0.0.1:{port}"


def measure(pid: int, url: str, bodies: Path, concurrency: int, duration: float) -> dict[str, Any]:
    total0, main0, split0 = cpu_seconds(pid), cpu_seconds(pid, pid), cpu_times(pid)
    sched0, wall0 = schedstat(pid), time.monotonic()
    calls0, rows0, model0 = scoring_totals(url)
    result = run_wrk(f"{url}/predict", bodies, concurrency, duration)
    total1, main1, split1 = cpu_seconds(pid), cpu_seconds(pid, pid), cpu_times(pid)
    sched1, wall1 = schedstat(pid), time.monotonic()
    calls1, rows1, model1 = scoring_totals(url)
    answered = max(result["requests"], 1)
    return {
        "requests": result["requests"],
        "errors": result["errors"],
        "cpu_ms_per_request": round((total1 - total0) * 1e3 / answered, 4),
        "user_ms_per_request": round((split1[0] - split0[0]) * 1e3 / answered, 4),
        "system_ms_per_request": round((split1[1] - split0[1]) * 1e3 / answered, 4),
        "main_thread_cpu_ms_per_request": round((main1 - main0) * 1e3 / answered, 4),
        # The main thread's wall time per request, split: running, runnable but waiting for a
        # core (other processes' load), and the rest (waiting for the client and the network).
        "main_thread_wall_ms_per_request": round((wall1 - wall0) * 1e3 / answered, 4),
        "main_thread_running_ms_per_request": round((sched1[0] - sched0[0]) * 1e3 / answered, 4),
        "main_thread_waiting_for_cpu_ms_per_request": round(
            (sched1[1] - sched0[1]) * 1e3 / answered, 4
        ),
        "model_ms_per_request": round((model1 - model0) * 1e3 / answered, 4),
        "rows_per_model_call": round((rows1 - rows0) / max(calls1 - calls0, 1), 2),
        "p50_ms": result["p50_ms"],
    }


def model_cpu_ms(version: str, texts: list[str], sizes: tuple[int, ...]) -> dict[str, float]:
    """This thread's CPU ms per row of what the micro-batcher does per batch, by batch size.

    The model loaded and compiled as the API does (`compile_scorer`), then `featurize` +
    `score` + the feature rows, over consecutive batches of each size of the request texts.
    """
    import mlflow.sklearn

    from serving.scoring import compile_scorer
    from serving.usecase import served_use_case

    use_case = served_use_case()
    pipeline = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}/{version}")
    positive_index = [int(c) for c in pipeline.classes_].index(1)
    scorer = compile_scorer(pipeline, positive_index, use_case=use_case)
    names = use_case.feature_columns
    result = {}
    for size in sizes:
        batches = [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)]
        rounds = []
        for _ in range(3):
            started = time.thread_time()
            for batch in batches:
                columns = use_case.featurize(batch)
                scorer.score(columns)
                list(zip(*(columns[name] for name in names), strict=True))
            rounds.append((time.thread_time() - started) * 1e3 / (len(batches) * size))
        result[str(size)] = round(min(rounds), 4)
    return result


def py_spy(pid: int, url: str, bodies: Path, concurrency: int, seconds: float, out: Path) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    recorder = subprocess.Popen(
        [
            spy,
            "record",
            "--threads",
            "--nonblocking",
            "-r",
            "250",
            "-d",
            str(int(seconds)),
            "-f",
            "raw",
            "-o",
            str(out),
            "-p",
            str(pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    run_wrk(f"{url}/predict", bodies, concurrency, seconds)
    recorder.wait(timeout=seconds + 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-root", type=Path, action="append", default=[])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=12000)
    parser.add_argument("--py-spy", type=float, default=0.0)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    roots = [root.resolve() for root in args.api_root] or [REPO_ROOT]
    work = Path(tempfile.mkdtemp(prefix="driftloop-request-cost-"))
    procs = Processes()
    report: dict[str, Any] = {"load_average_before": _load_average(), "runs": []}
    try:
        train, texts, _ = load_reviews(args.train_rows, 2000)
        tracking_uri = start_registry(procs, work)
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        version, _ = train_and_register(write_feature_folder(train, work / "features"))
        report["model_cpu_ms_per_row_by_batch_size"] = model_cpu_ms(version, texts, (1, 32))
        bodies = write_bodies(texts, work)["driftloop"]
        apis = [start_api(procs, work, root, tracking_uri, str(i)) for i, root in enumerate(roots)]
        for _, url in apis:  # warm-up: imports, first batches, allocator
            for concurrency in args.concurrency:
                run_wrk(f"{url}/predict", bodies, concurrency, 3)
        for round_index in range(args.rounds):
            for concurrency in args.concurrency:
                for root, (item, url) in zip(roots, apis, strict=True):
                    row = measure(item.process.pid, url, bodies, concurrency, args.duration)
                    row.update(root=str(root), concurrency=concurrency, round=round_index + 1)
                    report["runs"].append(row)
                    print(json.dumps(row), file=sys.stderr)
        if args.py_spy > 0:
            for index, (item, url) in enumerate(apis):
                for concurrency in args.concurrency:
                    out = work / f"py-spy-{index}-c{concurrency}.txt"
                    py_spy(item.process.pid, url, bodies, concurrency, args.py_spy, out)
                    report.setdefault("py_spy", []).append(
                        {"root": str(roots[index]), "concurrency": concurrency, "raw": str(out)}
                    )
    finally:
        procs.stop_all()
    report["load_average_after"] = _load_average()
    report["work"] = str(work)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""CPU time of the app's own request path (outside the model), in-process, without a network.

    python -m bench.asgi_cost [--requests 4000] [--concurrency 1 32] [--profile FILE]
                              [--http [--train-rows 12000]]

Drives the real app (`serving.app.create_app`: middleware, routing, `/predict`, the
micro-batcher, prediction log (SQLite, its writer thread running), metrics, JSON access
log to a file) straight through its ASGI interface, with a stand-in model whose scorer
returns a constant and whose features are precomputed, so what is timed is everything a
request costs in Python besides features and scorer, and nothing of the HTTP server or
the kernel's sockets (`bench.request_cost` measures those, with a real model, under
`wrk`). Reports the calling thread's CPU time (`time.thread_time`, so other processes on
the machine do not count) per request, the median of `--rounds` rounds, on uvloop, for
`--concurrency` requests in flight at once (concurrent requests share micro-batches, as
under load).
`--profile` writes cProfile statistics of one more round at the first concurrency.

`--http` also serves the same app with uvicorn (uvloop + httptools, as `python -m serving`
runs it) in this process and drives it with `wrk -t1 -cC` (`bench/wrk_rotate.lua`) from a
worker thread: this thread's CPU time per request answered then adds uvicorn's protocol
code, the event loop and the kernel's socket work, still without a model. With
`--train-rows N` it serves the benchmark's model instead (the baseline fitted on N IMDB
reviews, compiled as the API compiles it) and times `featurize` + scorer where they run, so
the CPU per request splits into the model and everything else on the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from serving.app import create_app
from serving.config import ServingSettings
from serving.logs import JsonFormatter
from serving.model import LoadedModel, ModelHolder
from serving.usecase import served_use_case

# The request texts: reviews the benchmark model never saw (`bench.serving_bench`), so bodies
# have the sizes real requests have; filled in by main().
TEXTS: list[str] = []


class _Timed:
    """This thread's CPU seconds inside the model calls (`featurize` + `score`), summed."""

    seconds = 0.0

    @classmethod
    def wrap(cls, call: Any) -> Any:
        def timed(*args: Any) -> Any:
            started = time.thread_time()
            try:
                return call(*args)
            finally:
                cls.seconds += time.thread_time() - started

        return timed


def real_scorer(train_rows: int) -> Any:
    """The benchmark's model (the baseline on IMDB reviews), compiled as the API compiles it."""
    from bench.serving_bench import load_reviews
    from contracts.reviews import RAW_LABEL, RAW_TEXT
    from features.reviews import build_features
    from serving.scoring import compile_scorer
    from training.data import feature_frame
    from training.models import build_baseline, resolve_params

    train = load_reviews(train_rows, 0)[0]
    frame = feature_frame(build_features(train, text_col=RAW_TEXT))
    pipeline = build_baseline(resolve_params(None)).fit(frame, train[RAW_LABEL])
    positive_index = [int(c) for c in pipeline.classes_].index(1)
    scorer = compile_scorer(pipeline, positive_index, use_case=served_use_case())
    return scorer, pipeline, positive_index


class _ConstantScorer:
    name = "constant"

    def score(self, columns: Any) -> np.ndarray:
        return np.full(len(next(iter(columns.values()))), 0.7)


def build(home: Path, train_rows: int = 0) -> Any:
    settings = ServingSettings(
        model_name="asgi-cost",
        mlflow_tracking_uri=f"sqlite:///{home / 'unused.db'}",
        prediction_log_url=f"sqlite:///{home / 'log.db'}",
        rate_limit_per_second=1e6,
        rate_limit_burst=1_000_000,
        gc_freeze=False,
        use_cases="reviews",
    )
    holder = ModelHolder(settings.mlflow_tracking_uri)
    scorer: Any = _ConstantScorer()
    pipeline, positive_index = None, 1
    if train_rows:
        scorer, pipeline, positive_index = real_scorer(train_rows)
        scorer.score = _Timed.wrap(scorer.score)
    holder._current = LoadedModel(
        name="asgi-cost",
        alias="champion",
        version="1",
        run_id=None,
        feature_contract_version=served_use_case().contract_version,
        loaded_at=datetime.now(UTC),
        load_seconds=0.0,
        pipeline=pipeline,
        positive_index=positive_index,
        scorer=scorer,
    )
    app = create_app(settings, holder)
    use_case = served_use_case()
    if train_rows:
        object.__setattr__(use_case, "featurize", _Timed.wrap(use_case.featurize))
        for prediction_log in app.state.runtime.prediction_logs:
            prediction_log.start()
        return app
    cache = {text: use_case.featurize([text]) for text in TEXTS}

    def featurize(texts: list[Any]) -> dict[str, list[Any]]:  # precomputed: no feature cost
        return {name: [cache[t][name][0] for t in texts] for name in use_case.feature_columns}

    object.__setattr__(use_case, "featurize", featurize)
    for prediction_log in app.state.runtime.prediction_logs:
        prediction_log.start()
    return app


async def one_request(app: Any, index: int, port: int) -> int:
    body = json.dumps({"text": TEXTS[index % len(TEXTS)]}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", port),
        "server": ("127.0.0.1", 8000),
        "state": {},
        "app": app,
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def run_round(app: Any, requests: int, concurrency: int) -> float:
    """CPU seconds of this thread per request, `concurrency` closed-loop clients."""
    per_client = requests // concurrency

    async def client(port: int) -> None:
        for i in range(per_client):
            if await one_request(app, i + port, 40000 + port) != 200:
                raise RuntimeError("a request was not answered with 200")

    started = time.thread_time()
    await asyncio.gather(*(client(c) for c in range(concurrency)))
    return (time.thread_time() - started) / (per_client * concurrency)


async def http_rounds(
    app: Any, home: Path, concurrency: int, seconds: float, rounds: int
) -> list[float]:
    """This thread's CPU seconds per request with uvicorn serving `app` to wrk."""
    import uvicorn

    from bench.wrk import run_wrk

    bodies = home / "bodies.jsonl"
    bodies.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/predict"
    await asyncio.to_thread(run_wrk, url, bodies, concurrency, 2)  # warm-up
    result = []
    for _ in range(rounds):
        started, model = time.thread_time(), _Timed.seconds
        measured = await asyncio.to_thread(run_wrk, url, bodies, concurrency, seconds)
        answered = max(measured["requests"], 1)
        result.append((time.thread_time() - started) / answered)
        result.append((_Timed.seconds - model) / answered)
    server.should_exit = True
    await serving
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="driftloop-asgi-cost-"))
    app = build(home, args.train_rows)
    if args.http:
        result: dict[str, Any] = {}
        for concurrency in args.concurrency:
            both = await http_rounds(app, home, concurrency, args.seconds, args.rounds)
            rounds, model = both[0::2], both[1::2]
            key = f"http_c{concurrency}"
            result[f"{key}_cpu_ms_per_request"] = round(statistics.median(rounds) * 1e3, 4)
            result[f"{key}_rounds_ms"] = [round(r * 1e3, 4) for r in rounds]
            if args.train_rows:
                outside = [(r - m) * 1e3 for r, m in zip(rounds, model, strict=True)]
                result[f"{key}_model_cpu_ms_per_request"] = round(statistics.median(model) * 1e3, 4)
                result[f"{key}_outside_model_cpu_ms_per_request"] = round(
                    statistics.median(outside), 4
                )
        return result
    await run_round(app, 500, 1)  # warm-up: middleware stack built, caches filled
    result = {}
    for concurrency in args.concurrency:
        rounds = [await run_round(app, args.requests, concurrency) for _ in range(args.rounds)]
        result[f"c{concurrency}_cpu_ms_per_request"] = round(statistics.median(rounds) * 1e3, 4)
        result[f"c{concurrency}_rounds_ms"] = [round(r * 1e3, 4) for r in rounds]
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        await run_round(app, args.requests, args.concurrency[0])
        profiler.disable()
        profiler.dump_stats(args.profile)
    for prediction_log in app.state.runtime.prediction_logs:
        prediction_log.close(10.0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--http", action="store_true", help="serve with uvicorn, load with wrk")
    parser.add_argument("--seconds", type=float, default=8.0, help="per wrk round (--http)")
    parser.add_argument("--texts", type=int, default=300, help="distinct review texts")
    parser.add_argument(
        "--train-rows",
        type=int,
        default=0,
        help="serve the benchmark's model trained on this many reviews (0: constant scorer)",
    )
    args = parser.parse_args()
    from bench.serving_bench import load_reviews

    TEXTS.extend(load_reviews(max(args.train_rows, 12000), args.texts)[1])
    with tempfile.NamedTemporaryFile("w", suffix=".log") as log_file:
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
        import uvloop  # the loop `python -m serving` runs on (uvicorn's "auto")

        uvloop.install()
        result = asyncio.run(main_async(args))
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()

"""Serving benchmark for the credit use case: `/v1/credit/predict` vs `mlflow models serve`.

    python -m bench.serving_credit [--workers 1] [--concurrency 1 32] [--duration 8]
                                   [--rounds 2] [--train-rows 20000] [--shadow-fraction 0.5]
                                   [--shadow-only]

The same comparison as `bench.serving_bench` (its process, registry and load-generator helpers
are reused), on a credit model:

1. A throw-away `mlflow server` registry; a LightGBM credit pipeline from the training zoo
   (`training.zoo.build_pipeline("lightgbm")`), trained on the UCI credit-card file from
   DRIFTLOOP_DATASETS (synthetic clients when it is missing) and registered as `champion`;
   a logistic-regression pipeline on the same rows registered as `challenger`.
2. The floor: in-process `predict_proba` of one client's precomputed feature frame (median).
3. Request bodies: this API gets the raw client row (its contract's `PredictRequest`) and
   computes features *and the top-three reason codes* (TreeSHAP) inside the measured time;
   MLflow's server gets the precomputed feature row (`dataframe_split`) of the same client.
4. Per worker count: both servers started, timed to ready, checked to give the same
   probabilities, and driven alternately by `wrk` (one thread, a different client per request,
   through `bench.serving_bench.run_load`) at each concurrency for
   `--rounds` rounds (medians reported).
5. Shadow challenger cost: the API with shadow scoring off and on (`--shadow-fraction` of
   rows also scored by the challenger in the worker's low-priority shadow process),
   alternated, at the highest concurrency; reports p50/p99 of both, the p99 change in per
   cent, and the rows the shadow process scored and skipped. Each "on" server is measured
   only once its shadow process holds the challenger.

Writes `bench/results/serving-credit.json` with the machine's load average before and after:
on a shared machine the absolute figures move with the load, the ratios less so.
`--shadow-only` runs steps 1 and 5 only and rewrites only the `shadow` block of the existing
file (with the load average before and after that measurement in it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.serving_bench import (
    REPO_ROOT,
    BenchError,
    Processes,
    Started,
    _child_env,
    _free_port,
    _load_average,
    _post_json,
    _table,
    _terminate_on_sigterm,
    _wait_ready,
    run_load,
    start_mlflow_serve,
    start_registry,
    summarise_runs,
)
from contracts.credit import FEATURE_CONTRACT_VERSION, PredictRequest
from core.settings import get_settings
from features.credit import FEATURE_COLUMNS, RAW_COLUMNS, build_features

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "serving-credit.json"
MODEL_NAME = "serving-bench-credit"
USE_CASE = "credit"


# ---- data and models ----------------------------------------------------------------------------


def load_clients(n_train: int, n_requests: int) -> tuple[pd.DataFrame, pd.Series, list[dict], str]:
    """Training rows (raw columns) and labels, and request rows (valid under the contract)."""
    from contracts.sources import load_sources, source_columns

    sources = load_sources()
    entry = sources["credit"]
    path = get_settings().datasets_dir / entry["file"]
    if path.is_file():
        frame = pd.read_csv(path, nrows=n_train + 4 * n_requests)
        source = f"UCI credit card ({entry['file']})"
    else:
        from synthetic.credit import generate

        entry = sources["credit_synthetic"]
        frame = generate(n_train + 4 * n_requests, seed=7)
        source = "synthetic clients (UCI file not found)"
    mapping = source_columns(entry, RAW_COLUMNS)
    raw = frame.rename(columns={f: c for c, f in mapping.items()})
    labels = frame[entry["label_column"]].astype("int64")
    train = raw.iloc[:n_train][list(RAW_COLUMNS)].reset_index(drop=True)
    requests: list[dict[str, Any]] = []
    for record in raw.iloc[n_train:][list(RAW_COLUMNS)].to_dict("records"):
        try:
            requests.append(PredictRequest.model_validate(record).model_dump())
        except ValueError:
            continue  # outside the contract: the API would answer 422
        if len(requests) == n_requests:
            break
    return train, labels.iloc[:n_train].reset_index(drop=True), requests, source


def train_and_register(
    train: pd.DataFrame, labels: pd.Series, n_estimators: int
) -> tuple[str, str, dict[str, Any]]:
    """Champion (LightGBM) and challenger (logistic regression) versions of MODEL_NAME."""
    import mlflow
    import mlflow.sklearn
    from sklearn.metrics import roc_auc_score

    from training.zoo import build_pipeline, layout_for, search_spaces_for, to_servable

    features = build_features(train)
    cut = int(0.8 * len(features))
    spaces, layout = search_spaces_for(USE_CASE), layout_for(USE_CASE)
    client = mlflow.MlflowClient()
    versions: dict[str, str] = {}
    metrics: dict[str, Any] = {}
    experiment = mlflow.set_experiment("serving-bench-credit")
    for alias, family, params in (
        ("champion", "lightgbm", {"n_estimators": n_estimators}),
        ("challenger", "logreg", None),
    ):
        model = build_pipeline(family, params, spaces=spaces, layout=layout)
        model = to_servable(model.fit(features.iloc[:cut], labels.iloc[:cut]))
        auc = roc_auc_score(labels.iloc[cut:], model.predict_proba(features.iloc[cut:])[:, 1])
        with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=alias):
            # As training logs it: MLflow's scoring server then answers predict_proba.
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                serialization_format="cloudpickle",
                pyfunc_predict_fn="predict_proba",
            )
        version = str(mlflow.register_model(info.model_uri, MODEL_NAME).version)
        client.set_model_version_tag(
            MODEL_NAME, version, "feature_contract_version", FEATURE_CONTRACT_VERSION
        )
        client.set_registered_model_alias(MODEL_NAME, alias, version)
        versions[alias] = version
        metrics[alias] = {"family": family, "version": version, "holdout_roc_auc": round(auc, 4)}
    return versions["champion"], versions["challenger"], metrics


def measure_floor(version: str, rows: list[dict[str, Any]], repeats: int = 3) -> dict[str, float]:
    """Median in-process predict_proba of one client's feature frame, and feature time."""
    import mlflow.sklearn

    pipeline = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}/{version}")
    frames = [build_features(pd.DataFrame([row])) for row in rows]
    for frame in frames[:20]:
        pipeline.predict_proba(frame)
    model_times: list[float] = []
    feature_times: list[float] = []
    for _ in range(repeats):
        for row, frame in zip(rows, frames, strict=True):
            started = time.perf_counter()
            pipeline.predict_proba(frame)
            model_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            build_features(pd.DataFrame([row]))
            feature_times.append(time.perf_counter() - started)
    return {
        "floor_ms": round(statistics.median(model_times) * 1e3, 3),
        "features_ms": round(statistics.median(feature_times) * 1e3, 3),
    }


def _feature_payload(row: dict[str, Any]) -> dict[str, Any]:
    features = build_features(pd.DataFrame([row]))[list(FEATURE_COLUMNS)]
    values = [v.item() if isinstance(v, np.generic) else v for v in features.iloc[0].tolist()]
    return {"dataframe_split": {"columns": list(FEATURE_COLUMNS), "data": [values]}}


def write_bodies(rows: list[dict[str, Any]], folder: Path) -> tuple[Path, Path]:
    """One request body per line: the raw row for this API, the feature row for MLflow's."""
    ours, theirs = folder / "driftloop-credit.jsonl", folder / "mlflow-credit.jsonl"
    with ours.open("w") as out_ours, theirs.open("w") as out_theirs:
        for row in rows:
            out_ours.write(json.dumps(row) + "\n")
            out_theirs.write(json.dumps(_feature_payload(row)) + "\n")
    return ours, theirs


# ---- servers ------------------------------------------------------------------------------------


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def start_driftloop(
    procs: Processes,
    work: Path,
    tracking_uri: str,
    workers: int,
    *,
    shadow_fraction: float = 0.0,
    tag: str = "",
) -> tuple[Started, str, float]:
    port = _free_port()
    env = _child_env(
        MLFLOW_TRACKING_URI=tracking_uri,
        DRIFTLOOP_HOME=str(work / f"driftloop-home{tag}"),
        DRIFTLOOP_USE_CASES=USE_CASE,
        DRIFTLOOP_MODEL_NAME_CREDIT=MODEL_NAME,
        DRIFTLOOP_PORT=str(port),
        DRIFTLOOP_WORKERS=str(workers),
        DRIFTLOOP_RATE_LIMIT_PER_SECOND="1000000",
        DRIFTLOOP_RATE_LIMIT_BURST="1000000",
        DRIFTLOOP_SHADOW_FRACTION=str(shadow_fraction),
        DRIFTLOOP_ACCESS_LOG="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    launched = time.monotonic()
    item = procs.start(
        f"driftloop-credit-w{workers}{tag}", [sys.executable, "-m", "serving"], env, work
    )
    base = f"http://127.0.0.1:{port}"
    # /ready follows the review model, which this registry does not have: wait on credit's.
    ready = _wait_ready(item, f"{base}/v1/{USE_CASE}/model-info")
    if shadow_fraction > 0:
        deadline = time.monotonic() + 120
        while _get_json(f"{base}/v1/{USE_CASE}/model-info")["shadow"]["version"] is None:
            if time.monotonic() > deadline:
                raise BenchError(f"the challenger was not loaded; see {item.log_path}")
            time.sleep(0.2)
    return item, base, ready - launched


def check_agreement(ours: str, theirs: str, rows: list[dict[str, Any]]) -> float:
    """Largest |difference| between the two servers' P(default) on the same clients."""
    worst = 0.0
    for row in rows:
        mine = _post_json(f"{ours}/v1/{USE_CASE}/predict", row)["probability"]
        prediction = _post_json(f"{theirs}/invocations", _feature_payload(row))["predictions"][0]
        theirs_p = prediction[1] if isinstance(prediction, list) else prediction["1"]
        worst = max(worst, abs(float(mine) - float(theirs_p)))
    return worst


def _model_info(item: Started, url: str) -> dict[str, Any]:
    """`/v1/credit/model-info`, or a BenchError with the server's log if it stopped answering."""
    try:
        info: dict[str, Any] = _get_json(f"{url}/v1/{USE_CASE}/model-info")
    except (OSError, ValueError) as error:
        state = item.process.poll()
        tail = item.log_path.read_text(errors="replace")[-3000:]
        raise BenchError(
            f"{item.name} did not answer /model-info after the load ({error}; process "
            f"{'running' if state is None else f'exited with {state}'}); {item.log_path}:\n{tail}"
        ) from error
    return info


def _shadow_counts(item: Started, url: str) -> tuple[int, dict[str, int]]:
    """Rows the shadow process scored, and skipped by reason, once it stopped making progress.

    Read after the load: the shadow process runs at the lowest CPU priority, so it may still
    be scoring what it was sent while the load ran (bounded by the queue); waiting for its
    count to settle is not measured time.
    """
    scored, settled_reads = -1, 0
    for _ in range(60):
        now = int(_model_info(item, url)["shadow"]["scored_rows"])
        settled_reads = settled_reads + 1 if now == scored else 0
        scored = now
        if settled_reads >= 2:
            break
        time.sleep(1.0)
    skipped: dict[str, int] = {}
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("driftloop_shadow_skipped_rows_total{"):
            labels, value = line.rsplit(" ", 1)
            reason = labels.split('reason="', 1)[1].split('"', 1)[0]
            skipped[reason] = skipped.get(reason, 0) + int(float(value))
    return scored, skipped


def measure_shadow(
    procs: Processes, work: Path, tracking_uri: str, bodies: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Champion latency with shadow scoring off and on, alternated; one worker."""
    concurrency = max(args.concurrency)
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    scored = 0
    skipped: dict[str, int] = {}
    load_before = _load_average()
    for round_index in range(args.rounds):
        for mode in ("off", "on"):
            fraction = args.shadow_fraction if mode == "on" else 0.0
            api, url, _ = start_driftloop(
                procs, work, tracking_uri, 1, shadow_fraction=fraction, tag=f"-shadow-{mode}"
            )
            measured = run_load(
                f"{url}/v1/{USE_CASE}/predict", bodies, concurrency, args.duration, args.warmup
            )
            if mode == "on":
                round_scored, round_skipped = _shadow_counts(api, url)
                scored += round_scored
                for reason, rows in round_skipped.items():
                    skipped[reason] = skipped.get(reason, 0) + rows
            else:
                _model_info(api, url)  # the server must have survived the load, too
            procs.stop(api)
            runs[mode].append(measured)
            print(
                f"  shadow round {round_index + 1} {mode:<3} c={concurrency:<3} "
                f"{measured['rps']:8.1f} req/s  p50 {measured['p50_ms']:7.2f} ms  "
                f"p99 {measured['p99_ms']:8.2f} ms  errors {measured['errors']}"
            )
    off = summarise_runs("shadow-off", 1, concurrency, runs["off"])
    on = summarise_runs("shadow-on", 1, concurrency, runs["on"])
    by_round = [
        round(100 * (b["p99_ms"] / a["p99_ms"] - 1), 1)
        for a, b in zip(runs["off"], runs["on"], strict=True)
    ]
    answered = sum(int(r["requests"]) for r in runs["on"])
    return {
        "fraction": args.shadow_fraction,
        "concurrency": concurrency,
        "off": off,
        "on": on,
        "p99_change_percent": round(100 * (on["p99_ms"] / off["p99_ms"] - 1), 1),
        # Each round's on-vs-off change (the runs of a round are back to back): their spread
        # says how much of the median change the machine's noise could explain.
        "p99_change_percent_by_round": by_round,
        "p50_change_percent": round(100 * (on["p50_ms"] / off["p50_ms"] - 1), 1),
        "rps_change_percent": round(100 * (on["rps"] / off["rps"] - 1), 1),
        "shadow_scored_rows": scored,
        "shadow_skipped_rows": skipped,
        "answered_rows_measured": answered,
        "load_average_before": load_before,
        "load_average_after": _load_average(),
        "note": (
            "shadow_scored_rows (and shadow_skipped_rows, by reason) count every row sampled "
            "while the load ran (warm-up included), read once the shadow process stopped "
            "making progress; answered_rows_measured only the measured requests"
        ),
    }


# ---- run ----------------------------------------------------------------------------------------


def run_shadow_only(args: argparse.Namespace) -> dict[str, Any]:
    """Registry, models and request bodies as in `run`, then only the shadow off/on runs."""
    work = Path(tempfile.mkdtemp(prefix="driftloop-serving-credit-"))
    procs = Processes()
    print(f"work folder: {work}")
    try:
        train, labels, rows, source = load_clients(args.train_rows, args.request_rows)
        print(f"data: {source}; {len(train)} training rows, {len(rows)} request rows")
        tracking_uri = start_registry(procs, work)
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        _version, _challenger, models = train_and_register(train, labels, args.n_estimators)
        print(f"models: {models}")
        ours_bodies, _theirs = write_bodies(rows, work)
        return measure_shadow(procs, work, tracking_uri, ours_bodies, args)
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _print_shadow(shadow: dict[str, Any]) -> None:
    print(
        f"shadow challenger on {100 * shadow['fraction']:.0f} % of rows, c={shadow['concurrency']}: "
        f"p99 {shadow['off']['p99_ms']:.2f} -> {shadow['on']['p99_ms']:.2f} ms "
        f"({shadow['p99_change_percent']:+.1f} %, target <= +10 %; per round "
        f"{', '.join(f'{c:+.1f} %' for c in shadow['p99_change_percent_by_round'])}), "
        f"{shadow['shadow_scored_rows']} rows shadow-scored, skipped {shadow['shadow_skipped_rows']}"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="driftloop-serving-credit-"))
    procs = Processes()
    print(f"work folder: {work}")
    load_before = _load_average()
    try:
        train, labels, rows, source = load_clients(args.train_rows, args.request_rows)
        print(f"data: {source}; {len(train)} training rows, {len(rows)} request rows")
        tracking_uri = start_registry(procs, work)
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        started = time.monotonic()
        version, _challenger, models = train_and_register(train, labels, args.n_estimators)
        print(f"models: {models} trained and registered in {time.monotonic() - started:.1f} s")
        floor = measure_floor(version, rows[:200])
        print(
            f"floor: in-process predict_proba of one client {floor['floor_ms']:.2f} ms "
            f"(median; build_features alone {floor['features_ms']:.2f} ms)"
        )
        ours_bodies, theirs_bodies = write_bodies(rows, work)
        results: list[dict[str, Any]] = []
        startup: dict[str, dict[int, float]] = {"driftloop": {}, "mlflow": {}}
        agreement: dict[int, float] = {}
        for workers in args.workers:
            api, api_url, api_start = start_driftloop(procs, work, tracking_uri, workers)
            startup["driftloop"][workers] = round(api_start, 2)
            print(f"driftloop ({workers} worker(s)) ready in {api_start:.1f} s")
            mlf, mlf_url, mlf_startup = start_mlflow_serve(
                procs,
                work,
                tracking_uri,
                version,
                workers,
                model_name=MODEL_NAME,
                label="mlflow-serve-credit",
            )
            mlf_start = mlf_startup.first
            startup["mlflow"][workers] = round(mlf_start, 2)
            print(f"mlflow models serve ({workers} worker(s)) ready in {mlf_start:.1f} s")
            agreement[workers] = check_agreement(api_url, mlf_url, rows[:20])
            print(f"largest |P difference| between the servers: {agreement[workers]:.3g}")
            targets = (
                ("driftloop", f"{api_url}/v1/{USE_CASE}/predict", ours_bodies),
                ("mlflow", f"{mlf_url}/invocations", theirs_bodies),
            )
            runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
            for round_index in range(args.rounds):
                for concurrency in args.concurrency:
                    for server, url, bodies in targets:
                        measured = run_load(url, bodies, concurrency, args.duration, args.warmup)
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
        shadow = (
            measure_shadow(procs, work, tracking_uri, ours_bodies, args)
            if args.shadow_fraction > 0
            else None
        )
        return {
            "use_case": USE_CASE,
            "results": results,
            "shadow": shadow,
            "floor_ms": floor["floor_ms"],
            "features_ms": floor["features_ms"],
            "startup_seconds_by_workers": startup,
            "workers": list(args.workers),
            "max_probability_difference": max(agreement.values()) if agreement else None,
            "models": models,
            "data": source,
            "payloads": (
                "driftloop receives the raw client row, validates it against the credit "
                "contract and computes the features and the top-three reason codes (TreeSHAP) "
                "inside the measured time; mlflow models serve receives the precomputed feature "
                "row of the same client (dataframe_split)"
            ),
            "settings": {
                "rounds": args.rounds,
                "duration_seconds": args.duration,
                "warmup_seconds": args.warmup,
                "concurrency": list(args.concurrency),
                "load_generator": (
                    "wrk, one thread, closed loop, keep-alive, a different client row per "
                    "request (bench/wrk_rotate.lua); its own CPU use is in each round"
                ),
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_average_before": load_before,
                "load_average_after": _load_average(),
                "note": args.machine_note,
            },
        }
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
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per setting")
    parser.add_argument("--train-rows", type=int, default=20000)
    parser.add_argument("--request-rows", type=int, default=2000)
    parser.add_argument("--n-estimators", type=int, default=300)
    parser.add_argument(
        "--shadow-fraction",
        type=float,
        default=0.5,
        help="share of rows the challenger shadow-scores in the shadow run (0: skip it)",
    )
    parser.add_argument(
        "--shadow-only",
        action="store_true",
        help="run only the shadow off/on comparison; rewrite only the `shadow` block of --output",
    )
    parser.add_argument("--machine-note", default="", help="recorded as machine.note")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)

    if args.shadow_only:
        if args.shadow_fraction <= 0:
            parser.error("--shadow-only needs --shadow-fraction > 0")
        if not args.output.is_file():
            parser.error(f"--shadow-only updates an existing {args.output}; run the full bench")
        with _terminate_on_sigterm():
            shadow = run_shadow_only(args)
        print()
        _print_shadow(shadow)
        report = json.loads(args.output.read_text())
        report["shadow"] = shadow
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"updated the shadow block of {args.output}")
        return 0

    with _terminate_on_sigterm():
        report = run(args)
    print()
    print(_table(report["results"]))
    shadow = report["shadow"]
    if shadow:
        _print_shadow(shadow)
    machine = report["machine"]
    print(
        f"load average before/after: {machine['load_average_before']} / "
        f"{machine['load_average_after']} on {machine['cpus']} CPUs"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make demo-drift`: the closed loop on a real domain shift, on the embedded stack.

    python deploy/local/drift_demo.py [--imdb-rows 6000] [--traffic 500] ...

1. Lands labelled IMDB movie reviews (the original aclImdb *train* split) and
   trains the starting champion through `training_pipeline`.
2. Day 1: a day of in-domain traffic (IMDB reviews of the aclImdb *test*
   split) through the API, with feedback labels. `drift_check` over that
   day's window must not trigger anything.
3. Labelled Amazon and Kindle product reviews land in the landing folder
   (DRIFTLOOP_HOME/landing/reviews/amazon/, .../kindle/).
4. Day 2: a day of product-review traffic (rows not among the landed ones)
   through the API, with feedback labels. `drift_check`, with no data Param,
   detects the shift and triggers `training_pipeline` on the champion's
   training snapshot + the feedback-labelled predictions + the landed files;
   the gate decides; the API hot-reloads the new champion while requests keep
   flowing.
5. Day 3: the day-2 reviews again, now answered by whichever model is champion,
   so the terminal can show realised quality before and after.

Everything goes through the real services (Airflow REST API, MLflow, the
FastAPI server); nothing is scored in this process. The real datasets are read
from DRIFTLOOP_DATASETS (default ../shared/datasets); the landed files and a
JSON summary are written under DRIFTLOOP_HOME/drift-demo/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stack

IMDB_FILE = "imdb_50k.csv.gz"
IMDB_INDEX = "imdb_50k_aclimdb_index.csv.gz"
MODEL_NAME = os.environ.get("DRIFTLOOP_MODEL_NAME", "review-sentiment")


class DemoError(RuntimeError):
    """The scenario cannot go on; the message says why and where to look."""


# ---------------------------------------------------------------------------------------
# Data: what lands for training, what arrives as traffic. Traffic never overlaps
# with anything a model is trained on.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    imdb_train: Path  # landed before day 1: IMDB train-split rows, original columns
    amazon_landed: Path  # landed before day 2: Amazon rows, original columns
    kindle_landed: Path  # landed before day 2: Kindle rows, original columns
    day1: pd.DataFrame  # text, label: IMDB test-split reviews
    day2: pd.DataFrame  # text, label, origin: held-out Amazon + Kindle reviews


def datasets_dir() -> Path:
    from core.settings import get_settings

    return get_settings().datasets_dir


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DemoError(
            f"{path.name} not found in {path.parent}: the drift demo replays the real public "
            "datasets; set DRIFTLOOP_DATASETS to the folder that holds them"
        )
    return path


def _usable_text(texts: pd.Series) -> pd.Series:
    return texts.notna() & texts.astype(str).str.strip().ne("")


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False, compression={"method": "gzip", "mtime": 0})
    tmp.replace(path)
    return path


def prepare_scenario(
    datasets: Path,
    out_dir: Path,
    *,
    imdb_rows: int,
    amazon_rows: int,
    kindle_rows: int,
    traffic: int,
    seed: int = 0,
) -> Scenario:
    """Write the landed files under `out_dir` and draw both days' traffic.

    Landed files keep the source's original columns, so they go through the
    same ingestion, validation and quarantine as any other delivery. Day-2
    traffic is drawn from the labelled product rows that were *not* landed.
    """
    from contracts.reviews import load_sources, map_label

    sources = load_sources()
    rng = np.random.default_rng(seed)
    imdb = pd.read_csv(_need(datasets / IMDB_FILE), keep_default_na=False)
    index = pd.read_csv(_need(datasets / IMDB_INDEX), usecols=["row", "aclimdb_split"])
    if len(index) != len(imdb):
        raise DemoError(f"{IMDB_INDEX} has {len(index)} rows but {IMDB_FILE} has {len(imdb)}")
    split = index.sort_values("row")["aclimdb_split"].to_numpy()
    train_rows = np.flatnonzero(split == "train")
    test_rows = np.flatnonzero(split == "test")
    chosen = rng.choice(train_rows, size=min(imdb_rows, len(train_rows)), replace=False)
    imdb_train = _write_csv(imdb.iloc[np.sort(chosen)], out_dir / "landing" / "imdb_train.csv.gz")
    day1_rows = rng.choice(test_rows, size=min(traffic, len(test_rows)), replace=False)
    day1 = pd.DataFrame(
        {
            "text": imdb["review"].iloc[day1_rows].to_numpy(),
            "label": (imdb["sentiment"].iloc[day1_rows] == "positive").astype(int).to_numpy(),
        }
    )

    def split_product(name: str, landed_n: int) -> tuple[Path, pd.DataFrame]:
        spec = sources[name]
        text_col, label_col = spec["text_column"], spec["label_column"]
        raw = pd.read_csv(_need(datasets / spec["file"]), low_memory=False)
        order = rng.permutation(len(raw))
        landed = raw.iloc[np.sort(order[:landed_n])]
        rest = raw.iloc[order[landed_n:]]
        labels = rest[label_col].map(lambda v: map_label(v, spec["label_map"]))
        held = rest[_usable_text(rest[text_col]) & labels.notna()]
        # A review text that also appears among the landed rows is not held out.
        held = held[~held[text_col].isin(set(landed[text_col].dropna()))]
        out = pd.DataFrame(
            {
                "text": held[text_col].astype(str).to_numpy(),
                "label": labels[held.index].astype(int).to_numpy(),
                "origin": name,
            }
        )
        return _write_csv(landed, out_dir / "landing" / f"{name}.csv.gz"), out

    amazon_landed, amazon_held = split_product("amazon", amazon_rows)
    kindle_landed, kindle_held = split_product("kindle", kindle_rows)
    half = traffic // 2
    parts = [
        amazon_held.sample(n=min(traffic - half, len(amazon_held)), random_state=seed),
        kindle_held.sample(n=min(half, len(kindle_held)), random_state=seed),
    ]
    day2 = pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return Scenario(imdb_train, amazon_landed, kindle_landed, day1, day2)


# ---------------------------------------------------------------------------------------
# Talking to the stack
# ---------------------------------------------------------------------------------------


def post(path: str, body: Any, timeout: float = 30) -> Any:
    return stack.http_json("POST", f"{stack.API_URL}{path}", body, timeout=timeout)


def serve_day(day: pd.DataFrame, *, feedback: bool, workers: int = 8) -> dict[str, Any]:
    """Send every review as one POST /predict, then its label to /feedback.

    Returns the logged window (ISO bounds), the scores and the versions that answered.
    """
    start = datetime.now(UTC) - timedelta(seconds=1)

    def one(text: str) -> dict[str, Any]:
        return dict(post("/predict", {"text": text}))

    with ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(one, day["text"].tolist()))
    sent_feedback = 0
    if feedback:
        time.sleep(1.0)  # the prediction log writes in batches (0.25 s by default)

        def label(pair: tuple[dict[str, Any], int]) -> None:
            answer, value = pair
            for attempt in range(5):
                try:
                    post("/feedback", {"request_id": answer["request_id"], "label": int(value)})
                    return
                except urllib.error.HTTPError as exc:
                    if exc.code != 404 or attempt == 4:
                        raise
                    time.sleep(1.0)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(label, zip(answers, day["label"].tolist(), strict=True)))
        sent_feedback = len(answers)
    time.sleep(1.0)
    end = datetime.now(UTC) + timedelta(seconds=1)
    scores = np.array([a["probability"] for a in answers])
    return {
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "requests": len(answers),
        "feedback": sent_feedback,
        "versions": sorted({str(a["model_version"]) for a in answers}),
        "quality": quality(day["label"].to_numpy(), scores),
    }


def quality(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    predicted = (scores >= 0.5).astype(int)
    both = len(set(labels.tolist())) == 2
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)) if both else None,
        "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
        "positive_share": float(labels.mean()),
    }


def run_dag(dag_id: str, conf: dict[str, Any], run_id: str) -> tuple[str, dict[str, str]]:
    stack.wait_for_dag(dag_id)
    stack.trigger(dag_id, conf, run_id=run_id)
    state = stack.wait_for_run(dag_id, run_id)
    return state, task_states(dag_id, run_id)


def task_states(dag_id: str, run_id: str) -> dict[str, str]:
    quoted = urllib.parse.quote(run_id, safe="")
    url = f"{stack.AIRFLOW_URL}/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances"
    tasks = stack.http_json("GET", url)["task_instances"]
    return {t["task_id"]: str(t.get("state")) for t in tasks if t.get("map_index", -1) < 0}


def xcom(dag_id: str, run_id: str, task_id: str) -> Any:
    quoted = urllib.parse.quote(run_id, safe="")
    url = (
        f"{stack.AIRFLOW_URL}/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/"
        f"{task_id}/xcomEntries/return_value"
    )
    value = stack.http_json("GET", url).get("value")
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


def find_triggered_run(drift_run_id: str, timeout: float = 120) -> dict[str, Any]:
    """The training_pipeline run whose conf names this drift_check run."""
    url = f"{stack.AIRFLOW_URL}/api/v2/dags/training_pipeline/dagRuns?limit=50&order_by=-run_after"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in stack.http_json("GET", url)["dag_runs"]:
            trigger = (run.get("conf") or {}).get("trigger") or {}
            if trigger.get("dag_run") == drift_run_id:
                return dict(run)
        time.sleep(3)
    raise DemoError(f"no training_pipeline run names drift_check run {drift_run_id}")


def seconds_between(earlier: str | None, later: str | None) -> float | None:
    """Seconds from one ISO timestamp to another (None when either is missing)."""
    if not earlier or not later:
        return None
    first = datetime.fromisoformat(earlier.replace("Z", "+00:00"))
    second = datetime.fromisoformat(later.replace("Z", "+00:00"))
    if first.tzinfo is None:
        first = first.replace(tzinfo=UTC)
    if second.tzinfo is None:
        second = second.replace(tzinfo=UTC)
    return (second - first).total_seconds()


def model_info() -> dict[str, Any]:
    return dict(stack.http_json("GET", f"{stack.API_URL}/model-info"))


def wait_for_version(version: str, timeout: float) -> float:
    """Seconds until the API serves `version` (it polls the alias by itself)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with _quiet():
            if str(model_info().get("version")) == version:
                return time.monotonic() - started
        time.sleep(1.0)
    raise DemoError(
        f"the API still serves v{model_info().get('version')} {timeout:.0f} s after champion "
        f"moved to v{version}; see {stack.HOME / 'logs' / 'api.log'}"
    )


class _quiet:
    """Swallow transient connection errors while polling."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, OSError)


class Background:
    """Steady requests while something else happens; counts answers and failures."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.ok = 0
        self.failed: list[str] = []
        self.versions: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            try:
                answer = post("/predict", {"text": self.texts[i % len(self.texts)]}, timeout=10)
                self.ok += 1
                key = str(answer["model_version"])
                self.versions[key] = self.versions.get(key, 0) + 1
            except Exception as exc:
                self.failed.append(repr(exc))
            i += 1
            time.sleep(0.05)

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def registry() -> Any:
    os.environ["MLFLOW_TRACKING_URI"] = stack.MLFLOW_URL
    import mlflow

    return mlflow.MlflowClient(tracking_uri=stack.MLFLOW_URL)


def champion_version(client: Any) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(MODEL_NAME, "champion").version)
    except MlflowException:
        return None


def newest_version(client: Any) -> Any:
    versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    if not versions:
        raise DemoError(f"no version of {MODEL_NAME} is registered")
    return max(versions, key=lambda v: int(v.version))


# ---------------------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 74 - len(text)), flush=True)


def _drift_line(drift: dict[str, Any]) -> str:
    checks = drift.get("checks") or {}
    parts = []
    for name, check in checks.items():
        if isinstance(check, dict):
            flag = "DRIFT" if check.get("fired") else "ok"
            parts.append(f"{name} {_fmt(check.get('value'))} {flag}")
    return ", ".join(parts)


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    out_dir = stack.HOME / "drift-demo"
    stamp = time.strftime("%Y%m%dT%H%M%S")
    summary: dict[str, Any] = {"model_name": MODEL_NAME, "started": stamp}
    search = {
        "families": args.families,
        "n_trials": args.n_trials,
        "family_timeout_s": args.family_timeout,
    }

    _banner("0. data: what lands, what arrives as traffic")
    scenario = prepare_scenario(
        datasets_dir(),
        out_dir,
        imdb_rows=args.imdb_rows,
        amazon_rows=args.amazon_rows,
        kindle_rows=args.kindle_rows,
        traffic=args.traffic,
        seed=args.seed,
    )
    print(f"  landed  {scenario.imdb_train}  ({args.imdb_rows} IMDB reviews, aclImdb train split)")
    print(f"  day 1   {len(scenario.day1)} IMDB reviews of the aclImdb test split")
    origins = scenario.day2["origin"].value_counts().to_dict()
    print(f"  day 2   {len(scenario.day2)} product reviews not among the landed rows: {origins}")

    from monitoring.retrain_data import landing_dir

    landing = landing_dir("reviews")
    for source in ("amazon", "kindle"):
        for old in (landing / source).glob("demo_*"):
            old.unlink()  # an earlier demo's delivery: the product files land on day 2

    _banner("1. start the stack")
    stack.up()
    client = registry()

    _banner("2. train the starting champion on IMDB (training_pipeline)")
    conf = {
        "data_path": str(scenario.imdb_train),
        "source": "imdb",
        "model_name": MODEL_NAME,
        "reason": "demo-drift: starting champion on IMDB movie reviews",
        **search,
    }
    state, _ = run_dag("training_pipeline", conf, f"demo_drift_imdb__{stamp}")
    if state != "success":
        raise DemoError(f"training_pipeline ended {state}: see {stack.AIRFLOW_URL}")
    imdb_version = newest_version(client)
    start_version = str(imdb_version.version)
    if champion_version(client) != start_version:
        # A champion from an earlier demo beat or matched it on IMDB; the scenario
        # starts from the IMDB-only model, so move the alias the way an operator would.
        from training.promote import rollback

        rollback(MODEL_NAME, start_version, reason="demo-drift: scenario starts from IMDB model")
        print(f"  champion alias moved to v{start_version} (scenario start; logged as a rollback)")
    print(f"  champion: {MODEL_NAME} v{start_version}; waiting for the API to serve it ...")
    stack.wait_ready()
    waited = wait_for_version(start_version, timeout=args.reload_timeout)
    print(f"  API serves v{start_version} (after {waited:.0f} s)")
    summary["start_champion"] = {
        "version": start_version,
        "test_roc_auc": imdb_version.tags.get("test_roc_auc"),
        "tags": dict(imdb_version.tags),
    }

    thresholds = {"min_rows": min(args.min_rows, max(1, len(scenario.day1) // 2))}
    days: list[dict[str, Any]] = []
    for day_no, (day, label) in enumerate(
        [(scenario.day1, "in-domain IMDB traffic"), (scenario.day2, "product-review traffic")],
        start=1,
    ):
        _banner(f"{2 + day_no}. day {day_no}: {label} through the API, then drift_check")
        served = serve_day(day, feedback=True)
        print(
            f"  {served['requests']} predictions by v{','.join(served['versions'])}, "
            f"{served['feedback']} feedback labels; window {served['window_start']} .. "
            f"{served['window_end']}"
        )
        drift_conf: dict[str, Any] = {
            "model_name": MODEL_NAME,
            "window_start": served["window_start"],
            "window_end": served["window_end"],
            "thresholds": thresholds,
            # No data Param: a retrain uses the champion's training snapshot, the
            # feedback labels and the landing folder (monitoring/retrain_data.py).
            "retrain_conf": search,
        }
        if day_no == 2:
            for source, path in (
                ("amazon", scenario.amazon_landed),
                ("kindle", scenario.kindle_landed),
            ):
                target = landing / source / f"demo_{path.name}"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            print(f"  labelled product reviews have landed in {landing}: amazon/, kindle/")
        run_id = f"demo_drift_day{day_no}__{stamp}"
        state, states = run_dag("drift_check", drift_conf, run_id)
        drift = xcom("drift_check", run_id, "detect_drift") or {}
        performance = xcom("drift_check", run_id, "check_performance") or {}
        triggered = states.get("trigger_retrain") == "success"
        print(
            f"  drift_check {state}: decision={drift.get('decision')} "
            f"({_drift_line(drift)}); concept drift={bool(performance.get('concept_drift'))}; "
            f"retraining {'TRIGGERED' if triggered else 'not triggered'}"
        )
        if drift.get("report_html"):
            print(f"  Evidently report: {drift['report_html']}")
        days.append(
            {
                "day": day_no,
                "traffic": label,
                "run_id": run_id,
                "state": state,
                "served": served,
                "decision": drift.get("decision"),
                "reasons": drift.get("reasons"),
                "checks": drift.get("checks"),
                "performance": performance,
                "report_html": drift.get("report_html"),
                "triggered": triggered,
            }
        )
        if day_no == 1 and triggered:
            raise DemoError(f"day 1 (in-domain) triggered a retrain: a false alarm; see {run_id}")
        if day_no == 2 and not triggered:
            raise DemoError(f"day 2 (product reviews) did not trigger a retrain; see {run_id}")
    summary["days"] = days

    _banner("5. the triggered retrain, the gate, the hot reload")
    retrain = find_triggered_run(days[1]["run_id"])
    print(
        f"  training_pipeline run {retrain['dag_run_id']} (conf reason: "
        f"{str(retrain['conf'].get('reason'))[:90]}...)"
    )
    retrain_data = (retrain["conf"].get("trigger") or {}).get("retrain_data") or {}
    for part in retrain_data.get("parts") or []:
        print(
            f"  trains on {part['kind']:<8} {part['name']}: {part['rows']} rows, "
            f"sha256 {part['sha256'][:12]}"
        )
    texts = scenario.day1["text"].head(50).tolist()
    with Background(texts) as background:
        state = stack.wait_for_run("training_pipeline", retrain["dag_run_id"])
        if state != "success":
            raise DemoError(f"the retrain ended {state}: see {stack.AIRFLOW_URL}")
        new = newest_version(client)
        promoted = new.tags.get("gate.promote") == "true"
        print(
            f"  registered v{new.version}: gate promote={promoted} "
            f"({new.tags.get('gate.reason', '')})"
        )
        reload_seconds = None
        if promoted:
            wait_for_version(str(new.version), timeout=args.reload_timeout)
            reload_seconds = seconds_between(new.tags.get("promoted_at"), model_info()["loaded_at"])
            print(
                f"  API hot-reloaded v{new.version}: loaded {_fmt(reload_seconds, 0)} s after "
                f"the promotion (the embedded API polls the alias every 5 s)"
            )
            time.sleep(2.0)
        else:
            kept = champion_version(client) or start_version
            wait_for_version(kept, timeout=args.reload_timeout)
            print(
                f"  the gate kept the champion v{kept}; v{new.version} stays challenger and "
                f"the API keeps serving v{kept}"
            )
    print(
        f"  requests during retrain and swap: {background.ok} answered, "
        f"{len(background.failed)} failed; by version {background.versions}"
    )
    summary["retrain"] = {
        "run_id": retrain["dag_run_id"],
        "data": retrain_data.get("rows_by_kind"),
        "version": str(new.version),
        "promoted": promoted,
        "gate": {k: v for k, v in new.tags.items() if k.startswith("gate.")},
        "reload_seconds": reload_seconds,
        "background_ok": background.ok,
        "background_failed": len(background.failed),
        "background_versions": background.versions,
    }

    _banner("6. day 3: the day-2 product reviews again, now served by the champion")
    again = serve_day(scenario.day2, feedback=False)
    print(f"  answered by {MODEL_NAME} version(s) {', '.join('v' + v for v in again['versions'])}")
    summary["day3"] = again
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    day1, day2 = summary["days"]
    retrain = summary["retrain"]
    before = day2["served"]["quality"]
    after = summary["day3"]["quality"]
    in_domain = day1["served"]["quality"]
    start = summary["start_champion"]["version"]
    print(
        f"""
driftloop drift demo finished in {summary["wall_seconds"]:.0f} s ({MODEL_NAME})

  day  traffic                 decision            retrain     realised acc  ROC-AUC  bal.acc
  1    {day1["traffic"]:<23} {day1["decision"]!s:<19} {day1["triggered"]!s:<11} \
{_fmt(in_domain["accuracy"]):>12}  {_fmt(in_domain["roc_auc"]):>7}  {_fmt(in_domain["balanced_accuracy"]):>7}
  2    {day2["traffic"]:<23} {day2["decision"]!s:<19} {day2["triggered"]!s:<11} \
{_fmt(before["accuracy"]):>12}  {_fmt(before["roc_auc"]):>7}  {_fmt(before["balanced_accuracy"]):>7}
  3    same reviews as day 2   (served by v{",".join(summary["day3"]["versions"])})                \
{_fmt(after["accuracy"]):>12}  {_fmt(after["roc_auc"]):>7}  {_fmt(after["balanced_accuracy"]):>7}

  day 2 drift reasons: {"; ".join(map(str, day2["reasons"] or [])) or "-"}
  champion: v{start} (IMDB only) -> v{retrain["version"] if retrain["promoted"] else start} \
(gate promote={retrain["promoted"]}: {retrain["gate"].get("gate.reason", "")})
  hot reload: {_fmt(retrain["reload_seconds"], 0)} s after promotion; \
{retrain["background_ok"]} requests answered during retrain + swap, \
{retrain["background_failed"]} failed

  Airflow   {stack.AIRFLOW_URL}/dags/drift_check  and  {stack.AIRFLOW_URL}/dags/training_pipeline
  MLflow    {stack.MLFLOW_URL}/#/models/{MODEL_NAME}   (experiment "monitoring": drift metrics)
  Reports   {day1["report_html"]}
            {day2["report_html"]}
  Summary   {stack.HOME / "drift-demo" / "summary.json"}
  Stop      make down
"""
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb-rows", type=int, default=6000, help="landed IMDB train reviews")
    parser.add_argument("--amazon-rows", type=int, default=6000, help="landed Amazon reviews")
    parser.add_argument("--kindle-rows", type=int, default=3500, help="landed Kindle reviews")
    parser.add_argument("--traffic", type=int, default=500, help="requests per day")
    parser.add_argument("--min-rows", type=int, default=100, help="drift check min_rows")
    parser.add_argument("--families", nargs="+", default=["nbsvm", "logreg"])
    parser.add_argument("--n-trials", type=int, default=4)
    parser.add_argument("--family-timeout", type=int, default=240, help="seconds per family")
    parser.add_argument("--reload-timeout", type=float, default=180)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        summary = run(args)
    except (DemoError, stack.StackError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    path = stack.HOME / "drift-demo" / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Replayed days of review traffic for the drift calibration and the drift benchmark.

Shared by `bench.drift_calibrate` (chooses the drift decision's thresholds on
the calibration seed's days) and `bench.drift_bench` (reports detection and
false-alarm rates on the held-out seed's days with the shipped thresholds).

What production does, done once and cached (`DRIFTLOOP_HOME/bench-cache/`):

1. The champion: TF-IDF (1-2-grams) + logistic regression on `text_clean` of
   a sample of the IMDB aclImdb *train* split.
2. Its reference profile (`monitoring.reference.build_reference_profile`)
   from the training rows with out-of-fold scores, as training builds it.
3. The traffic pools, featurized by `features.reviews.build_features` and
   scored by the champion once, exactly as serving logs them: IMDB *test*
   split (other movies), Kindle book reviews, Amazon device reviews.

Each pool is split in two disjoint halves by a fixed permutation: calibration
days draw rows from half 0 only, held-out days from half 1 only, so no
held-out review was seen while choosing thresholds. A day is then only a draw
of rows plus one `monitoring.drift.check_drift` call (the daily check itself,
same champion, same reference profile).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import Pipeline

from contracts.reviews import load_sources, map_label
from core.settings import get_settings
from features.reviews import TEXT_CLEAN, build_features
from monitoring.config import DriftThresholds
from monitoring.drift import CHECKS, check_drift
from monitoring.reference import build_reference_profile

IMDB_INDEX = "imdb_50k_aclimdb_index.csv.gz"
SHIFTED_SOURCES = ("kindle", "amazon")
MIXED_SHARES = (0.2, 0.35, 0.5)
# Rows of each traffic pool featurized and scored (then halved); plenty for
# 500-row days, and it keeps the one-off preparation to a minute or two.
POOL_CAP = 12_000
SPLIT_SEED = 20_240
CACHE_VERSION = 1
HALVES = {"calibration": 0, "held_out": 1}


def _require(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def load_source(datasets: Path, name: str) -> pd.DataFrame:
    """A source from contracts/sources.yaml as canonical `text`, `label` (label may be NaN)."""
    spec = load_sources()[name]
    raw = pd.read_csv(
        _require(datasets / spec["file"]), usecols=[spec["text_column"], spec["label_column"]]
    )
    frame = pd.DataFrame(
        {
            "text": raw[spec["text_column"]],
            "label": [map_label(v, spec["label_map"]) for v in raw[spec["label_column"]]],
        }
    )
    frame["label"] = frame["label"].astype("Float64")
    keep = frame["text"].notna() & frame["text"].astype(str).str.strip().ne("")
    return frame[keep].reset_index(drop=True)


def load_imdb(datasets: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IMDB reviews split by the original aclImdb train/test split (disjoint movies)."""
    reviews = load_source(datasets, "imdb")
    index = pd.read_csv(_require(datasets / IMDB_INDEX), usecols=["row", "aclimdb_split"])
    if len(index) != len(reviews):
        raise ValueError(
            f"{IMDB_INDEX} has {len(index)} rows but the IMDB file has {len(reviews)} usable rows"
        )
    split = index.sort_values("row")["aclimdb_split"].to_numpy()
    return (
        reviews[split == "train"].reset_index(drop=True),
        reviews[split == "test"].reset_index(drop=True),
    )


def make_model(seed: int) -> Pipeline:
    """The bench champion: TF-IDF 1-2-grams + logistic regression on `text_clean`."""
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)),
            ("clf", LogisticRegression(C=4.0, max_iter=1000, random_state=seed)),
        ]
    )


@dataclass
class Prepared:
    """The cached champion, its reference profile and the scored traffic pools."""

    profile: pd.DataFrame
    pools: pd.DataFrame  # logged rows + `pool` (source name) + `half` (0/1)
    champion: dict[str, Any]
    cache_dir: Path
    prepare_seconds: float
    from_cache: bool

    def pool(self, name: str, half: int, negative_only: bool = False) -> pd.DataFrame:
        rows = self.pools[(self.pools["pool"] == name) & (self.pools["half"] == half)]
        if negative_only:
            rows = rows[rows["label"] == 0]
        return rows.reset_index(drop=True)


def _serve(model: Pipeline, raw: pd.DataFrame) -> pd.DataFrame:
    """What serving logs for a batch of requests: features, score and (feedback) label."""
    logged = build_features(raw, text_col="text")
    logged["score"] = model.predict_proba(logged[TEXT_CLEAN])[:, 1]
    logged["label"] = raw["label"].to_numpy()
    return logged


def prepare(train_size: int = 10_000, reference_size: int = 5000, model_seed: int = 0) -> Prepared:
    """Champion, reference profile and scored pools, from the cache when it holds them."""
    settings = get_settings()
    key = hashlib.sha256(
        json.dumps([CACHE_VERSION, train_size, reference_size, model_seed, POOL_CAP]).encode()
    ).hexdigest()[:12]
    cache = settings.home / "bench-cache" / f"drift-{key}"
    started = time.perf_counter()
    meta_path = cache / "meta.json"
    if meta_path.is_file():
        return Prepared(
            profile=pd.read_parquet(cache / "profile.parquet"),
            pools=pd.read_parquet(cache / "pools.parquet"),
            champion=json.loads(meta_path.read_text()),
            cache_dir=cache,
            prepare_seconds=round(time.perf_counter() - started, 1),
            from_cache=True,
        )

    datasets = settings.datasets_dir
    imdb_train, imdb_test = load_imdb(datasets)
    rng = np.random.default_rng(model_seed)
    train = imdb_train.iloc[
        rng.choice(len(imdb_train), size=min(train_size, len(imdb_train)), replace=False)
    ].reset_index(drop=True)
    train_features = build_features(train, text_col="text")
    labels = train["label"].astype("int64").to_numpy()
    t0 = time.perf_counter()
    model = make_model(model_seed).fit(train_features[TEXT_CLEAN], labels)
    fit_seconds = time.perf_counter() - t0
    oof = cross_val_predict(
        make_model(model_seed), train_features[TEXT_CLEAN], labels, cv=3, method="predict_proba"
    )[:, 1]
    profile = build_reference_profile(
        train_features, oof, labels, sample_size=reference_size, seed=model_seed
    )

    split_rng = np.random.default_rng(SPLIT_SEED)
    parts = []
    raw_pools = {"imdb_test": imdb_test, **{s: load_source(datasets, s) for s in SHIFTED_SOURCES}}
    sizes = {}
    for name, raw in raw_pools.items():
        sizes[name] = len(raw)
        take = split_rng.permutation(len(raw))[: min(POOL_CAP, len(raw))]
        logged = _serve(model, raw.iloc[take].reset_index(drop=True))
        logged["pool"] = name
        logged["half"] = (np.arange(len(logged)) % 2).astype("int64")
        parts.append(logged)
    pools = pd.concat(parts, ignore_index=True)
    imdb = pools[pools["pool"] == "imdb_test"]
    y = imdb["label"].astype("int64")
    champion = {
        "train_size": len(train),
        "reference_size": len(profile),
        "reference_scores": "out_of_fold_cv3",
        "model_seed": model_seed,
        "fit_seconds": round(fit_seconds, 1),
        "imdb_test_metrics_on_pool_rows": {
            "accuracy": float(accuracy_score(y, imdb["score"] >= 0.5)),
            "roc_auc": float(roc_auc_score(y, imdb["score"])),
        },
        "source_rows": sizes,
        "pool_rows_per_half": {
            name: int(((pools["pool"] == name) & (pools["half"] == 0)).sum()) for name in raw_pools
        },
    }
    cache.mkdir(parents=True, exist_ok=True)
    profile.to_parquet(cache / "profile.parquet")
    pools.to_parquet(cache / "pools.parquet")
    joblib.dump(model, cache / "model.joblib")
    meta_path.write_text(json.dumps(champion, indent=2))
    return Prepared(
        profile=profile,
        pools=pools,
        champion=champion,
        cache_dir=cache,
        prepare_seconds=round(time.perf_counter() - started, 1),
        from_cache=False,
    )


def schedule(days: int, prior_shift_days: int) -> list[tuple[str, str, dict[str, float]]]:
    """(kind, label, {pool: share}) for every replayed day of one seed."""
    plan: list[tuple[str, str, dict[str, float]]] = [
        ("in_domain", "imdb_test", {"imdb_test": 1.0}) for _ in range(days)
    ]
    for i in range(days):
        source = SHIFTED_SOURCES[i % len(SHIFTED_SOURCES)]
        plan.append(("shifted", source, {source: 1.0}))
    for share in MIXED_SHARES:
        for i in range(days):
            source = SHIFTED_SOURCES[i % len(SHIFTED_SOURCES)]
            plan.append(
                (
                    f"mixed_{share:g}",
                    f"{share:.0%} {source}",
                    {"imdb_test": 1 - share, source: share},
                )
            )
    plan.extend(
        ("prior_shift", "imdb_test negatives", {"imdb_test_negative": 1.0})
        for _ in range(prior_shift_days)
    )
    return plan


def _draw(
    prepared: Prepared, half: int, mix: dict[str, float], size: int, rng: np.random.Generator
) -> pd.DataFrame:
    parts = []
    remaining = size
    for k, (name, share) in enumerate(mix.items()):
        n = remaining if k == len(mix) - 1 else round(size * share)
        remaining -= n
        if name == "imdb_test_negative":
            pool = prepared.pool("imdb_test", half, negative_only=True)
        else:
            pool = prepared.pool(name, half)
        parts.append(pool.iloc[rng.choice(len(pool), size=min(n, len(pool)), replace=False)])
    day = pd.concat(parts, ignore_index=True)
    return day.iloc[rng.permutation(len(day))].reset_index(drop=True)


def run_days(
    prepared: Prepared,
    role: str,
    seed: int,
    thresholds: DriftThresholds,
    days: int,
    prior_shift_days: int,
    batch_size: int = 500,
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """check_drift on every day of one seed; per-day decision, checks and statistics."""
    half = HALVES[role]
    rng = np.random.default_rng(seed)
    per_day: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="drift-days-") as tmp:
        for day, (kind, label, mix) in enumerate(schedule(days, prior_shift_days)):
            logged = _draw(prepared, half, mix, batch_size, rng)
            t0 = time.perf_counter()
            result = check_drift(prepared.profile, logged, thresholds, Path(tmp) / f"d{day:03d}")
            seconds = time.perf_counter() - t0
            per_day.append(
                {
                    "day": day,
                    "kind": kind,
                    "source": label,
                    "decision": result.decision,
                    "fired": [n for n in CHECKS if result.checks[n]["fired"]],
                    "warnings": [w["metric"] for w in result.warnings],
                    "votes": result.metrics.get("votes"),
                    "combined": result.metrics["combined"]["score"],
                    "statistics": {n: result.checks[n]["statistic"] for n in CHECKS},
                    "check_values": {n: result.checks[n]["value"] for n in CHECKS},
                    "check_seconds": round(seconds, 2),
                }
            )
            progress(
                f"  [{role} seed {seed}] day {day:2d} {label:20s} -> {result.decision:9s} "
                f"combined {per_day[-1]['combined']:6.2f} fired="
                f"{','.join(per_day[-1]['fired']) or '-'} ({seconds:.1f}s)"
            )
    return per_day


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def rate(items: list[dict[str, Any]], predicate: Callable[[dict[str, Any]], bool]) -> float | None:
    return sum(1 for d in items if predicate(d)) / len(items) if items else None


def kinds(per_day: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for d in per_day:
        grouped.setdefault(d["kind"], []).append(d)
    return grouped


def rates(
    per_day: list[dict[str, Any]], is_drift: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Detection / false-alarm rates of a decision rule over one seed's days."""
    g = kinds(per_day)
    return {
        "detection_rate": rate(g.get("shifted", []), is_drift),
        "false_alarm_rate": rate(g.get("in_domain", []), is_drift),
        "mixed_detection_rate": {
            f"{s:g}": rate(g.get(f"mixed_{s:g}", []), is_drift) for s in MIXED_SHARES
        },
        "prior_shift_drift_rate": rate(g.get("prior_shift", []), is_drift),
    }


def days_named(per_day: list[dict[str, Any]]) -> dict[str, int]:
    return {kind: len(group) for kind, group in kinds(per_day).items()}


def save_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")

"""Drift-detection benchmark on real reviews: does the daily check catch a new domain, quietly?

    python -m bench.drift_bench [--days 20] [--batch-size 500 100] [--train-size 10000]
                                [--mixed-share 0.1 0.25] [--set text_threshold=0.65]

1. Trains a champion on a sample of the IMDB aclImdb *train* split: TF-IDF
   (1-2-grams) on `text_clean` + logistic regression.
2. Builds its reference profile from the training rows, with out-of-fold
   scores (a model scores its own training rows too confidently; see
   monitoring.reference).
3. Replays days of traffic exactly as serving would log it (raw text ->
   `features.reviews.build_features` -> model score): in-domain days from the
   IMDB *test* split (other movies, same domain) and shifted days alternating
   Kindle book reviews and Amazon device reviews.
4. Runs `monitoring.drift.check_drift` on each day, plus
   `monitoring.performance.realised_performance` with the day's labels.

`--mixed-share` adds days where only that share of the rows is off-domain, to
see how much foreign traffic it takes to trigger. Prints a table and writes `bench/results/drift.json` with the detection rate
(share of shifted days called `drift`), the false-alarm rate (share of
in-domain days called `drift`), per-day decisions, per-check firing rates and
the thresholds used. The datasets are read from DRIFTLOOP_DATASETS (default
`../shared/datasets` next to the repository).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
from monitoring.config import DriftThresholds, load_thresholds
from monitoring.drift import CHECKS, DRIFT, check_drift
from monitoring.performance import realised_performance
from monitoring.reference import build_reference_profile

IMDB_INDEX = "imdb_50k_aclimdb_index.csv.gz"
SHIFTED_SOURCES = ("kindle", "amazon")
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "drift.json"


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
    texts = raw[spec["text_column"]]
    frame = pd.DataFrame(
        {
            "text": texts,
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


def serve(model: Pipeline, raw: pd.DataFrame) -> pd.DataFrame:
    """What serving logs for a batch of requests: features, score and (feedback) label."""
    logged = build_features(raw, text_col="text")
    logged["score"] = model.predict_proba(logged[TEXT_CLEAN])[:, 1]
    logged["label"] = raw["label"].to_numpy()
    return logged


def _schedule(days: int, mixed_shares: list[float]) -> list[tuple[str, str, dict[str, float]]]:
    """(kind, label, {pool: share of the day's rows}) for every replayed day."""
    plan: list[tuple[str, str, dict[str, float]]] = [
        ("in_domain", "imdb_test", {"imdb_test": 1.0}) for _ in range(days)
    ]
    for i in range(days):
        source = SHIFTED_SOURCES[i % len(SHIFTED_SOURCES)]
        plan.append(("shifted", source, {source: 1.0}))
    for share in mixed_shares:
        for i in range(days):
            source = SHIFTED_SOURCES[i % len(SHIFTED_SOURCES)]
            mix = {"imdb_test": 1.0 - share, source: share}
            plan.append((f"mixed_{share:g}", f"{share:.0%} {source}", mix))
    return plan


def _draw(
    pools: dict[str, pd.DataFrame], mix: dict[str, float], size: int, rng: np.random.Generator
) -> pd.DataFrame:
    parts = []
    remaining = size
    for k, (source, share) in enumerate(mix.items()):
        n = remaining if k == len(mix) - 1 else round(size * share)
        remaining -= n
        pool = pools[source]
        parts.append(pool.iloc[rng.choice(len(pool), size=min(n, len(pool)), replace=False)])
    day = pd.concat(parts, ignore_index=True)
    return day.iloc[rng.permutation(len(day))].reset_index(drop=True)


def _run_days(
    model: Pipeline,
    profile: pd.DataFrame,
    pools: dict[str, pd.DataFrame],
    thresholds: DriftThresholds,
    champion: dict[str, float],
    days: int,
    batch_size: int,
    seed: int,
    mixed_shares: list[float],
) -> dict[str, Any]:
    rng = np.random.default_rng(seed + batch_size)
    per_day: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        for day, (kind, label, mix) in enumerate(_schedule(days, mixed_shares)):
            logged = serve(model, _draw(pools, mix, batch_size, rng))
            t0 = time.perf_counter()
            result = check_drift(profile, logged, thresholds, Path(tmp) / f"day{day:03d}")
            seconds = time.perf_counter() - t0
            perf = realised_performance(logged["label"], logged["score"], champion, thresholds)
            per_day.append(
                {
                    "day": day,
                    "kind": kind,
                    "source": label,
                    "decision": result.decision,
                    "fired": [r["metric"] for r in result.reasons],
                    "votes": result.metrics.get("votes"),
                    "check_values": {k: c["value"] for k, c in result.checks.items()},
                    "column_scores": _column_scores(result.metrics),
                    "realised_accuracy": perf["accuracy"],
                    "realised_roc_auc": perf["roc_auc"],
                    "concept_drift": perf["concept_drift"],
                    "check_seconds": round(seconds, 2),
                }
            )
            print(
                f"  [{batch_size}/day] day {day:2d} {label:12s} -> {result.decision:17s} "
                f"fired={','.join(per_day[-1]['fired']) or '-'} ({seconds:.1f}s)",
                flush=True,
            )
    wall = time.perf_counter() - started
    return _summarise(per_day, days, batch_size, wall, mixed_shares)


def _column_scores(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Per-column drift scores and PSI of one day, kept to calibrate thresholds."""
    scores: dict[str, float | None] = {}
    for group in ("features", "descriptors"):
        for column, values in (metrics.get(group) or {}).items():
            scores[column] = values.get("drift_score")
            if "psi" in values:
                scores[f"{column}_psi"] = values["psi"]
    return scores


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None


def _rate(items: list[dict[str, Any]], predicate: Any) -> float | None:
    return sum(1 for d in items if predicate(d)) / len(items) if items else None


def _summarise(
    per_day: list[dict[str, Any]],
    days: int,
    batch_size: int,
    wall: float,
    mixed_shares: list[float],
) -> dict[str, Any]:
    shifted = [d for d in per_day if d["kind"] == "shifted"]
    in_domain = [d for d in per_day if d["kind"] == "in_domain"]
    groups = {"in_domain": in_domain, "shifted": shifted}
    by_source = {
        source: _rate(
            [d for d in shifted if d["source"] == source], lambda d: d["decision"] == DRIFT
        )
        for source in SHIFTED_SOURCES
    }
    check_rates = {
        kind: {check: _rate(group, lambda d, c=check: c in d["fired"]) for check in CHECKS}
        for kind, group in groups.items()
    }
    check_medians = {
        kind: {check: _median([d["check_values"][check] for d in group]) for check in CHECKS}
        for kind, group in groups.items()
    }
    mixed = {
        f"{share:g}": _rate(
            [d for d in per_day if d["kind"] == f"mixed_{share:g}"],
            lambda d: d["decision"] == DRIFT,
        )
        for share in mixed_shares
    }
    return {
        "batch_size": batch_size,
        "days": days,
        "detection_rate": _rate(shifted, lambda d: d["decision"] == DRIFT),
        "false_alarm_rate": _rate(in_domain, lambda d: d["decision"] == DRIFT),
        "insufficient_data_days": sum(1 for d in per_day if d["decision"] == "insufficient_data"),
        "detection_rate_by_source": by_source,
        "detection_rate_by_mixed_share": mixed,
        "check_fire_rate": check_rates,
        "check_median_value": check_medians,
        "concept_drift_rate": {
            "in_domain": _rate(in_domain, lambda d: d["concept_drift"]),
            "shifted": _rate(shifted, lambda d: d["concept_drift"]),
        },
        "wall_seconds": round(wall, 1),
        "mean_check_seconds": round(float(np.mean([d["check_seconds"] for d in per_day])), 2),
        "per_day": per_day,
    }


def _print_table(runs: list[dict[str, Any]]) -> None:
    header = (
        f"{'batch':>6} {'days':>5} {'detection':>9} {'false alarm':>11} {'kindle':>7} "
        f"{'amazon':>7} {'s/check':>8} {'wall s':>7}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for run in runs:
        src = run["detection_rate_by_source"]
        print(
            f"{run['batch_size']:>6} {run['days']:>5} {run['detection_rate']:>9.2f} "
            f"{run['false_alarm_rate']:>11.2f} {src['kindle']:>7.2f} {src['amazon']:>7.2f} "
            f"{run['mean_check_seconds']:>8.2f} {run['wall_seconds']:>7.1f}"
        )
    print("\nper-check firing rate (in-domain / shifted):")
    for run in runs:
        rates = run["check_fire_rate"]
        cells = ", ".join(
            f"{c} {rates['in_domain'][c]:.2f}/{rates['shifted'][c]:.2f}" for c in CHECKS
        )
        print(f"  {run['batch_size']:>5}/day: {cells}")
    for run in runs:
        if run["detection_rate_by_mixed_share"]:
            cells = ", ".join(
                f"{share} off-domain -> {rate:.2f}"
                for share, rate in run["detection_rate_by_mixed_share"].items()
            )
            print(f"  {run['batch_size']:>5}/day detection on mixed days: {cells}")


def _parse_overrides(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--days", type=int, default=20, help="days of each kind (in-domain, shifted)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        nargs="+",
        default=[500],
        help="requests per day; several values run several benchmarks",
    )
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--reference-size", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--in-sample-reference-scores",
        action="store_true",
        help="score the reference with the fitted model instead of out-of-fold (shows why not to)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a drift threshold",
    )
    parser.add_argument(
        "--mixed-share",
        type=float,
        nargs="*",
        default=[],
        help="also replay days where this share of rows is off-domain (sensitivity)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)

    datasets = get_settings().datasets_dir
    try:
        imdb_train, imdb_test = load_imdb(datasets)
        pools = {"imdb_test": imdb_test, **{s: load_source(datasets, s) for s in SHIFTED_SOURCES}}
    except FileNotFoundError as exc:
        print(
            f"drift bench needs the real datasets; missing {exc}. Set DRIFTLOOP_DATASETS to the "
            f"folder holding them (looked in {datasets}).",
            file=sys.stderr,
        )
        return 2
    thresholds = load_thresholds(_parse_overrides(args.overrides))
    started = time.perf_counter()

    rng = np.random.default_rng(args.seed)
    train = imdb_train.iloc[
        rng.choice(len(imdb_train), size=min(args.train_size, len(imdb_train)), replace=False)
    ]
    train = train.reset_index(drop=True)
    train_features = build_features(train, text_col="text")
    labels = train["label"].astype("int64").to_numpy()
    t0 = time.perf_counter()
    model = make_model(args.seed).fit(train_features[TEXT_CLEAN], labels)
    fit_seconds = time.perf_counter() - t0
    if args.in_sample_reference_scores:
        reference_scores = model.predict_proba(train_features[TEXT_CLEAN])[:, 1]
    else:
        reference_scores = cross_val_predict(
            make_model(args.seed), train_features[TEXT_CLEAN], labels, cv=3, method="predict_proba"
        )[:, 1]
    profile = build_reference_profile(
        train_features, reference_scores, labels, sample_size=args.reference_size, seed=args.seed
    )

    test_logged = serve(model, imdb_test)
    champion = {
        "accuracy": float(
            accuracy_score(imdb_test["label"].astype("int64"), test_logged["score"] >= 0.5)
        ),
        "roc_auc": float(roc_auc_score(imdb_test["label"].astype("int64"), test_logged["score"])),
    }
    print(
        f"champion: {len(train)} IMDB train reviews, fit {fit_seconds:.1f}s, IMDB test accuracy "
        f"{champion['accuracy']:.4f}, ROC-AUC {champion['roc_auc']:.4f}; reference profile "
        f"{len(profile)} rows ({'in-sample' if args.in_sample_reference_scores else 'out-of-fold'} scores)",
        flush=True,
    )

    runs = [
        _run_days(
            model,
            profile,
            pools,
            thresholds,
            champion,
            args.days,
            size,
            args.seed,
            args.mixed_share,
        )
        for size in args.batch_size
    ]
    _print_table(runs)
    primary = runs[0]
    report = {
        "detection_rate": primary["detection_rate"],
        "false_alarm_rate": primary["false_alarm_rate"],
        "batch_size": primary["batch_size"],
        "days": primary["days"],
        "target": {"detection_rate_min": 0.95, "false_alarm_rate_max": 0.05},
        "thresholds": thresholds.to_dict(),
        "champion": {
            "train_size": len(train),
            "reference_size": len(profile),
            "reference_scores": "in_sample"
            if args.in_sample_reference_scores
            else "out_of_fold_cv3",
            "test_metrics": champion,
            "fit_seconds": round(fit_seconds, 1),
        },
        "pools": {name: len(pool) for name, pool in pools.items()},
        "seed": args.seed,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

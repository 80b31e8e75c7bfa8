"""Calibrate the drift decision on one seed's days; write the thresholds and the evidence.

    python -m bench.drift_calibrate [--seed 1] [--days 15] [--prior-shift-days 5]
    python -m bench.drift_calibrate --from-evidence   # re-choose from the stored days

Replays the calibration seed's days (`bench.drift_days`: in-domain, fully
foreign, 20/35/50 % foreign, and a prior shift: only negative IMDB reviews)
through `monitoring.drift.check_drift`, then:

1. fits each check's null (mean, sd of its statistic on the in-domain days);
2. measures every candidate decision rule on the same days with
   `monitoring.drift.decide` (the function production decides with): the
   shipped vote counting, and the combined z with several weightings, caps
   and thresholds;
3. chooses by a rule fixed before looking: no false alarm on an in-domain day,
   no prior-shift day called drift (one check alone stays a warning), fully
   foreign and 50 %-foreign days all caught, a threshold of at least 2.33
   (nominal 1 % false alarms if the combined z is Gaussian under the null);
   then the highest detection at 35 %, then the widest margin (the smaller of
   threshold minus the highest in-domain day and the 35 %-foreign days' 20th
   percentile minus threshold, in combined-z units), then detection at 20 %;
4. writes the chosen values into the calibrated block of
   `monitoring/config/drift.yaml` and the evidence (every day's statistics,
   every rule's rates) to `bench/results/drift_calibration.json`.

The held-out rates are measured by `python -m bench.drift_bench` on another
seed's days, from disjoint rows of each pool.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.drift_days import (
    days_named,
    kinds,
    load_average,
    prepare,
    rates,
    run_days,
    save_json,
)
from monitoring.config import DEFAULT_THRESHOLDS_PATH, DriftThresholds, load_thresholds
from monitoring.drift import CHECK_STATISTICS, CHECKS, DRIFT, decide

RESULTS = Path(__file__).resolve().parent / "results"
EVIDENCE_PATH = RESULTS / "drift_calibration.json"
MIN_COMBINED_THRESHOLD = 2.33
SD_FLOOR = 1e-3
WEIGHTINGS: dict[str, dict[str, float]] = {
    "equal": {c: 1.0 for c in CHECKS},
    "domain_x2": {**{c: 1.0 for c in CHECKS}, "text_domain": 2.0},
    "domain_x3": {**{c: 1.0 for c in CHECKS}, "text_domain": 3.0},
    "without_prediction": {**{c: 1.0 for c in CHECKS}, "prediction_drift": 0.0},
    "domain_only": {**{c: 0.0 for c in CHECKS}, "text_domain": 1.0},
}
Z_CAPS = (2.0, 3.0, 4.0, 6.0, 1000.0)
COMBINED_THRESHOLDS = (2.33, 2.5, 3.0, 3.5, 4.0, 5.0)
BLOCK = re.compile(r"(# >>> calibrated.*?\n)(.*?)(# <<< calibrated)", re.S)


def null_of(per_day: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sd of each check's statistic on the in-domain days."""
    in_domain = kinds(per_day)["in_domain"]
    mean, sd = {}, {}
    for check in CHECKS:
        values = np.array([d["statistics"][check] for d in in_domain], dtype=float)
        mean[check] = round(float(np.nanmean(values)), 5)
        sd[check] = round(max(float(np.nanstd(values, ddof=1)), SD_FLOOR), 5)
    return mean, sd


def candidate(
    base: DriftThresholds,
    per_day: list[dict[str, Any]],
    mean: dict[str, float],
    sd: dict[str, float],
    weights: dict[str, float],
    z_cap: float,
    threshold: float,
) -> DriftThresholds:
    """A combined rule; its `combined_null_sd` is the weighted sum's sd on in-domain days."""
    unit = base.with_overrides(
        {
            "decision_method": "combined",
            "check_null_mean": mean,
            "check_null_sd": sd,
            "combine_weights": weights,
            "combined_null_sd": 1.0,
            "z_cap": z_cap,
            "combined_threshold": threshold,
        }
    )
    sums = [_verdict(d, unit)["combined"]["score"] for d in kinds(per_day)["in_domain"]]
    spread = max(float(np.std(sums, ddof=1)), SD_FLOOR)
    return unit.with_overrides({"combined_null_sd": round(spread, 5)})


def _verdict(day: dict[str, Any], thresholds: DriftThresholds) -> dict[str, Any]:
    checks = {
        c: {
            "statistic": day["statistics"][c],
            "fired": c in day["fired"],
            "value": day["check_values"][c],
            "threshold": None,
            "detail": "",
        }
        for c in CHECKS
    }
    return decide(checks, thresholds)


def evaluate(per_day: list[dict[str, Any]], thresholds: DriftThresholds) -> dict[str, Any]:
    return rates(per_day, lambda d: _verdict(d, thresholds)["decision"] == DRIFT)


def margin(per_day: list[dict[str, Any]], thresholds: DriftThresholds) -> float:
    """Room on both sides, in combined-z units: min(threshold - the highest in-domain
    day, the 35 %-foreign days' 20th percentile - threshold)."""
    g = kinds(per_day)
    score = lambda d: _verdict(d, thresholds)["combined"]["score"]  # noqa: E731
    quiet = max(score(d) for d in g["in_domain"])
    mixed = float(np.percentile([score(d) for d in g["mixed_0.35"]], 20))
    t = thresholds.combined_threshold
    return round(min(t - quiet, mixed - t), 4)


def acceptable(r: dict[str, Any], threshold: float) -> bool:
    return (
        r["false_alarm_rate"] == 0.0
        and (r["prior_shift_drift_rate"] or 0.0) == 0.0
        and r["detection_rate"] == 1.0
        and r["mixed_detection_rate"]["0.5"] == 1.0
        and threshold >= MIN_COMBINED_THRESHOLD
    )


def choose(per_day: list[dict[str, Any]], base: DriftThresholds) -> dict[str, Any]:
    """Every candidate's rates on the calibration days, and the one the rule picks."""
    mean, sd = null_of(per_day)
    options: list[dict[str, Any]] = [
        {
            "name": "votes (check_weights / min_votes)",
            "decision_method": "votes",
            "rates": evaluate(per_day, base.with_overrides({"decision_method": "votes"})),
        }
    ]
    for (name, weights), z_cap, threshold in itertools.product(
        WEIGHTINGS.items(), Z_CAPS, COMBINED_THRESHOLDS
    ):
        rule = candidate(base, per_day, mean, sd, weights, z_cap, threshold)
        r = evaluate(per_day, rule)
        options.append(
            {
                "name": f"combined {name}, z_cap {z_cap:g}, threshold {threshold:g}",
                "decision_method": "combined",
                "weights": name,
                "z_cap": z_cap,
                "combined_threshold": threshold,
                "combined_null_sd": rule.combined_null_sd,
                "margin": margin(per_day, rule),
                "acceptable": acceptable(r, threshold),
                "rates": r,
            }
        )
    eligible = [o for o in options if o.get("acceptable")]
    if not eligible:
        raise SystemExit("no candidate rule meets the calibration constraints; see the evidence")
    best = max(
        eligible,
        key=lambda o: (
            o["rates"]["mixed_detection_rate"]["0.35"],
            o["margin"],
            o["rates"]["mixed_detection_rate"]["0.2"],
            -o["z_cap"],
        ),
    )
    chosen = candidate(
        base,
        per_day,
        mean,
        sd,
        WEIGHTINGS[best["weights"]],
        best["z_cap"],
        best["combined_threshold"],
    )
    return {"null_mean": mean, "null_sd": sd, "options": options, "chosen": best, "rule": chosen}


def _flow(mapping: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in mapping.items()) + "}"


def write_config(rule: DriftThresholds, seed: int, path: Path = DEFAULT_THRESHOLDS_PATH) -> None:
    """Replace the calibrated block of drift.yaml with the chosen values."""
    text = path.read_text()
    match = BLOCK.search(text)
    if match is None:
        raise SystemExit(f"{path} has no '# >>> calibrated' ... '# <<< calibrated' block")
    header = match.group(1)
    comments = "".join(line + "\n" for line in match.group(2).splitlines() if line.startswith("#"))
    body = (
        f"# Chosen on calibration seed {seed}'s days (in-domain nulls below).\n"
        f"decision_method: {rule.decision_method}\n"
        f"check_null_mean: {_flow(rule.check_null_mean)}\n"
        f"check_null_sd: {_flow(rule.check_null_sd)}\n"
        f"combine_weights: {_flow(rule.combine_weights)}\n"
        f"combined_null_sd: {rule.combined_null_sd:g}\n"
        f"z_cap: {rule.z_cap:g}\n"
        f"combined_threshold: {rule.combined_threshold:g}\n"
    )
    comments = "".join(c for c in comments.splitlines(True) if not c.startswith("# Chosen on"))
    path.write_text(
        text[: match.start()] + header + comments + body + match.group(3) + text[match.end() :]
    )
    load_thresholds(path=path)  # the written file must load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="the calibration seed")
    parser.add_argument("--days", type=int, default=15, help="days of each kind")
    parser.add_argument("--prior-shift-days", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--from-evidence",
        action="store_true",
        help="re-choose from the days stored in the evidence file instead of replaying them",
    )
    parser.add_argument("--out", type=Path, default=EVIDENCE_PATH)
    args = parser.parse_args(argv)

    base = load_thresholds()
    started = time.perf_counter()
    if args.from_evidence:
        evidence = json.loads(args.out.read_text())
        per_day = evidence["per_day"]
        seed = evidence["calibration_seed"]
    else:
        prepared = prepare()
        print(
            f"champion + reference + pools {'from cache' if prepared.from_cache else 'built'} "
            f"in {prepared.prepare_seconds}s ({prepared.cache_dir})",
            flush=True,
        )
        load_before = load_average()
        per_day = run_days(
            prepared,
            "calibration",
            args.seed,
            base,
            args.days,
            args.prior_shift_days,
            args.batch_size,
            progress=lambda line: print(line, flush=True),
        )
        seed = args.seed
        evidence = {
            "calibration_seed": seed,
            "pool_half": 0,
            "batch_size": args.batch_size,
            "days": days_named(per_day),
            "champion": prepared.champion,
            "prepare_seconds": prepared.prepare_seconds,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "per_check_thresholds": {
                k: v
                for k, v in base.to_dict().items()
                if k.endswith(("_threshold", "_method", "_share"))
            },
            "per_day": per_day,
        }
        save_json(args.out, evidence)  # the replayed days are kept even if no rule fits
    result = choose(per_day, base)
    evidence.update(
        {
            "statistics": CHECK_STATISTICS,
            "null_mean": result["null_mean"],
            "null_sd": result["null_sd"],
            "selection_rule": (
                "no false alarm on in-domain days, no prior-shift day called drift, all fully "
                "foreign and 50%-foreign days caught, combined_threshold >= "
                f"{MIN_COMBINED_THRESHOLD}; then max detection at 35%, the widest margin "
                "(min of threshold - highest in-domain combined z, 20th percentile of the "
                "35%-foreign days' combined z - threshold), detection at 20%, the lowest z_cap"
            ),
            "chosen": result["chosen"],
            "options": result["options"],
        }
    )
    save_json(args.out, evidence)
    write_config(result["rule"], seed)
    chosen = result["chosen"]
    print(f"\nchosen: {chosen['name']}: {chosen['rates']}")
    votes = result["options"][0]
    print(f"votes (before): {votes['rates']}")
    print(f"wrote {args.out} and the calibrated block of {DEFAULT_THRESHOLDS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

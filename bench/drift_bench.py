"""Drift-detection benchmark on held-out days: does the daily check catch a new domain, quietly?

    python -m bench.drift_bench [--seed 2] [--days 15] [--prior-shift-days 5] [--calibrate]

The thresholds are the shipped ones (`monitoring/config/drift.yaml`), whose
calibrated block `python -m bench.drift_calibrate` chose on the calibration
seed's days (evidence: `bench/results/drift_calibration.json`). This replays
*another* seed's days, drawn from the other half of every pool
(`bench.drift_days`: the same champion, reference profile and scored pools),
through `monitoring.drift.check_drift`, and reports under `held_out`:

- `detection_rate`: fully foreign days (Kindle / Amazon alternating) called drift;
- `false_alarm_rate`: in-domain days (IMDB test split) called drift;
- `mixed_detection_rate`: days with 20 / 35 / 50 % foreign reviews called drift;
- prior-shift days (only negative IMDB reviews): their decision and the
  warnings raised (a check that fires alone is a warning, not drift).

For comparison it also replays the same days' decisions with the old vote
counting and with the other candidate rules of the calibration (decided by
`monitoring.drift.decide` on the stored check statistics). `--calibrate` runs
the calibration first. Wall time and load average are recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import drift_calibrate
from bench.drift_days import (
    MIXED_SHARES,
    days_named,
    kinds,
    load_average,
    prepare,
    rate,
    rates,
    run_days,
    save_json,
)
from monitoring.config import load_thresholds
from monitoring.drift import CHECKS, DRIFT

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "drift.json"
TARGETS = {
    "detection_rate_min": 0.95,
    "mixed_detection_rate_min": {"0.35": 0.8, "0.5": 0.95},
    "false_alarm_rate_max": 0.05,
}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=2, help="the held-out seed")
    parser.add_argument("--days", type=int, default=15, help="days of each kind")
    parser.add_argument("--prior-shift-days", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--calibrate", action="store_true", help="run the calibration first")
    parser.add_argument("--calibration-seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.calibrate:
        drift_calibrate.main(
            [
                "--seed",
                str(args.calibration_seed),
                "--days",
                str(args.days),
                "--prior-shift-days",
                str(args.prior_shift_days),
                "--batch-size",
                str(args.batch_size),
            ]
        )
    try:
        calibration = json.loads(drift_calibrate.EVIDENCE_PATH.read_text())
    except FileNotFoundError:
        print(
            "no calibration evidence: run `python -m bench.drift_calibrate` first", file=sys.stderr
        )
        return 2
    if calibration["calibration_seed"] == args.seed:
        print("the held-out seed must differ from the calibration seed", file=sys.stderr)
        return 2
    thresholds = load_thresholds()
    try:
        prepared = prepare()
    except FileNotFoundError as exc:
        print(
            f"drift bench needs the real datasets; missing {exc} (DRIFTLOOP_DATASETS)",
            file=sys.stderr,
        )
        return 2
    print(
        f"champion + reference + pools {'from cache' if prepared.from_cache else 'built'} in "
        f"{prepared.prepare_seconds}s; decision {thresholds.decision_method}, combined "
        f"threshold {thresholds.combined_threshold}",
        flush=True,
    )
    load_before = load_average()
    t0 = time.perf_counter()
    per_day = run_days(
        prepared,
        "held_out",
        args.seed,
        thresholds,
        args.days,
        args.prior_shift_days,
        args.batch_size,
        progress=lambda line: print(line, flush=True),
    )
    days_seconds = time.perf_counter() - t0

    def fired_rate(group: list[dict[str, Any]], check: str) -> float | None:
        return rate(group, lambda d: check in d["fired"])

    shipped = rates(per_day, lambda d: d["decision"] == DRIFT)
    prior = kinds(per_day).get("prior_shift", [])
    alternatives = []
    for option in calibration["options"]:
        if option["decision_method"] == "votes":
            rule = thresholds.with_overrides({"decision_method": "votes"})
        else:
            rule = drift_calibrate.candidate(
                thresholds.with_overrides({}),
                calibration["per_day"],
                calibration["null_mean"],
                calibration["null_sd"],
                drift_calibrate.WEIGHTINGS[option["weights"]],
                option["z_cap"],
                option["combined_threshold"],
            )
        held = drift_calibrate.evaluate(per_day, rule)
        alternatives.append(
            {
                "name": option["name"],
                "chosen": option["name"] == calibration["chosen"]["name"],
                "calibration": option["rates"],
                "held_out": held,
            }
        )
    votes = alternatives[0]
    report: dict[str, Any] = {
        "held_out": {
            "detection_rate": shipped["detection_rate"],
            "false_alarm_rate": shipped["false_alarm_rate"],
            "mixed_detection_rate": shipped["mixed_detection_rate"],
            "calibration_seed": calibration["calibration_seed"],
            "held_out_seed": args.seed,
            "days": days_named(per_day),
            "calibration_days": calibration["days"],
            "prior_shift": {
                "drift_rate": shipped["prior_shift_drift_rate"],
                "warning_rate": rate(prior, lambda d: bool(d["warnings"])),
                "warned_checks": sorted({w for d in prior for w in d["warnings"]}),
            },
            "check_fire_rate": {
                kind: {c: fired_rate(group, c) for c in CHECKS}
                for kind, group in kinds(per_day).items()
            },
            "pools": "held-out days draw from half 1 of each pool, calibration days from half 0",
        },
        "decision": {
            "method": thresholds.decision_method,
            "chosen_on_calibration": calibration["chosen"]["name"],
            "selection_rule": calibration["selection_rule"],
        },
        "before_votes_on_same_days": votes["held_out"],
        "target": TARGETS,
        "batch_size": args.batch_size,
        "thresholds": thresholds.to_dict(),
        "champion": prepared.champion,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "days_wall_seconds": round(days_seconds, 1),
        "mean_check_seconds": round(
            sum(d["check_seconds"] for d in per_day) / max(len(per_day), 1), 2
        ),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "machine_note": "2 shared cores; other jobs running",
        "alternatives": alternatives,
        "per_day": per_day,
    }
    save_json(args.out, report)

    h = report["held_out"]
    print(f"\nheld-out seed {args.seed} (calibrated on seed {h['calibration_seed']}), {h['days']}")
    print(
        f"{'rule':58s} {'detect':>6} {'FA':>5} "
        + " ".join(f"{s:>5g}" for s in MIXED_SHARES)
        + "  prior"
    )
    for alt in [a for a in alternatives if a["chosen"]] + [votes]:
        r = alt["held_out"]
        mixed = " ".join(f"{_fmt(r['mixed_detection_rate'][f'{s:g}']):>5}" for s in MIXED_SHARES)
        print(
            f"{alt['name'][:58]:58s} {_fmt(r['detection_rate']):>6} {_fmt(r['false_alarm_rate']):>5} "
            f"{mixed}  {_fmt(r['prior_shift_drift_rate'])}"
        )
    print(f"prior-shift days: {h['prior_shift']}")
    print(f"wall {report['wall_seconds']}s, load {load_before} -> {report['load_average_after']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

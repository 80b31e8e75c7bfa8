"""The README's benchmark table, written from the committed result files and nothing else.

    python -m bench.readme_table            # print the table
    python -m bench.readme_table --write    # replace it in README.md (between the markers)
    python -m bench.readme_table --check    # exit 1 when README.md differs (tests run this)

Every figure in the table is read from `bench/results/*.json`, with the machine's load
average (1-minute) before and after the run that produced it, so the README cannot quote a
figure no benchmark wrote. A result file that is absent leaves its rows out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START = "<!-- bench-table:start (written by `make bench-readme` from bench/results/*.json) -->"
END = "<!-- bench-table:end -->"

Row = tuple[str, str]


def _n(value: float, digits: int = 0) -> str:
    """1,234 / 1,234.5: thousands separated, fixed digits."""
    return f"{value:,.{digits}f}"


def _load(machine: dict[str, Any] | None) -> str:
    if not machine or "load_average_before" not in machine:
        return ""
    before, after = machine["load_average_before"][0], machine["load_average_after"][0]
    return f" (load average {before:.1f} before, {after:.1f} after)"


def _pick(rows: list[dict[str, Any]], server: str, workers: int, concurrency: int) -> dict | None:
    for row in rows:
        if (row["server"], row["workers"], row["concurrency"]) == (server, workers, concurrency):
            return row
    return None


def _serving(data: dict[str, Any]) -> Iterator[Row]:
    load = _load(data.get("machine"))
    limit = data.get("scorer_limit") or {}
    results = data["results"]
    if limit:
        sizes = [str(s) for s in limit["batch_sizes"]]
        rates = [_n(limit["batched_rows_per_s_per_core"][s]) for s in sizes]
        yield (
            "serving, scorer limit (in-process, one core, the API's compiled scorer)",
            f"one review per call {limit['single_ms']:.2f} ms ({_n(limit['single_rows_per_s'])} "
            f"reviews/s); batches of {' / '.join(sizes)}: {' / '.join(rates)} reviews/s{load}",
        )
    batched = limit.get("batched_limit_rows_per_s")
    one_worker = _pick(results, "driftloop", 1, 32)
    for workers in data.get("workers", [1]):
        ours = _pick(results, "driftloop", workers, 32)
        if ours is None:
            continue
        parts = [f"driftloop {_n(ours['rps'])} req/s, p99 {ours['p99_ms']:.0f} ms"]
        if batched:
            share = ours["rps"] / (workers * batched)
            times = "" if workers == 1 else f"{workers} × "
            parts[0] += f" ({share:.0%} of {times}the batched limit"
            if workers > 1 and one_worker:
                parts[0] += f"; {ours['rps'] / one_worker['rps']:.2f}× its 1-worker figure"
            parts[0] += ")"
        for peer, label in (("mlflow", "`mlflow models serve`"), ("bentoml", "BentoML")):
            theirs = _pick(results, peer, workers, 32)
            if theirs:
                parts.append(
                    f"{label} {_n(theirs['rps'])} req/s, p99 {theirs['p99_ms']:.0f} ms "
                    f"(driftloop {ours['rps'] / theirs['rps']:.1f}×)"
                )
        noun = "worker" if workers == 1 else "workers"
        yield (f"serving, {workers} {noun}, concurrency 32", "; ".join(parts) + load)
    c1 = []
    for server, label in (("driftloop", "driftloop"), ("mlflow", "MLflow"), ("bentoml", "BentoML")):
        p50 = [_pick(results, server, w, 1) for w in data.get("workers", [1])]
        if all(p50):
            figures = " / ".join(f"{r['p50_ms']:.2f}" for r in p50 if r)
            c1.append(f"{label} {figures} ms")
    if c1:
        workers_txt = " / ".join(f"{w} worker{'s' if w > 1 else ''}" for w in data["workers"])
        against = f", against the {limit['single_ms']:.2f} ms single-call limit" if limit else ""
        yield (
            "serving, concurrency 1, p50",
            f"{workers_txt}: " + "; ".join(c1) + against + load,
        )
    startup = data.get("startup_seconds_by_workers") or {}
    memory = data.get("memory_by_workers") or {}
    if startup:
        parts = []
        for server, by_workers in startup.items():
            figures = " / ".join(f"{v['all_workers']:.1f}" for v in by_workers.values())
            parts.append(f"{server} {figures} s")
        rss = []
        for server, by_workers in memory.items():
            first = next(iter(by_workers.values()))
            rss.append(f"{server} {max(first['worker_rss_mb']):.0f} MB")
        yield (
            "serving, start-up until every worker is ready (1 / 2 workers); RSS per worker",
            "; ".join(parts) + ("; RSS per worker " + ", ".join(rss) if rss else "") + load,
        )
    targets = data.get("targets") or []
    if targets:
        missed = [t["target"] for t in targets if not t["met"]]
        yield (
            "serving, the targets of the performance work",
            f"{len(targets) - len(missed)} of {len(targets)} met"
            + (f"; missed: {'; '.join(missed)}" if missed else ""),
        )


def _serving_credit(data: dict[str, Any]) -> Iterator[Row]:
    load = _load(data.get("machine"))
    results = data["results"]
    for workers in data.get("workers", [1]):
        parts = []
        for concurrency in data["settings"].get("concurrency", [1, 32]):
            ours = _pick(results, "driftloop", workers, concurrency)
            theirs = _pick(results, "mlflow", workers, concurrency)
            if ours and theirs:
                parts.append(
                    f"c{concurrency}: driftloop {_n(ours['rps'])} req/s, p99 "
                    f"{ours['p99_ms']:.0f} ms; MLflow {_n(theirs['rps'])} req/s, p99 "
                    f"{theirs['p99_ms']:.0f} ms (driftloop {ours['rps'] / theirs['rps']:.2f}×)"
                )
        shadow = data.get("shadow")
        if shadow and workers == 1:
            parts.append(
                f"shadow challenger on {shadow['fraction']:.0%} of traffic at "
                f"c{shadow['concurrency']}: champion p99 {shadow['p99_change_percent']:+.1f} %"
                # A shadow-only re-run carries its own load average (`--shadow-only`).
                + _load(shadow).replace(" (", " (shadow run: ", 1)
            )
        noun = "worker" if workers == 1 else "workers"
        yield (
            f"serving, credit use case, {workers} {noun} (driftloop validates the raw row, "
            "computes the features and three reason codes; MLflow gets feature rows, returns "
            "probabilities)",
            "; ".join(parts) + load,
        )


def _features_tuning(data: dict[str, Any]) -> Iterator[Row]:
    changes = []
    for trial in data["trials"][1:]:
        what = ", ".join(f"{k.removeprefix('spark.sql.')}={v}" for k, v in trial["change"].items())
        changes.append(f"{what} {trial['speedup_vs_base']:.2f}×")
    base = ", ".join(f"{k.removeprefix('spark.sql.')}={v}" for k, v in data["base"].items())
    same = (
        "the same output hash in every trial" if data.get("identical_output") else "OUTPUTS DIFFER"
    )
    yield (
        f"features, Spark settings on {data['master']}, {_n(data['rows'])} reviews (`TUNE=1`), "
        "one change at a time against the base",
        f"base {base}; " + "; ".join(changes) + f"; {same}" + _load(data.get("machine")),
    )


def _features(data: dict[str, Any]) -> Iterator[Row]:
    runs = data["runs"]
    pandas = runs["pandas"]
    parts = [
        f"one pandas process {_n(pandas['rows_per_s'])} rows/s ({pandas['job_seconds']:.0f} s, "
        f"peak RSS {pandas['peak_rss_mb']:.0f} MB)"
    ]
    for key, label, speedup in (
        ("spark_local", "Spark job on local[2]", "speedup_local"),
        ("spark_standalone", "standalone master + 2-core worker", "speedup_standalone"),
    ):
        run = runs.get(key)
        if run:
            parts.append(
                f"{label} {_n(run['rows_per_s'])} rows/s ({run['job_seconds']:.0f} s + "
                f"{run['startup_seconds']:.0f} s start-up; {data[speedup]:.2f}×, peak RSS "
                f"{run['peak_rss_mb']:.0f} MB)"
            )
    same = "the same output hash in all runs" if data.get("identical_output") else "OUTPUTS DIFFER"
    conf = data.get("spark_conf", {})
    settings = ", ".join(f"{k.removeprefix('spark.')}={v}" for k, v in conf.items())
    yield (
        f"features, {_n(data['rows'])} reviews, 2 cores ({settings})",
        "; ".join(parts) + f"; {same}" + _load(data.get("machine")),
    )


def _quality_imdb(data: dict[str, Any]) -> Iterator[Row]:
    yield (
        f"model search, IMDB aclImdb split, {data['budget_seconds'] / 60:.0f} min search budget",
        f"test accuracy {data['test_accuracy']:.4f}, ROC-AUC {data['test_roc_auc']:.4f}, "
        f"F1 {data['test_f1']:.3f}, best family {data['best_family']}; search "
        f"{_n(data['search_seconds'])} s, {_n(data['wall_seconds'])} s wall with features, refit "
        "and test" + _load(data.get("machine")),
    )


def _quality_credit(data: dict[str, Any]) -> Iterator[Row]:
    yield (
        "model search, UCI credit default (platform hash split), "
        f"{data['search_budget_s'] / 60:.0f} min search budget",
        f"test ROC-AUC {data['test_roc_auc']:.3f}, 5-fold CV ROC-AUC "
        f"{data['cv_roc_auc_mean']:.3f} ± {data['cv_roc_auc_std']:.3f}, balanced accuracy "
        f"{data['test_balanced_accuracy']:.3f}, ECE {data['test_ece']:.3f}, best family "
        f"{data['best_family']}; search {_n(data['search_seconds'])} s, "
        f"{_n(data['wall_seconds'])} s wall" + _load(data.get("machine")),
    )


def _drift(data: dict[str, Any]) -> Iterator[Row]:
    held = data["held_out"]
    mixed = held["mixed_detection_rate"]
    before = data.get("before_votes_on_same_days", {}).get("mixed_detection_rate")
    votes = (
        f" (vote counting on the same days: {' / '.join(f'{before[k]:.2f}' for k in ('0.5', '0.35', '0.2'))})"
        if before
        else ""
    )
    prior = held.get("prior_shift", {})
    machine = {
        "load_average_before": data.get("load_average_before", [0]),
        "load_average_after": data.get("load_average_after", [0]),
    }
    yield (
        f"drift, held-out days (seed {held['held_out_seed']}; thresholds chosen on seed "
        f"{held['calibration_seed']}'s days), {data['batch_size']} requests a day",
        f"detection {held['detection_rate']:.2f} on fully foreign days, false alarms "
        f"{held['false_alarm_rate']:.2f}; days with 50 % / 35 % / 20 % foreign reviews caught "
        f"{' / '.join(f'{mixed[k]:.2f}' for k in ('0.5', '0.35', '0.2'))}{votes}"
        + (
            f"; prior-shift days called drift {prior['drift_rate']:.2f}, warned "
            f"{prior['warning_rate']:.2f}"
            if prior
            else ""
        )
        + f"; {data['mean_check_seconds']:.1f} s per daily check"
        + _load(machine),
    )


SECTIONS: tuple[tuple[str, Callable[[dict[str, Any]], Iterator[Row]]], ...] = (
    ("serving.json", _serving),
    ("serving-credit.json", _serving_credit),
    ("features-tuning.json", _features_tuning),
    ("features.json", _features),
    ("quality-imdb.json", _quality_imdb),
    ("quality-credit.json", _quality_credit),
    ("drift.json", _drift),
)


def render(results: Path = RESULTS) -> str:
    """The table (with its markers) from the result files in `results`."""
    lines = [START, "", "| benchmark | result | file |", "| --- | --- | --- |"]
    for name, section in SECTIONS:
        path = results / name
        if not path.exists():
            continue
        for what, figures in section(json.loads(path.read_text())):
            lines.append(f"| {what} | {figures} | [`{name}`](bench/results/{name}) |")
    lines += ["", END]
    return "\n".join(lines)


def replace_in(text: str, table: str) -> str:
    """`text` with the block between the markers replaced by `table`."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md lacks the markers {START!r} ... {END!r}")
    return text[:start] + table + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    args = parser.parse_args(argv)
    table = render()
    if not (args.write or args.check):
        print(table)
        return 0
    current = README.read_text()
    wanted = replace_in(current, table)
    if args.check:
        if wanted != current:
            print("README.md's benchmark table is stale: run `make bench-readme`", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    print(f"wrote the benchmark table into {README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

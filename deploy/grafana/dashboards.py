"""Grafana dashboards as code: Serving, Model quality & drift, Pipelines.

    python deploy/grafana/dashboards.py           # (re)write deploy/grafana/dashboards/*.json
    python deploy/grafana/dashboards.py --check   # exit 1 if the committed JSON is stale

Built with the Grafana Foundation SDK (PyPI `grafana-foundation-sdk`, kept by
Grafana Labs, its types generated from Grafana's own schemas). The JSON is
committed so Grafana provisions it without Python (see
`deploy/grafana/provisioning/`). Every query is PromQL over the metric names
the API, the Pushgateway groups and the Airflow StatsD exporter export; a
test runs each of them against a live Prometheus fed by those sources.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard, heatmap, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="driftloop-prometheus")
API = 'job="driftloop-api"'
PREDICT = f'{API}, route=~"/predict.*"'
DRIFT = 'job="driftloop_drift_check"'
TRAINING = 'job="driftloop_training"'
RATE = "$__rate_interval"


def _query(expr: str, legend: str = "", ref: str = "A", fmt: str = "time_series") -> Any:
    query = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        query = query.legend_format(legend)
    if fmt == "heatmap":
        query = query.format(PromQueryFormat.HEATMAP)
    return query


def _with_queries(panel: Any, queries: list[tuple[str, str]]) -> Any:
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, ref=chr(ord("A") + index)))
    return panel.datasource(DATASOURCE)


def graph(
    title: str, queries: list[tuple[str, str]], unit: str = "short", description: str = ""
) -> Any:
    panel = timeseries.Panel().title(title).unit(unit).height(8).span(12)
    if description:
        panel = panel.description(description)
    return _with_queries(panel, queries)


def single(title: str, expr: str, legend: str, unit: str = "short", description: str = "") -> Any:
    panel = stat.Panel().title(title).unit(unit).height(5).span(6)
    if description:
        panel = panel.description(description)
    return _with_queries(panel, [(expr, legend)])


def heat(title: str, expr: str, unit: str, description: str) -> Any:
    panel = (
        heatmap.Panel()
        .title(title)
        .description(description)
        .height(8)
        .span(12)
        .with_target(_query(expr, "{{le}}", fmt="heatmap"))
    )
    return panel.datasource(DATASOURCE)


def annotation(name: str, expr: str, color: str) -> Any:
    return (
        dashboard.AnnotationQuery()
        .name(name)
        .datasource(DATASOURCE)
        .expr(expr)
        .enable(True)
        .icon_color(color)
    )


def _board(uid: str, title: str, description: str) -> Any:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["driftloop"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .editable()
    )


def serving() -> Any:
    return (
        _board(
            "driftloop-serving",
            "driftloop / Serving",
            "RED of the prediction API, the scores it gives and the model it serves.",
        )
        .with_row(dashboard.Row("Requests"))
        .with_panel(
            graph(
                "Request rate by route and status",
                [
                    (
                        f"sum by (route, status) (rate(driftloop_http_requests_total{{{API}}}[{RATE}]))",
                        "{{route}} {{status}}",
                    )
                ],
                "reqps",
            )
        )
        .with_panel(
            graph(
                "Share of responses by status",
                [
                    (
                        f"sum by (status) (rate(driftloop_http_requests_total{{{API}}}[{RATE}]))"
                        f" / ignoring (status) group_left"
                        f" sum(rate(driftloop_http_requests_total{{{API}}}[{RATE}]))",
                        "{{status}}",
                    )
                ],
                "percentunit",
                "5xx above 2 % pages (DriftloopApiErrorRatioHigh).",
            )
        )
        .with_panel(
            graph(
                "Latency of the predict routes (p50, p99)",
                [
                    (
                        "histogram_quantile(0.5, sum by (route, le) (rate("
                        f"driftloop_http_request_duration_seconds_bucket{{{PREDICT}}}[{RATE}])))",
                        "p50 {{route}}",
                    ),
                    (
                        "histogram_quantile(0.99, sum by (route, le) (rate("
                        f"driftloop_http_request_duration_seconds_bucket{{{PREDICT}}}[{RATE}])))",
                        "p99 {{route}}",
                    ),
                ],
                "s",
                "SLO: p99 under 250 ms (DriftloopApiLatencyP99High).",
            )
        )
        .with_panel(
            heat(
                "Latency heatmap (predict routes)",
                "sum by (le) (increase("
                f"driftloop_http_request_duration_seconds_bucket{{{PREDICT}}}[{RATE}]))",
                "s",
                "Requests per latency bucket.",
            )
        )
        .with_row(dashboard.Row("Model"))
        .with_panel(
            heat(
                "Score distribution",
                f"sum by (le) (increase(driftloop_prediction_score_bucket{{{API}}}[{RATE}]))",
                "none",
                "Predictions per P(positive) bucket.",
            )
        )
        .with_panel(
            graph(
                "Mean score by model version",
                [
                    (
                        "sum by (model_version) (rate(driftloop_prediction_score_sum"
                        f"{{{API}}}[{RATE}])) / sum by (model_version) "
                        f"(rate(driftloop_prediction_score_count{{{API}}}[{RATE}]))",
                        "v{{model_version}}",
                    )
                ],
                "percentunit",
            )
        )
        .with_panel(
            graph(
                "Predictions by label and version",
                [
                    (
                        "sum by (label, model_version) (rate(driftloop_predictions_total"
                        f"{{{API}}}[{RATE}]))",
                        "label {{label}} v{{model_version}}",
                    )
                ],
                "reqps",
            )
        )
        .with_panel(
            graph(
                "Micro-batch size",
                [
                    (
                        f"sum(rate(driftloop_batch_size_rows_sum{{{API}}}[{RATE}])) / "
                        f"sum(rate(driftloop_batch_size_rows_count{{{API}}}[{RATE}]))",
                        "mean rows per model call",
                    ),
                    (
                        f"sum(rate(driftloop_batch_size_rows_count{{{API}}}[{RATE}]))",
                        "model calls per second",
                    ),
                ],
            )
        )
        .with_panel(
            single(
                "Served version",
                f"max by (name, version) (driftloop_model_info{{{API}}} == 1)",
                "{{name}} v{{version}}",
                description="1 per served version; two versions = a reload in progress.",
            )
        )
        .with_panel(
            single(
                "Since the alias moved to it",
                f"time() - max(driftloop_model_alias_set_timestamp_seconds{{{API}}} > 0)",
                "",
                "s",
            )
        )
        .with_panel(
            graph(
                "Model reloads",
                [
                    (
                        f"sum by (outcome) (increase(driftloop_model_reloads_total{{{API}}}[1h]))",
                        "{{outcome}}",
                    )
                ],
                description="Loads per hour by outcome; failed loads keep the old model.",
            )
        )
        .with_row(dashboard.Row("Prediction log and limits"))
        .with_panel(
            graph(
                "Prediction log",
                [
                    (f"sum(driftloop_prediction_log_queue_depth{{{API}}})", "queued rows"),
                    (
                        f"sum(rate(driftloop_prediction_log_written_rows_total{{{API}}}[{RATE}]))",
                        "written rows/s",
                    ),
                    (
                        f"sum(rate(driftloop_prediction_log_dropped_rows_total{{{API}}}[{RATE}]))",
                        "dropped rows/s",
                    ),
                ],
            )
        )
        .with_panel(
            graph(
                "Rate-limited requests",
                [
                    (
                        "sum by (route) (rate(driftloop_rate_limited_requests_total"
                        f"{{{API}}}[{RATE}]))",
                        "{{route}}",
                    )
                ],
                "reqps",
                "Requests refused with 429.",
            )
        )
    )


def model_quality() -> Any:
    return (
        _board(
            "driftloop-model-quality",
            "driftloop / Model quality & drift",
            "What the daily drift_check pushed: each check against its threshold, realised "
            "quality on feedback labels, and the retrain and gate events.",
        )
        .annotation(
            annotation("Retrain triggered", f"driftloop_retrain_triggered{{{DRIFT}}} == 1", "red")
        )
        .annotation(annotation("Gate decision", f"driftloop_gate_promoted{{{TRAINING}}}", "blue"))
        .with_row(dashboard.Row("Drift"))
        .with_panel(
            graph(
                "Each check's score against its threshold",
                [
                    (f"max by (check) (driftloop_drift_check_score{{{DRIFT}}})", "{{check}} score"),
                    (
                        f"max by (check) (driftloop_drift_check_threshold{{{DRIFT}}})",
                        "{{check}} threshold",
                    ),
                ],
                description="One value per daily run; a check fires when its score crosses "
                "its threshold (text_domain: ROC-AUC of the domain classifier).",
            )
        )
        .with_panel(
            graph(
                "Checks that fired",
                [(f"max by (check) (driftloop_drift_check_fired{{{DRIFT}}})", "{{check}}")],
            )
        )
        .with_panel(
            single(
                "Latest decision",
                f"max by (use_case, decision) (driftloop_drift_decision{{{DRIFT}}}) == 1",
                "{{use_case}}: {{decision}}",
            )
        )
        .with_panel(
            single(
                "Since the last drift check",
                f"time() - max(driftloop_drift_last_push_timestamp_seconds{{{DRIFT}}})",
                "",
                "s",
            )
        )
        .with_panel(
            graph(
                "Combined drift score against its threshold",
                [
                    (f"max(driftloop_drift_combined_score{{{DRIFT}}})", "combined z"),
                    (f"max(driftloop_drift_combined_threshold{{{DRIFT}}})", "threshold"),
                ],
                description="The day's verdict: the checks' statistics combined into one z "
                "(monitoring/config/drift.yaml, calibrated on held-apart days).",
            )
        )
        .with_panel(
            graph(
                "Warnings: checks that fired on a day that is not drift",
                [(f"max by (check) (driftloop_drift_check_warning{{{DRIFT}}})", "{{check}}")],
                description="E.g. a prior shift moves the score distribution without the "
                "day being foreign: reported, never dropped.",
            )
        )
        .with_panel(
            graph(
                "Window size and votes",
                [
                    (f"max(driftloop_drift_window_rows{{{DRIFT}}})", "logged predictions"),
                    (f"max(driftloop_drift_votes{{{DRIFT}}})", "votes"),
                ],
            )
        )
        .with_row(dashboard.Row("Quality on feedback labels"))
        .with_panel(
            graph(
                "Realised vs champion test performance",
                [
                    (
                        f"max by (metric) (driftloop_realised_performance{{{DRIFT}}})",
                        "realised {{metric}}",
                    ),
                    (
                        f"max by (metric) (driftloop_champion_test_performance{{{DRIFT}}})",
                        "champion test {{metric}}",
                    ),
                ],
                "percentunit",
            )
        )
        .with_panel(
            graph(
                "Label coverage",
                [
                    (f"max(driftloop_label_coverage_ratio{{{DRIFT}}})", "labelled share"),
                ],
                "percentunit",
                "Share of the window's predictions with a feedback label; realised "
                "figures are judged only above min_labels.",
            )
        )
        .with_row(dashboard.Row("Late labels: per prediction day"))
        .with_panel(
            graph(
                "Realised (late labels) vs estimated (CBPE) performance",
                [
                    (
                        f"max by (metric) (driftloop_late_label_realised_performance{{{DRIFT}}})",
                        "realised {{metric}} (covered days)",
                    ),
                    (
                        f"max by (metric) (driftloop_estimated_performance{{{DRIFT}}})",
                        "estimated {{metric}} (latest day, no labels)",
                    ),
                ],
                "percentunit",
                "Realised: pooled over the label-lag window's days with enough label coverage. "
                "Estimated: confidence-based, from the scores alone, so a drop shows before "
                "the labels arrive.",
            )
        )
        .with_panel(
            graph(
                "Label coverage per prediction day",
                [
                    (
                        "max by (prediction_day) "
                        f"(driftloop_prediction_day_label_coverage_ratio{{{DRIFT}}})",
                        "{{prediction_day}}",
                    )
                ],
                "percentunit",
                "A label for a prediction made on day D raises day D's coverage whenever it lands.",
            )
        )
    )


def pipelines() -> Any:
    return (
        _board(
            "driftloop-pipelines",
            "driftloop / Pipelines",
            "Airflow run durations and failures (StatsD exporter) and what "
            "training_pipeline pushed: rows, quarantine, search, gate.",
        )
        .with_row(dashboard.Row("Airflow"))
        .with_panel(
            graph(
                "Mean DAG run duration (last hour)",
                [
                    (
                        "sum by (dag_id, state) (increase(airflow_dagrun_duration_seconds_sum[1h]))"
                        " / sum by (dag_id, state) "
                        "(increase(airflow_dagrun_duration_seconds_count[1h]))",
                        "{{dag_id}} {{state}}",
                    )
                ],
                "s",
            )
        )
        .with_panel(
            graph(
                "Task duration p90 by DAG",
                [
                    (
                        "histogram_quantile(0.9, sum by (dag_id, le) "
                        f"(rate(airflow_task_duration_seconds_bucket[{RATE}])))",
                        "{{dag_id}}",
                    )
                ],
                "s",
            )
        )
        .with_panel(
            graph(
                "Failed tasks (last hour)",
                [
                    (
                        "sum by (dag_id, task_id) "
                        '(increase(airflow_task_finished_total{state="failed"}[1h]))',
                        "{{dag_id}}.{{task_id}}",
                    )
                ],
            )
        )
        .with_panel(
            graph(
                "Scheduler heartbeats",
                [(f"sum(rate(airflow_scheduler_heartbeat_total[{RATE}]))", "beats/s")],
            )
        )
        .with_row(dashboard.Row("Training"))
        .with_panel(
            graph(
                "Rows per stage (latest run)",
                [
                    (f"max(driftloop_training_rows_read{{{TRAINING}}})", "read"),
                    (f"max(driftloop_training_rows_quarantined{{{TRAINING}}})", "quarantined"),
                    (f"max(driftloop_training_rows_written{{{TRAINING}}})", "written"),
                ],
            )
        )
        .with_panel(
            graph(
                "Quarantine share",
                [(f"max(driftloop_training_quarantine_ratio{{{TRAINING}}})", "quarantined")],
                "percentunit",
            )
        )
        .with_panel(
            graph(
                "Search: best validation score per family",
                [
                    (
                        f"max by (family) (driftloop_search_best_validation_score{{{TRAINING}}})",
                        "{{family}}",
                    )
                ],
            )
        )
        .with_panel(
            graph(
                "Search progress per family",
                [
                    (
                        f"max by (family) (driftloop_search_trials_complete{{{TRAINING}}})",
                        "{{family}} complete",
                    ),
                    (
                        f"max by (family) (driftloop_search_trials_pruned{{{TRAINING}}})",
                        "{{family}} pruned",
                    ),
                    (
                        f"max by (family) (driftloop_search_duration_seconds{{{TRAINING}}})",
                        "{{family}} seconds",
                    ),
                ],
            )
        )
        .with_panel(
            graph(
                "Gate: challenger vs champion",
                [
                    (f"max by (role) (driftloop_gate_score{{{TRAINING}}})", "{{role}}"),
                    (
                        f"max(driftloop_gate_consecutive_holds{{{TRAINING}}})",
                        "candidates held back in a row",
                    ),
                ],
            )
        )
    )


BOARDS = {"serving": serving, "model-quality": model_quality, "pipelines": pipelines}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {
        f"{name}.json": encoder.encode(build().build()) + "\n" for name, build in BOARDS.items()
    }


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and annotation of one dashboard's JSON."""
    found = []
    for panel in board.get("panels", []):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                found.append((f"{board['title']} / {panel['title']}", target["expr"]))
    for item in (board.get("annotations") or {}).get("list", []):
        if item.get("expr"):
            found.append((f"{board['title']} / annotation {item['name']}", item["expr"]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed JSON is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUT_DIR / name
        json.loads(text)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(
            f"stale dashboard JSON {stale}: run `python deploy/grafana/dashboards.py` and commit",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

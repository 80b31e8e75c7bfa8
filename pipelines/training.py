"""Steps of the `training_pipeline` DAG."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from core.settings import REPO_ROOT, get_settings

log = logging.getLogger(__name__)


class SparkJobFailed(RuntimeError):
    """spark-submit returned non-zero; the message carries the tail of its log."""


def run_dir_for(run_id: str) -> Path:
    """One lake folder per DAG run: snapshot, quarantine, features, reports."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")
    path = get_settings().lake_dir / "runs" / safe
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_sources(params: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    """The sources named by the run's checked Params; synthetic data when no path is given.

    Synthetic rows come from the use case's registered generator, in the layout of
    its default source.
    """
    from core.usecases import get_use_case
    from pipelines.params import default_source

    use_case = get_use_case(params.get("use_case"))
    sources: list[dict[str, Any]] = []
    if params.get("data_path"):
        sources.append({"path": params["data_path"], "source": params["source"]})
    sources.extend(dict(extra) for extra in params.get("extra_sources") or [])
    if not sources:
        generate = use_case.synthetic
        if generate is None:
            raise ValueError(
                f"use case {use_case.name!r} registers no synthetic generator: give a Data file"
            )
        path = run_dir / "generated" / f"synthetic_{use_case.name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = int(params["synthetic_rows"])
        generate(rows, seed=0).to_csv(path, index=False)
        log.info(
            "no data_path given: generated %d synthetic %s rows at %s", rows, use_case.name, path
        )
        sources.append({"path": str(path), "source": default_source(use_case.name)})
    return sources


def ingest_sources(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    from ingestion.ingest import snapshot_sources
    from pipelines.params import describe_sources

    run_dir = run_dir_for(run_id)
    log.info(
        "ingest: snapshotting %s into %s (run %s, reason: %s)",
        describe_sources(params),
        run_dir,
        run_id,
        params.get("reason", "manual"),
    )
    if params.get("trigger"):
        log.info("trigger details: %s", json.dumps(params["trigger"], default=str))
    manifest = snapshot_sources(resolve_sources(params, run_dir), str(run_dir))
    manifest["run_dir"] = str(run_dir)
    manifest["use_case"] = params.get("use_case") or manifest.get("use_case")
    for item in manifest["sources"]:
        log.info(
            "snapshot %s: %s (%d bytes, sha256 %s)",
            item["name"],
            item["snapshot"],
            item["bytes"],
            item["sha256"],
        )
    log.info(
        "ingest done: %d file(s), %d bytes, data sha256 %s",
        len(manifest["sources"]),
        sum(int(item["bytes"]) for item in manifest["sources"]),
        manifest["data_sha256"],
    )
    return manifest


def validate(manifest: dict[str, Any], max_quarantine_share: float) -> dict[str, Any]:
    from ingestion.validate import validate_sources
    from pipelines.links import publish_link

    log.info(
        "validate_raw (use case %s): Great Expectations checkpoint + Pandera contract on %s; "
        "the run fails above a quarantine share of %.1f%%",
        manifest.get("use_case"),
        ", ".join(f"{item['name']} ({item['snapshot']})" for item in manifest["sources"]),
        100 * max_quarantine_share,
    )
    report = validate_sources(
        manifest, manifest["run_dir"], max_quarantine_share=max_quarantine_share
    )
    if report.get("data_docs_path"):
        publish_link("data_docs", Path(report["data_docs_path"]).as_uri())
    publish_link("quarantine", Path(report["quarantine_path"]).as_uri())
    log.info(
        "validate_raw done: rows in %d, quarantined %d %s (counted share %.2f%%), written %d to %s",
        report["rows_read"],
        report["rows_quarantined"],
        report.get("quarantined_by_reason", {}),
        100 * float(report.get("quarantine_share", 0.0)),
        report["rows_accepted"],
        report["accepted_path"],
    )
    report["run_dir"] = manifest["run_dir"]
    from monitoring.pipeline_metrics import push_validation

    push_validation(report, Path(manifest["run_dir"]).name, report.get("use_case"))
    return report


def spark_submit_command(
    input_path: str, output_dir: str, master: str, use_case: str | None = None
) -> list[str]:
    """spark-submit of the feature job on validate_raw's accepted rows.

    Those rows are in the use case's canonical raw columns with a 0/1 `label`, so
    the job maps no source: canonical columns and the contract's label names.
    """
    from core.usecases import get_use_case

    spark_submit = Path(sys.executable).with_name("spark-submit")
    return [
        str(spark_submit) if spark_submit.exists() else "spark-submit",
        "--master",
        master,
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.sql.shuffle.partitions=4",
        str(REPO_ROOT / "jobs" / "spark" / "featurize.py"),
        "--input",
        input_path,
        "--output",
        output_dir,
        "--use-case",
        get_use_case(use_case).name,
    ]


def run_spark_featurize(validated: dict[str, Any]) -> dict[str, Any]:
    """Run the Spark job as a real spark-submit (local[*] or a cluster URL alike)."""
    output_dir = Path(validated["run_dir"]) / "spark"
    use_case = validated.get("use_case")
    command = spark_submit_command(
        validated["accepted_path"], str(output_dir), get_settings().spark_master, use_case
    )
    env = dict(os.environ)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    log.info(
        "featurize: Spark (%s) cleans, de-duplicates, splits and computes %s features of %s",
        get_settings().spark_master,
        use_case,
        validated["accepted_path"],
    )
    log.info("running: %s", " ".join(command))
    tail: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO_ROOT
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail[-40:], line]
            if " WARN " not in line:
                log.info("spark | %s", line)
    if proc.returncode != 0:
        raise SparkJobFailed(f"spark-submit exited {proc.returncode}:\n" + "\n".join(tail))
    stats = json.loads((output_dir / "stats.json").read_text())
    log.info("featurize done: features written to %s: %s", output_dir / "features", stats)
    from monitoring.pipeline_metrics import push_features_written

    push_features_written(stats, use_case)
    return {
        "features_dir": str(output_dir / "features"),
        "stats": stats,
        "run_dir": validated["run_dir"],
        "use_case": use_case,
    }


def plan_search(
    featurized: dict[str, Any], manifest: dict[str, Any], params: dict[str, Any], run_id: str
) -> list[dict[str, Any]]:
    """One spec per model family, all nested under one MLflow parent run.

    Study names derive from the DAG run id, so a retried `tune` task resumes
    its study instead of starting over.
    """
    from training.tune import start_parent_run

    families = [str(f) for f in params.get("families") or []]
    if not families:
        raise ValueError("the 'families' Param is empty: name at least one model family")
    use_case = str(params.get("use_case") or featurized.get("use_case"))
    parent = start_parent_run(
        run_id,
        tags={
            "airflow_run_id": run_id,
            "trigger_reason": str(params.get("reason", "manual")),
            "data_sha256": manifest["data_sha256"],
            "use_case": use_case,
        },
    )
    log.info(
        "plan_search: use case %s, %d families %s, %d trials and %d s each, under parent "
        "MLflow run %s",
        use_case,
        len(families),
        families,
        int(params["n_trials"]),
        int(params["family_timeout_s"]),
        parent,
    )
    _publish_run_link("mlflow_search", parent)
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", run_id)
    return [
        {
            "family": family,
            "features_dir": featurized["features_dir"],
            "run_dir": featurized["run_dir"],
            "n_trials": int(params.get("n_trials", 8)),
            "timeout_s": float(params.get("family_timeout_s", 300)),
            "study_name": f"{safe}-{family}",
            "parent_run_id": parent,
            "use_case": use_case,
        }
        for family in families
    ]


def _publish_run_link(kind: str, run_id: str, artifact: str | None = None) -> None:
    import mlflow

    from pipelines.links import mlflow_run_url, publish_link

    experiment_id = mlflow.MlflowClient().get_run(run_id).info.experiment_id
    url = mlflow_run_url(run_id, experiment_id, artifact)
    publish_link(kind, url, what=f"run {run_id} in {mlflow.get_tracking_uri()}")


def tune_one(spec: dict[str, Any]) -> dict[str, Any]:
    """One family's Optuna study (a mapped task), with its figures in the log."""
    from training.tune import tune_family

    log.info(
        "tune %s: up to %d trials within %.0f s on %s (study %s)",
        spec["family"],
        spec["n_trials"],
        spec["timeout_s"],
        spec["features_dir"],
        spec["study_name"],
    )
    result = tune_family(
        spec["family"],
        spec["features_dir"],
        n_trials=spec["n_trials"],
        timeout_s=spec["timeout_s"],
        study_name=spec["study_name"],
        parent_run_id=spec["parent_run_id"],
        use_case=_use_case_of(spec),
    )
    if result.get("child_run_id"):
        _publish_run_link("mlflow_run", result["child_run_id"])
    log.info(
        "tune %s done: %s trials run (%s complete, %s pruned, %s failed), best valid %s %.4f",
        spec["family"],
        result.get("n_trials"),
        result.get("n_complete"),
        result.get("n_pruned"),
        result.get("n_failed"),
        result.get("metric"),
        float(result.get("best_value") or float("nan")),
    )
    return result


def _use_case_of(item: dict[str, Any]) -> str:
    """The use case an XCom dict names (the registry's default when it names none)."""
    from core.usecases import get_use_case

    return get_use_case(item.get("use_case")).name


def pick_best(results: list[dict[str, Any]]) -> dict[str, Any]:
    from training.tune import select_best

    log.info("select_best: ranking %d families by their best validation score", len(results))
    best = select_best(results)
    for row in best.get("leaderboard") or []:
        log.info(
            "  #%s %s: %s %.4f (%s trials)",
            row.get("rank"),
            row.get("family"),
            row.get("metric"),
            float(row.get("best_value") or float("nan")),
            row.get("n_trials"),
        )
    log.info("select_best done: winner %s", best.get("family"))
    return best


def evaluate_refit(trained: dict[str, Any], featurized: dict[str, Any]) -> dict[str, Any]:
    from training.evaluate import evaluate_run

    log.info(
        "evaluate: %s (run %s) on the held-out test split of %s",
        trained.get("family"),
        trained["run_id"],
        featurized["features_dir"],
    )
    metrics = evaluate_run(
        trained["run_id"], featurized["features_dir"], use_case=_use_case_of(featurized)
    )
    _publish_run_link("mlflow_run", trained["run_id"])
    shown = {k: round(float(v), 4) for k, v in metrics.items() if isinstance(v, int | float)}
    log.info("evaluate done: test %s", shown)
    return metrics


def tag_run(run_id: str, params: dict[str, Any], airflow_run_id: str) -> None:
    """Say on the MLflow run why it exists (manual, schedule, or the drift that fired)."""
    import mlflow

    client = mlflow.MlflowClient()
    client.set_tag(run_id, "trigger_reason", str(params.get("reason", "manual")))
    client.set_tag(run_id, "airflow_run_id", airflow_run_id)
    if params.get("trigger"):
        client.set_tag(run_id, "trigger", json.dumps(params["trigger"], default=str)[:5000])


def data_lineage(params: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """Which rows came from where: one record per ingested file (kind, rows, sha256).

    A retrain started by drift_check carries its parts (snapshot, feedback,
    landing, with row counts) in `trigger.retrain_data`; each part is matched by
    name to the file this run snapshotted, and the sha256 ingestion computed must
    be the one drift_check recorded. A manual run has its files only (kind
    `given`, rows unknown until validation).
    """
    planned = {
        str(part["name"]): part
        for part in ((params.get("trigger") or {}).get("retrain_data") or {}).get("parts") or []
    }
    parts = []
    for item in manifest["sources"]:
        part = planned.get(str(item["name"]), {})
        if part and part.get("sha256") != item["sha256"]:
            raise ValueError(
                f"retraining part {item['name']}: drift_check recorded sha256 {part.get('sha256')}"
                f" but ingestion snapshotted {item['sha256']} from {item['path']}: the file "
                "changed between the decision and the retrain"
            )
        parts.append(
            {
                "name": item["name"],
                "kind": part.get("kind", "given"),
                "rows": part.get("rows"),
                "sha256": item["sha256"],
                "bytes": item["bytes"],
                "path": item["path"],
            }
        )
    rows: dict[str, int] = {}
    for part in parts:
        if part["rows"] is not None:
            rows[part["kind"]] = rows.get(part["kind"], 0) + int(part["rows"])
    return {"data_sha256": manifest["data_sha256"], "parts": parts, "rows_by_kind": rows}


def log_data_lineage(run_id: str, params: dict[str, Any], manifest: dict[str, Any]) -> None:
    """The lineage on the MLflow run: a param per part, tags per kind, `data_lineage.json`."""
    import mlflow

    lineage = data_lineage(params, manifest)
    client = mlflow.MlflowClient()
    for part in lineage["parts"]:
        client.log_param(
            run_id,
            f"data.{part['name']}",
            f"{part['kind']} {part['rows']} rows sha256 {part['sha256']}",
        )
    for kind, count in lineage["rows_by_kind"].items():
        client.set_tag(run_id, f"data_rows_{kind}", str(count))
    client.log_dict(run_id, lineage, "data_lineage.json")
    log.info(
        "data lineage: %s",
        "; ".join(
            f"{p['name']} ({p['kind']}): {p['rows']} rows, sha256 {p['sha256']}"
            for p in lineage["parts"]
        ),
    )


def refit_winner(
    best: dict[str, Any],
    specs: list[dict[str, Any]],
    manifest: dict[str, Any],
    params: dict[str, Any],
    run_id: str,
) -> dict[str, Any]:
    from training.tune import refit_best

    parent = specs[0]["parent_run_id"]
    log.info(
        "refit: %s with its best parameters on train + valid of %s",
        best.get("family"),
        specs[0]["features_dir"],
    )
    trained = refit_best(
        best,
        specs[0]["features_dir"],
        parent_run_id=parent,
        run_name=f"{run_id} refit {best.get('family')}",
        data_sha256=manifest["data_sha256"],
        leaderboard=best.get("leaderboard"),
        use_case=_use_case_of(specs[0]),
    )
    trained.setdefault("use_case", specs[0].get("use_case"))
    tag_run(trained["run_id"], params, run_id)
    log_data_lineage(trained["run_id"], params, manifest)
    from monitoring.pipeline_metrics import push_search

    push_search(best, specs[0].get("use_case"))
    data_docs = Path(specs[0]["run_dir"]) / "data_docs" / "index.html"
    if data_docs.exists():
        import mlflow

        # The GE Data Docs of this run's raw-data validation, linked from the model's run.
        for target in (trained["run_id"], parent):
            mlflow.MlflowClient().set_tag(target, "data_docs", data_docs.as_uri())
    trained["parent_run_id"] = parent
    _publish_run_link("mlflow_run", trained["run_id"])
    log.info("refit done: %s, MLflow run %s", trained.get("family"), trained["run_id"])
    return trained


def save_reference_profile(
    run_id: str, features_dir: str, run_dir: str, use_case: str | None = None
) -> str:
    """Log a sample of held-out rows' features and scores with the model.

    The daily drift check compares served traffic with this profile, so it is
    written before the version can become champion. Scores must be
    out-of-sample (scores on rows the model was fitted on are overconfident and
    make every ordinary day look like prediction drift): the final model is
    fitted on train + valid, so the profile comes from the untouched test split.
    """
    import mlflow

    from core.usecases import get_use_case
    from monitoring.reference import build_reference_profile, save_profile
    from training.data import feature_frame, labels, load_features, split_frames

    name = get_use_case(use_case).name
    model = mlflow.sklearn.load_model(f"runs:/{run_id}/model")
    _, _, test = split_frames(load_features(features_dir, name))
    features = feature_frame(test, name)
    threshold = mlflow.MlflowClient().get_run(run_id).data.tags.get("decision_threshold")
    profile = build_reference_profile(
        features,
        model.predict_proba(features)[:, 1],
        labels(test, name),
        decision_threshold=float(threshold) if threshold else 0.5,
        use_case=name,
    )
    path = save_profile(profile, Path(run_dir) / "reference" / "profile.parquet")
    mlflow.MlflowClient().log_artifact(run_id, str(path), artifact_path="reference")
    log.info("reference profile: %d rows logged to run %s", len(profile), run_id)
    return str(path)


def register_candidate(
    trained: dict[str, Any], featurized: dict[str, Any], model_name: str
) -> dict[str, Any]:
    from pipelines.links import model_version_url, publish_link
    from training.promote import register_and_gate

    log.info(
        "register: reference profile, then %s version from run %s, gated against the champion",
        model_name,
        trained["run_id"],
    )
    use_case = featurized.get("use_case")
    save_reference_profile(
        trained["run_id"], featurized["features_dir"], featurized["run_dir"], use_case
    )
    result = register_and_gate(
        trained["run_id"], model_name, featurized["features_dir"], use_case=_use_case_of(featurized)
    )
    result["model_name"] = model_name
    result["use_case"] = use_case
    from monitoring.pipeline_metrics import push_gate

    push_gate(result, model_name, use_case)
    publish_link(
        "model_version",
        model_version_url(model_name, str(result["version"])),
        what=f"{model_name} version {result['version']}",
    )
    _publish_run_link("mlflow_run", trained["run_id"])
    decision = result["decision"]
    log.info(
        "register done: %s v%s %s; gate %s: challenger %s vs champion %s (v%s), "
        "decision thresholds %s: %s",
        model_name,
        result["version"],
        "PROMOTED to champion"
        if result["promoted"]
        else (
            "kept as challenger, AWAITING shadow traffic (re-gated daily by drift_check)"
            if result.get("awaiting_shadow")
            else "kept as challenger"
        ),
        ((decision.get("policy") or {}).get("primary") or {}).get("metric", "test metric"),
        decision.get("challenger_value"),
        decision.get("champion_value"),
        decision.get("compared_with_version") or "none",
        decision.get("thresholds"),
        decision.get("reason", ""),
    )
    if trained.get("parent_run_id"):
        from training.tune import end_parent_run

        end_parent_run(trained["parent_run_id"])
    return result

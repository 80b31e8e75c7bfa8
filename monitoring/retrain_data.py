"""What a retrain triggered by `drift_check` trains on when no data Param is set.

Three parts, each a file the training pipeline ingests like any other source:

- **snapshot**: the raw files the champion was trained on, as its training run
  snapshotted them (`<lake>/runs/<airflow run>/manifest.json`, found through
  the champion version's `airflow_run_id` tag);
- **feedback**: prediction-log rows joined with their `/feedback` labels that
  the snapshot does not hold yet (a label that arrives late, for a prediction
  made long ago, is new as soon as it lands), written as one CSV in the layout
  of the use case's default source (reviews: `text`/`label`; credit: every raw
  column of its contract under the UCI names, as the API logged them, and the
  UCI label column), plus `request_id`, so the next retrain knows which
  requests it already has;
- **landing**: every readable file in the landing folder
  (`DRIFTLOOP_HOME/landing/<use case>/`, or `DRIFTLOOP_LANDING_DIR/<use case>/`)
  whose bytes are not already in the snapshot, mapped through
  contracts/sources.yaml by its subfolder (`landing/reviews/amazon/x.csv` is
  an `amazon` file) or else by its file name (a file neither names must have
  `text` and `label` columns), and read with ingestion's readers (CSV,
  Parquet, JSONL, compressed or not).

Every part records its kind, row count, sha256 and size; the whole record is
written as `retrain_data.json` and travels in the retrain's conf, so the
training run can log exactly which rows came from where. With no new
feedback and no new landed file there is nothing to retrain on: the caller
reports the drift and starts no retrain.

Text and tabular use cases alike: the prediction log keeps each request's raw
columns next to its features, so a labelled prediction is a raw training row.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from ingestion.sources import MAPPING_KEYS

log = logging.getLogger(__name__)

LANDING_DIR_ENV = "DRIFTLOOP_LANDING_DIR"
FEEDBACK_PART = "feedback"
# The gate segment of feedback rows (segments are sources.yaml keys otherwise).
FEEDBACK_SEGMENT = "feedback"
SUMMARY_FILE = "retrain_data.json"
DEFAULT_FEEDBACK_LOOKBACK_DAYS = 365
# Mapping keys of a manifest entry that a training source entry may carry.
_MAPPING_KEYS = tuple(k for k in MAPPING_KEYS if k not in ("use_case", "columns"))


@dataclass(frozen=True)
class Part:
    """One file of the retraining data and where its rows came from."""

    name: str
    kind: str  # snapshot | feedback | landing
    path: str
    rows: int
    sha256: str
    bytes: int
    entry: dict[str, Any]  # the source entry training ingests

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": self.path,
            "rows": self.rows,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "source": self.entry.get("source"),
            "segment": self.entry.get("segment") or self.entry.get("source") or self.name,
        }


def landing_dir(use_case: str) -> Path:
    """Where new labelled files of a use case land: <DRIFTLOOP_LANDING_DIR or HOME/landing>/<use case>."""
    from core.settings import get_settings

    root = os.environ.get(LANDING_DIR_ENV)
    base = Path(root).expanduser() if root else get_settings().home / "landing"
    return base / use_case


def champion_snapshot(model_name: str) -> dict[str, Any] | None:
    """The champion's training manifest, or None (no champion, or trained outside a DAG run)."""
    import mlflow

    from pipelines.training import run_dir_for
    from training.mlflow_utils import configure

    configure()
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(model_name, "champion")
    except mlflow.exceptions.MlflowException as exc:
        log.warning("no champion for %s (%s): no training snapshot to start from", model_name, exc)
        return None
    run = client.get_run(str(version.run_id))
    airflow_run = run.data.tags.get("airflow_run_id")
    if not airflow_run:
        log.warning(
            "champion %s v%s (run %s) has no airflow_run_id tag: it was not trained by "
            "training_pipeline, so its training snapshot is unknown",
            model_name,
            version.version,
            version.run_id,
        )
        return None
    manifest_path = run_dir_for(airflow_run) / "manifest.json"
    from pipelines.lake import ensure_local

    ensure_local(run_dir_for(airflow_run))  # the object-storage lake: an older run's folder
    if not manifest_path.is_file():
        log.warning(
            "champion %s v%s: training snapshot manifest %s is gone",
            model_name,
            version.version,
            manifest_path,
        )
        return None
    manifest = json.loads(manifest_path.read_text())
    recorded = run.data.tags.get("data_sha256")
    if recorded and recorded != manifest.get("data_sha256"):
        log.warning(
            "champion %s v%s: manifest %s has data_sha256 %s but the run recorded %s; not using it",
            model_name,
            version.version,
            manifest_path,
            manifest.get("data_sha256"),
            recorded,
        )
        return None
    return {
        "version": str(version.version),
        "run_id": version.run_id,
        "airflow_run_id": airflow_run,
        "manifest_path": str(manifest_path),
        "manifest": manifest,
    }


def _count_rows(path: Path, entry: dict[str, Any]) -> int:
    from ingestion.readers import read_raw
    from ingestion.sources import SourceSpec

    return len(read_raw(path, SourceSpec.from_entry(entry)))


def _snapshot_parts(snapshot: dict[str, Any] | None) -> list[Part]:
    from ingestion.ingest import file_sha256

    if snapshot is None:
        return []
    parts = []
    for item in snapshot["manifest"]["sources"]:
        path = Path(item["snapshot"])
        entry: dict[str, Any] = {"path": str(path), "name": item["name"]}
        if item.get("source"):
            entry["source"] = item["source"]
        entry.update({k: item[k] for k in _MAPPING_KEYS if item.get(k)})
        sha, size = file_sha256(path)
        if sha != item["sha256"]:
            raise ValueError(
                f"training snapshot {path} has sha256 {sha}, the manifest says {item['sha256']}: "
                "a snapshot must never change"
            )
        parts.append(
            Part(item["name"], "snapshot", str(path), _count_rows(path, entry), sha, size, entry)
        )
    return parts


def _known_requests(parts: list[Part]) -> set[str]:
    """Request ids of the feedback rows the snapshot already holds."""
    known: set[str] = set()
    for part in parts:
        if part.name.startswith(FEEDBACK_PART):
            frame = pd.read_csv(part.path, usecols=["request_id"], dtype=str)
            known.update(frame["request_id"].dropna())
    return known


def _unique(name: str, taken: set[str]) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-") or "part"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


def labelled_predictions(
    model_name: str,
    start: datetime,
    end: datetime,
    store_url: str | None = None,
    use_case: str = "reviews",
) -> pd.DataFrame:
    """Logged predictions in [start, end) that have a feedback label (latest label wins)."""
    from serving.prediction_store import read_predictions

    frame = read_predictions(store_url, start, end, model_name=model_name, use_case=use_case)
    return frame[frame["feedback_label"].notna()].reset_index(drop=True)


def _feedback_part(
    model_name: str,
    use_case: str,
    out_dir: Path,
    known: set[str],
    taken: set[str],
    now: datetime,
    lookback_days: int,
    store_url: str | None,
) -> Part | None:
    from ingestion.ingest import file_sha256

    labelled = labelled_predictions(
        model_name, now - timedelta(days=lookback_days), now, store_url, use_case
    )
    new = labelled[~labelled["request_id"].astype(str).isin(known)]
    log.info(
        "feedback: %d labelled predictions of %s in the last %d days, %d already in the "
        "training snapshot, %d new",
        len(labelled),
        model_name,
        lookback_days,
        len(labelled) - len(new),
        len(new),
    )
    if new.empty:
        return None
    rows = feedback_rows(new, use_case)
    name = _unique(f"{FEEDBACK_PART}-{now:%Y%m%dT%H%M%S}", taken)
    path = out_dir / f"{name}.csv"
    rows.to_csv(path, index=False)
    sha, size = file_sha256(path)
    entry = feedback_entry(use_case, path, name)
    return Part(name, "feedback", str(path), len(rows), sha, size, entry)


def feedback_rows(labelled: pd.DataFrame, use_case: str) -> pd.DataFrame:
    """Labelled prediction-log rows as raw rows of the use case's default source layout.

    Columns: request_id, ts, model_version, then each raw column under the name the default
    source of contracts/sources.yaml gives it (reviews: `text`; credit: the UCI names) and the
    label as that source writes it, so training reads the file as that source, checks and all.
    """
    from ingestion.sources import SourceSpec
    from pipelines.params import default_source
    from serving.prediction_store import log_schema

    schema = log_schema(use_case)
    spec = SourceSpec.from_entry({"source": default_source(use_case)})
    label_value: dict[int, str] = {}
    for written, value in spec.label_map.items():
        label_value.setdefault(value, written)
    missing = {0, 1} - set(label_value)
    if missing:
        raise ValueError(
            f"source {spec.name!r} (default of use case {use_case!r}) has no label for {missing}"
        )
    rows = {
        "request_id": labelled["request_id"].astype(str),
        "ts": labelled["ts"].map(lambda t: t.isoformat()),
        "model_version": labelled["model_version"].astype(str),
    }
    for column in schema.raw_columns:
        values = labelled[column]
        rows[spec.columns[column]] = (
            values.astype(str) if schema.raw_dtypes[column] == "object" else values
        )
    rows[spec.label_column] = labelled["feedback_label"].astype("int64").map(label_value)
    return pd.DataFrame(rows).reset_index(drop=True)


def feedback_entry(use_case: str, path: Path, name: str) -> dict[str, Any]:
    """The source entry training ingests a `feedback_rows` file with."""
    from pipelines.params import default_source

    # The log does not record which source a request came from: one stable segment.
    return {
        "path": str(path),
        "name": name,
        "source": default_source(use_case),
        "segment": FEEDBACK_SEGMENT,
    }


def _landing_parts(
    folder: Path, snapshot_hashes: set[str], taken: set[str], use_case: str
) -> list[Part]:
    from ingestion.errors import BadSourceFile, SourceConfigError
    from ingestion.ingest import file_sha256
    from pipelines.params import infer_source, source_names

    if not folder.is_dir():
        log.info("landing folder %s does not exist: no landed files", folder)
        return []
    known = set(source_names(use_case))
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    parts = []
    for path in sorted(files):
        sha, size = file_sha256(path)
        if sha in snapshot_hashes:
            log.info("landed %s: already in the training snapshot (sha256 %s)", path, sha)
            continue
        # landing/<use case>/<source>/any-name.csv names its source by the folder.
        folder_source = path.parent.name if path.parent != folder else None
        source = folder_source if folder_source in known else infer_source(path, use_case)
        entry: dict[str, Any] = {"path": str(path), "source": source}
        try:
            rows = _count_rows(path, entry)
        except (BadSourceFile, SourceConfigError) as exc:
            log.warning("landed %s cannot be read as source %s, left out: %s", path, source, exc)
            continue
        entry["name"] = _unique(f"landing-{source}", taken)
        parts.append(Part(entry["name"], "landing", str(path), rows, sha, size, entry))
        log.info("landed %s: %d rows as source %s (sha256 %s)", path, rows, source, sha)
    return parts


def build_retrain_data(
    model_name: str,
    use_case: str,
    out_dir: str | Path,
    *,
    now: datetime | None = None,
    feedback_lookback_days: int = DEFAULT_FEEDBACK_LOOKBACK_DAYS,
    store_url: str | None = None,
    landing: str | Path | None = None,
) -> dict[str, Any]:
    """Snapshot + new feedback + new landed files, each with rows and sha256.

    Returns (and writes to `<out_dir>/retrain_data.json`) `{"parts": [...],
    "new_rows", "total_rows", "rows_by_kind", "snapshot", "landing_dir",
    "summary_path", "sources"}` where `sources` are the entries to hand to
    training_pipeline as `extra_sources`. `new_rows` 0 means nothing new is
    labelled: there is nothing to retrain on.
    """
    from core.usecases import get_use_case

    get_use_case(use_case)  # an unknown use case fails here, naming the registered ones
    now = now or datetime.now(UTC)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(landing) if landing is not None else landing_dir(use_case)
    snapshot = champion_snapshot(model_name)
    snapshot_parts = _snapshot_parts(snapshot)
    taken = {p.name for p in snapshot_parts}
    feedback = _feedback_part(
        model_name,
        use_case,
        out,
        _known_requests(snapshot_parts),
        taken,
        now,
        feedback_lookback_days,
        store_url,
    )
    landed = _landing_parts(folder, {p.sha256 for p in snapshot_parts}, taken, use_case)
    parts = [*snapshot_parts, *([feedback] if feedback else []), *landed]
    by_kind = {
        kind: sum(p.rows for p in parts if p.kind == kind)
        for kind in ("snapshot", "feedback", "landing")
    }
    summary: dict[str, Any] = {
        "model_name": model_name,
        "use_case": use_case,
        "built_at": now.isoformat(),
        "snapshot": None
        if snapshot is None
        else {k: snapshot[k] for k in ("version", "run_id", "airflow_run_id", "manifest_path")},
        "landing_dir": str(folder),
        "parts": [p.record() for p in parts],
        "rows_by_kind": by_kind,
        "total_rows": sum(by_kind.values()),
        "new_rows": by_kind["feedback"] + by_kind["landing"],
    }
    path = out / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2) + "\n")
    summary["summary_path"] = str(path)
    summary["sources"] = [p.entry for p in parts]
    log.info(
        "retraining data: %d snapshot + %d feedback + %d landed rows in %d part(s); %s",
        by_kind["snapshot"],
        by_kind["feedback"],
        by_kind["landing"],
        len(parts),
        path,
    )
    return summary

"""The `validate_raw` step: contracts with teeth between the raw snapshot and Spark.

For every snapshot in the manifest: read it (bad files raise BadSourceFile
before anything is written), map it to the use case's canonical raw columns
and label, give every bad row a reason code, run the Great Expectations
checkpoint on the raw file and the Pandera raw contract on the accepted rows,
then write

    <run_dir>/accepted.parquet    the raw columns, label, source (the entry's segment:
                                  its `segment`, else its sources.yaml key, else its
                                  name), source_row, part (the entry's name, which
                                  source_row counts in)
    <run_dir>/quarantine.parquet  source, source_row, the raw columns as written, raw_label,
                                  reason, detail
    <run_dir>/validation_report.json
    <run_dir>/data_docs/index.html

The use case (the manifest's `use_case`, else its sources') is looked up in
the registry: a text use case's rows go through ingestion.rowchecks (empty,
undecodable, too long text), a tabular one's through ingestion.tabular (the
contract's `row_reasons`: missing, non-numeric, out-of-range values,
codes the contract does not allow). Both then check labels, conflicting
duplicates and the contract's Pandera `raw_schema`.

accepted + quarantined = read is checked per source and in total. The run
fails when a critical expectation fails or when the quarantined share (of
reasons that count, see ingestion/quarantine.yaml) exceeds
`max_quarantine_share` in any source or overall. A failed run leaves the
quarantine file and report for diagnosis but no accepted.parquet, so the next
step cannot read a half-validated input.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from core.usecases import UseCase, get_use_case
from ingestion import tabular
from ingestion.atomic import atomic_target, write_json_atomic
from ingestion.errors import (
    IngestionError,
    NoRowsAccepted,
    QuarantineThresholdExceeded,
    RawContractViolation,
    RowAccountingError,
    SnapshotIntegrityError,
    SourceConfigError,
    SourceFileNotFound,
)
from ingestion.expectations import run_checkpoint
from ingestion.ingest import file_sha256
from ingestion.readers import read_raw
from ingestion.rowchecks import (
    SURROGATE,
    accepted_frame,
    apply_contract,
    check_policy,
    check_rows,
    flag_conflicting_duplicates,
    label_missing_mask,
    max_text_chars,
    printable_text,
    quarantine_frame,
)
from ingestion.sources import QuarantinePolicy, SourceSpec, load_policy

logger = logging.getLogger(__name__)

ACCEPTED = "accepted.parquet"
QUARANTINE = "quarantine.parquet"
REPORT = "validation_report.json"
DATA_DOCS = "data_docs"


def _snapshot(entry: dict[str, Any], run: Path) -> Path:
    """The snapshot file of a manifest entry, checked against its recorded sha256."""
    if "snapshot" not in entry:
        raise SourceConfigError(
            f"manifest entry {entry.get('name')!r} has no 'snapshot': pass the manifest "
            "returned by ingestion.ingest.snapshot_sources"
        )
    path = Path(entry["snapshot"])
    path = path if path.is_absolute() else run / path
    if not path.is_file():
        raise SourceFileNotFound(path, "snapshot file not found", "the file snapshot_sources wrote")
    expected = entry.get("sha256")
    if expected:
        actual, _ = file_sha256(path)
        if actual != expected:
            raise SnapshotIntegrityError(
                path,
                f"snapshot bytes changed since ingest (sha256 {actual})",
                f"sha256 {expected} as recorded in the manifest; re-run the ingest step",
            )
    return path


def _clear_previous_outputs(run: Path) -> None:
    """A retry must not find an earlier attempt's accepted.parquet and mistake it for its own."""
    for name in (ACCEPTED, QUARANTINE, REPORT):
        (run / name).unlink(missing_ok=True)
    shutil.rmtree(run / DATA_DOCS, ignore_errors=True)


def _ge_view(raw: pd.DataFrame, spec: SourceSpec, policy: QuarantinePolicy) -> pd.DataFrame:
    """The raw frame as Great Expectations should see it.

    Missing-label tokens become real nulls, so null-rate expectations count
    them; undecodable bytes (lone surrogates) are shown as backslash escapes,
    because GE hashes the frame as UTF-8 and would crash on them.
    """
    view = raw.copy()
    labels = view[spec.label_column]
    view[spec.label_column] = labels.mask(label_missing_mask(labels, policy), None)
    for column in view.select_dtypes(include="object").columns:
        values = view[column]
        is_str = values.map(lambda v: isinstance(v, str)).astype(bool)
        broken = is_str & values.where(is_str, "").astype(str).str.contains(SURROGATE)
        if broken.any():
            view.loc[broken, column] = values[broken].map(printable_text)
    return view


def _count(
    read: dict[str, int],
    accepted: pd.DataFrame,
    quarantined: pd.DataFrame,
    policy: QuarantinePolicy,
) -> dict[str, dict[str, Any]]:
    """Per-source counts from the output frames themselves, with the accounting check."""
    per_source: dict[str, dict[str, Any]] = {}
    accepted_by = accepted["source"].value_counts()
    excluded = set(policy.excluded_reasons)
    for name, n_read in read.items():
        mine = quarantined[quarantined["source"] == name]
        by_reason = dict(Counter(mine["reason"]).most_common())
        n_acc = int(accepted_by.get(name, 0))
        if n_acc + len(mine) != n_read:
            raise RowAccountingError(
                f"source {name!r}: accepted {n_acc} + quarantined {len(mine)} != read {n_read}; "
                "rows were lost or duplicated between reading and writing (a defect, not data)"
            )
        counted = sum(v for k, v in by_reason.items() if k not in excluded)
        per_source[name] = {
            "rows_read": n_read,
            "rows_accepted": n_acc,
            "rows_quarantined": len(mine),
            "rows_quarantined_counted": counted,
            "quarantined_by_reason": {k: int(v) for k, v in by_reason.items()},
            "quarantine_share": counted / n_read if n_read else 0.0,
        }
    total = sum(read.values())
    if len(accepted) + len(quarantined) != total:
        raise RowAccountingError(
            f"accepted {len(accepted)} + quarantined {len(quarantined)} != read {total} "
            "over all sources (a defect, not data)"
        )
    return per_source


def _threshold_message(
    offenders: list[tuple[str, float, int, int]],
    by_reason: dict[str, int],
    excluded: list[str],
    limit: float,
    quarantine_path: Path,
) -> str:
    parts = [
        f"{who}: {share:.1%} of rows quarantined ({counted} of {read})"
        for who, share, counted, read in offenders
    ]
    counted = [(k, v) for k, v in by_reason.items() if k not in excluded]
    top = ", ".join(f"{k} {v}" for k, v in counted[:3])
    skipped = ", ".join(f"{k} {v}" for k, v in by_reason.items() if k in excluded)
    return (
        f"quarantine share above the limit of {limit:.1%}: {'; '.join(parts)}. "
        f"Top reasons: {top}."
        + (f" Reported but not counted: {skipped}." if skipped else "")
        + f" Inspect {quarantine_path}; raise max_quarantine_share only if these rows are expected."
    )


def _use_case(manifest: dict, specs: list[SourceSpec]) -> UseCase:
    """The one use case every source of the run feeds."""
    names = {spec.use_case for spec in specs}
    wanted = manifest.get("use_case")
    if wanted:
        names.add(str(wanted))
    if len(names) != 1:
        raise SourceConfigError(
            f"the run's sources feed different use cases {sorted(names)} "
            f"({[(s.name, s.use_case) for s in specs]}); one run trains one use case"
        )
    return get_use_case(names.pop())


def validate_sources(manifest: dict, run_dir: str, *, max_quarantine_share: float = 0.05) -> dict:
    """Validate every snapshot of `manifest`; write accepted/quarantine Parquet and Data Docs.

    Returns the report (rows_read, rows_accepted, rows_quarantined,
    quarantined_by_reason, per_source, accepted_path, quarantine_path,
    data_docs_path, ge_success, ...). Raises BadSourceFile for unreadable
    files, RawContractViolation for failed critical expectations and
    QuarantineThresholdExceeded above the share limit.
    """
    if not 0.0 <= max_quarantine_share <= 1.0:
        raise ValueError(f"max_quarantine_share must be within [0, 1], got {max_quarantine_share}")
    entries = manifest.get("sources") or []
    if not entries:
        raise SourceConfigError("the manifest lists no sources: run snapshot_sources first")
    run = Path(run_dir).expanduser().resolve()
    policy = load_policy()
    check_policy(policy)
    specs = [SourceSpec.from_entry(entry) for entry in entries]
    use_case = _use_case(manifest, specs)
    text = use_case.kind == "text"
    _clear_previous_outputs(run)

    checked: list[pd.DataFrame] = []
    ge_inputs: list[tuple[SourceSpec, pd.DataFrame]] = []
    read: dict[str, int] = {}
    snapshots: dict[str, dict[str, Any]] = {}
    for entry, spec in zip(entries, specs, strict=True):
        path = _snapshot(entry, run)
        raw = read_raw(path, spec)
        read[spec.name] = len(raw)
        snapshots[spec.name] = {"snapshot": str(path), "sha256": entry.get("sha256")}
        if text:
            checked.append(check_rows(raw, spec, policy, use_case.contract))
            ge_inputs.append((spec, _ge_view(raw, spec, policy)))
        else:
            checked.append(tabular.check_rows(raw, spec, policy, use_case))
            ge_inputs.append((spec, tabular.ge_view(raw, spec, policy, use_case)))
        logger.info(
            "read %s: %d rows from %s (use case %s)", spec.name, len(raw), path, use_case.name
        )

    rows = pd.concat(checked, ignore_index=True)
    if text:
        rows = apply_contract(flag_conflicting_duplicates(rows), use_case.contract)
        accepted = accepted_frame(rows, use_case.contract)
        quarantined = quarantine_frame(rows)
    else:
        rows = tabular.finish(rows, use_case)
        accepted = tabular.accepted_frame(rows, use_case)
        quarantined = tabular.quarantine_frame(rows, use_case)
    per_source = _count(read, accepted, quarantined, policy)
    for name, counts in per_source.items():
        counts.update(snapshots[name])
        logger.info(
            "%s: read %d = accepted %d + quarantined %d %s",
            name,
            counts["rows_read"],
            counts["rows_accepted"],
            counts["rows_quarantined"],
            counts["quarantined_by_reason"],
        )

    docs_dir = run / DATA_DOCS
    limit = max_text_chars(use_case.contract) if text else None
    outcome = run_checkpoint(
        ge_inputs,
        docs_dir,
        run_name=run.name,
        parameters={"max_text_chars": limit} if limit is not None else None,
    )
    logger.info("Great Expectations Data Docs: %s", outcome.data_docs_path)
    for item in outcome.failures:
        logger.warning("expectation failed: %s", item)

    quarantine_path = run / QUARANTINE
    with atomic_target(quarantine_path) as tmp:
        quarantined.to_parquet(tmp, index=False)

    by_reason = dict(Counter(quarantined["reason"]).most_common())
    excluded = policy.excluded_reasons
    counted_total = sum(v for k, v in by_reason.items() if k not in excluded)
    total_read = sum(read.values())
    share = counted_total / total_read
    report: dict[str, Any] = {
        "status": "passed",
        "use_case": use_case.name,
        "rows_read": total_read,
        "rows_accepted": len(accepted),
        "rows_quarantined": len(quarantined),
        "rows_quarantined_counted": counted_total,
        "quarantined_by_reason": {k: int(v) for k, v in by_reason.items()},
        "quarantine_share": share,
        "max_quarantine_share": max_quarantine_share,
        "excluded_from_share": excluded,
        "per_source": per_source,
        "accepted_path": str(run / ACCEPTED),
        "quarantine_path": str(quarantine_path),
        "data_docs_path": outcome.data_docs_path,
        "report_path": str(run / REPORT),
        "ge_success": outcome.success,
        "ge_expectations_evaluated": outcome.evaluated,
        "ge_failures": outcome.failures,
        "data_sha256": manifest.get("data_sha256"),
    }
    logger.info(
        "total: read %d = accepted %d + quarantined %d (counted share %.2f%%, limit %.2f%%)",
        total_read,
        len(accepted),
        len(quarantined),
        100 * share,
        100 * max_quarantine_share,
    )

    failure: IngestionError | None = None
    offenders = [
        (f"source {name!r}", c["quarantine_share"], c["rows_quarantined_counted"], c["rows_read"])
        for name, c in per_source.items()
        if c["quarantine_share"] > max_quarantine_share
    ]
    if share > max_quarantine_share and len(per_source) > 1:
        offenders.append(("all sources", share, counted_total, total_read))
    if outcome.blocking:
        listed = "; ".join(
            f"{f['source']}: {f['expectation']}({f['column'] or ''}) {f['observed']}"
            for f in outcome.blocking
        )
        failure = RawContractViolation(
            f"{len(outcome.blocking)} critical expectation(s) failed: {listed}. "
            f"See the Data Docs at {outcome.data_docs_path}",
            failures=outcome.blocking,
        )
    elif offenders:
        failure = QuarantineThresholdExceeded(
            _threshold_message(
                offenders, by_reason, excluded, max_quarantine_share, quarantine_path
            ),
            report=report,
        )
    elif accepted.empty:
        failure = NoRowsAccepted(
            f"all {total_read} rows were quarantined ({by_reason}); nothing to train on. "
            f"Inspect {quarantine_path}"
        )
    else:
        use_case.contract.raw_schema.validate(accepted)
        # Accounting is per source entry; the rows carry their segment (the gate's per-source
        # checks): the contracts/sources.yaml key, so every imdb file is one `imdb` segment.
        segments = {spec.name: spec.segment_name for spec in specs}
        accepted = accepted.assign(source=accepted["source"].map(segments), part=accepted["source"])
        report["segments"] = {
            segment: int(n) for segment, n in accepted["source"].value_counts().items()
        }
        with atomic_target(run / ACCEPTED) as tmp:
            accepted.to_parquet(tmp, index=False)

    if failure is not None:
        report["status"] = "failed"
        report["failure"] = f"{type(failure).__name__}: {failure}"
    write_json_atomic(run / REPORT, report)
    if failure is not None:
        logger.error("%s", report["failure"])
        raise failure
    logger.info("accepted rows: %s; quarantine: %s", run / ACCEPTED, quarantine_path)
    return report

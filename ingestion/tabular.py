"""Row-level checks of a tabular use case: map a raw frame to its canonical columns, give every
bad row a reason.

The tabular counterpart of ingestion.rowchecks (which checks a text column). Nothing is
dropped: each row ends up accepted or quarantined with a reason code, in this order (a row
keeps the first that applies):

1. the use case contract's own row checks, `contract.row_reasons(raw)` when the contract
   defines it (credit: `value_missing`, `value_not_numeric`, `value_out_of_range`,
   `code_not_allowed`, with the column, the value and what the contract allows);
2. the label: `label_missing`, `label_unmapped`, `label_out_of_domain` (as for text);
3. `duplicate_conflicting_label`: the same raw values more than once with different labels;
4. `contract_violation`: the typed row still fails the contract's Pandera `raw_schema`.

Cells are read as written (CSV cells are strings); blank cells and the policy's
missing-value tokens ("", "NA", "null", ...) are missing values. Accepted rows are written
with the dtypes of the contract's `raw_schema`, so the Spark job and the API read the same
typed values.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pandera.errors

from core.usecases import UseCase
from ingestion.errors import RawContractViolation
from ingestion.rowchecks import classify_label, flag_conflicting_duplicates, printable_text
from ingestion.sources import QuarantinePolicy, SourceSpec

LABEL_REASONS = ("label_missing", "label_unmapped", "label_out_of_domain")
LATE_REASONS = ("duplicate_conflicting_label", "contract_violation")
ROW_KEY = "_row_key"
_KEY_SEPARATOR = "\x1f"


def reason_order(use_case: UseCase) -> list[str]:
    """Every reason a row of this use case can be quarantined for, in check order."""
    own = list(getattr(use_case.contract, "ROW_REASONS", ()))
    return [*own, *LABEL_REASONS, *LATE_REASONS]


def raw_dtypes(contract: ModuleType) -> dict[str, str]:
    """{raw column: dtype name} from the contract's Pandera raw_schema (str when untyped)."""
    columns = contract.raw_schema.columns
    out = {}
    for name in contract.RAW_COLUMNS:
        dtype = getattr(columns.get(name), "dtype", None)
        out[name] = str(dtype) if dtype is not None else "str"
    return out


def canonical_values(raw: pd.DataFrame, spec: SourceSpec, policy: QuarantinePolicy) -> pd.DataFrame:
    """The file's mapped columns under their canonical names; missing-value tokens -> None."""
    frame = pd.DataFrame(
        {name: raw[column].to_numpy(dtype=object) for name, column in spec.columns.items()},
        index=raw.index,
    )

    def blank(value: Any) -> bool:
        if value is None or value is pd.NA:
            return True
        if isinstance(value, float) and np.isnan(value):
            return True
        return isinstance(value, str) and (
            not value.strip() or value.strip() in policy.missing_label_values
        )

    return frame.mask(frame.map(blank).astype(bool), None)


def _label_detail(reason: str, raw_label: Any, spec: SourceSpec) -> str:
    shown = printable_text(raw_label)
    if reason == "label_missing":
        return f"column {spec.label_column!r} is empty ({shown!r})"
    if reason == "label_unmapped":
        return (
            f"label {shown!r} is left out of source {spec.name!r}'s label_map on purpose "
            "(expected_unmapped); not counted toward the quarantine share"
        )
    return (
        f"label {shown!r} is not in source {spec.name!r}'s label_map {sorted(spec.label_map)} "
        f"nor in expected_unmapped {list(spec.expected_unmapped)}"
    )


def check_rows(
    raw: pd.DataFrame, spec: SourceSpec, policy: QuarantinePolicy, use_case: UseCase
) -> pd.DataFrame:
    """One row per raw row: source, source_row, the raw columns, raw_label, label, reason, detail."""
    values = canonical_values(raw, spec, policy)
    labels = raw[spec.label_column]
    contract = use_case.contract
    reason = pd.Series(None, index=raw.index, dtype=object)
    detail = pd.Series(None, index=raw.index, dtype=object)
    row_reasons = getattr(contract, "row_reasons", None)
    if row_reasons is not None:
        found = row_reasons(values)
        reason = found["reason"].astype(object).where(found["reason"].notna(), None)
        detail = found["detail"].astype(object).where(found["detail"].notna(), None)
    classified = [classify_label(v, spec, policy) for v in labels.tolist()]
    mapped = pd.array([c[0] for c in classified], dtype="Int64")
    for i, (_, code) in enumerate(classified):
        if code is not None and reason.iat[i] is None:
            reason.iat[i] = code
            detail.iat[i] = _label_detail(code, labels.iat[i], spec)
    frame = pd.DataFrame(
        {
            "source": spec.name,
            "source_row": np.arange(len(raw), dtype="int64"),
            **{name: values[name].to_numpy(dtype=object) for name in contract.RAW_COLUMNS},
            "raw_label": labels.to_numpy(dtype=object),
            "label": mapped,
            "reason": reason.to_numpy(dtype=object),
            "detail": detail.to_numpy(dtype=object),
        }
    )
    frame[ROW_KEY] = [
        _KEY_SEPARATOR.join("\x00" if v is None else str(v) for v in row)
        for row in frame[list(contract.RAW_COLUMNS)].itertuples(index=False, name=None)
    ]
    return frame


def _typed(rows: pd.DataFrame, contract: ModuleType) -> pd.DataFrame:
    """The raw columns with the raw_schema's dtypes (rows that passed the checks above)."""
    out = {}
    for name, dtype in raw_dtypes(contract).items():
        column = rows[name]
        if dtype.startswith(("int", "float")):
            numbers = pd.to_numeric(column, errors="coerce")
            out[name] = numbers.astype(dtype) if numbers.notna().all() else numbers  # type: ignore[call-overload]
        else:
            out[name] = column.astype(str)
    return pd.DataFrame(out, index=rows.index)


def finish(rows: pd.DataFrame, use_case: UseCase) -> pd.DataFrame:
    """Conflicting duplicates, then the Pandera contract on the typed rows still open."""
    rows = flag_conflicting_duplicates(rows, key=ROW_KEY)
    contract = use_case.contract
    candidates = rows[rows["reason"].isna()]
    frame = _typed(candidates, contract)
    frame[contract.RAW_LABEL] = candidates["label"].astype("int64")
    schema = contract.raw_schema
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        frame_level = cases[cases["index"].isna()]
        if not frame_level.empty:
            raise RawContractViolation(
                f"the accepted frame does not have the shape {use_case.contract_module}."
                f"raw_schema expects: "
                f"{frame_level[['column', 'check', 'failure_case']].to_dict('records')}",
                failures=frame_level.astype(str).to_dict("records"),
            ) from errors
        rows = rows.copy()
        for index, group in cases.groupby("index"):
            what = "; ".join(
                f"{c}: {chk} ({case!r})"
                for c, chk, case in zip(
                    group["column"], group["check"], group["failure_case"], strict=True
                )
            )
            rows.loc[int(index), "reason"] = "contract_violation"
            rows.loc[int(index), "detail"] = f"fails {use_case.contract_module}.raw_schema ({what})"
    return rows


def accepted_frame(rows: pd.DataFrame, use_case: UseCase) -> pd.DataFrame:
    """Accepted rows: the raw columns with the contract's dtypes, label int64, source, row."""
    contract = use_case.contract
    ok = rows[rows["reason"].isna()]
    frame = _typed(ok, contract).reset_index(drop=True)
    frame[contract.RAW_LABEL] = ok["label"].astype("int64").to_numpy()
    frame["source"] = ok["source"].astype(str).to_numpy()
    frame["source_row"] = ok["source_row"].astype("int64").to_numpy()
    return frame


def quarantine_frame(rows: pd.DataFrame, use_case: UseCase) -> pd.DataFrame:
    """Quarantined rows: source, source_row, every raw column and raw_label as written, reason,
    detail."""
    bad = rows[rows["reason"].notna()]
    return pd.DataFrame(
        {
            "source": bad["source"].astype(str).to_numpy(),
            "source_row": bad["source_row"].astype("int64").to_numpy(),
            **{
                name: pd.array([printable_text(v) for v in bad[name]], dtype="string")
                for name in use_case.contract.RAW_COLUMNS
            },
            "raw_label": pd.array([printable_text(v) for v in bad["raw_label"]], dtype="string"),
            "reason": bad["reason"].astype(str).to_numpy(),
            "detail": bad["detail"].astype(str).to_numpy(),
        }
    )


def ge_view(
    raw: pd.DataFrame, spec: SourceSpec, policy: QuarantinePolicy, use_case: UseCase
) -> pd.DataFrame:
    """The raw frame as Great Expectations should see it: numbers as numbers, blanks as nulls.

    CSV cells arrive as strings; the suite's range and set expectations compare numbers, so
    the columns the contract types as numbers are parsed (a cell that is no number becomes
    null, which the suite's not-null expectations report), and so is the label when all its
    values are numbers.
    """
    view = raw.copy()
    values = canonical_values(raw, spec, policy)
    for name, dtype in raw_dtypes(use_case.contract).items():
        column = spec.columns[name]
        if dtype.startswith(("int", "float")):
            view[column] = pd.to_numeric(values[name], errors="coerce")
        else:
            view[column] = values[name]
    labels = raw[spec.label_column]
    missing = labels.isna() | labels.astype(str).str.strip().isin(policy.missing_label_values)
    labels = labels.mask(missing, None)
    parsed = pd.to_numeric(labels, errors="coerce")
    view[spec.label_column] = parsed if (parsed.notna() == labels.notna()).all() else labels
    return view

"""Row-level checks of a text use case: map a raw frame to (text, label), give every bad row a reason.

The limits come from the use case's contract module (its text column, label column,
optional `MAX_TEXT_CHARS` and `raw_schema`), so a text use case of one's own is held to
its own contract, not to the review one.

Nothing is dropped here. Each row of every source ends up in exactly one of
two places, accepted or quarantined, and `reason` says why a row was
quarantined (the codes and their order are ingestion/quarantine.yaml). The
checks run in that order; a row keeps the first reason that applies.
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pandera.errors

from contracts.sources import map_label
from ingestion.errors import RawContractViolation
from ingestion.sources import QuarantinePolicy, SourceSpec

# U+FFFD marks characters lost before the file reached us; lone surrogates are
# bytes that were not valid UTF-8 (read with errors="surrogateescape").
UNDECODABLE = re.compile("[\ufffd\ud800-\udfff]")
SURROGATE = re.compile("[\ud800-\udfff]")
_INTEGRAL_FLOAT = re.compile(r"^([+-]?\d+)\.0+$")
ROW_REASONS = (
    "text_empty",
    "text_not_string",
    "text_undecodable",
    "text_too_long",
    "label_missing",
    "label_unmapped",
    "label_out_of_domain",
)
LATE_REASONS = ("duplicate_conflicting_label", "contract_violation")
FRAME_COLUMNS = ["source", "source_row", "text", "raw_label", "label", "reason", "detail"]


def _text_column(contract: ModuleType) -> str:
    """The one raw column of a text use case."""
    columns = tuple(contract.RAW_COLUMNS)
    if len(columns) != 1:
        raise ValueError(
            f"{contract.__name__}: a text use case has exactly one raw column, got {list(columns)}"
        )
    return str(columns[0])


def max_text_chars(contract: ModuleType) -> int | None:
    """The contract's longest allowed text (`MAX_TEXT_CHARS`), or None when it sets none."""
    value = getattr(contract, "MAX_TEXT_CHARS", None)
    return None if value is None else int(value)


def check_policy(policy: QuarantinePolicy) -> None:
    """The YAML must list exactly the reasons this module implements, in check order."""
    expected = [*ROW_REASONS, *LATE_REASONS]
    if policy.reasons != expected:
        raise ValueError(
            f"ingestion/quarantine.yaml lists reasons {policy.reasons}; the checks implement "
            f"{expected} in that order"
        )


def _label_variants(token: str) -> list[str]:
    """'4.0' and '4' are the same star rating: try the integer spelling too."""
    match = _INTEGRAL_FLOAT.match(token)
    return [token, match.group(1)] if match else [token]


def classify_label(
    value: Any, spec: SourceSpec, policy: QuarantinePolicy
) -> tuple[int | None, str | None]:
    """(0/1, None) for a mapped label, else (None, reason code)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None, "label_missing"
    token = str(value).strip()
    if token in policy.missing_label_values:
        return None, "label_missing"
    for variant in _label_variants(token):
        mapped = map_label(variant, spec.label_map)
        if mapped is not None:
            return mapped, None
    unmapped = {v.lower() for v in spec.expected_unmapped}
    if any(v.lower() in unmapped for v in _label_variants(token)):
        return None, "label_unmapped"
    return None, "label_out_of_domain"


def label_missing_mask(values: pd.Series, policy: QuarantinePolicy) -> pd.Series:
    """Cells that mean "no label" (used to show Great Expectations real nulls)."""
    as_text = values.astype(str).str.strip()
    return values.isna() | as_text.isin(policy.missing_label_values)


def printable_text(value: Any) -> str | None:
    """A cell as printable text for the quarantine file (Parquet cannot store lone surrogates)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = value if isinstance(value, str) else str(value)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _undecodable_detail(text: str) -> str:
    bad = UNDECODABLE.findall(text)
    first = bad[0]
    position = text.index(first)
    if first == "\ufffd":
        what = f"{len(bad)} U+FFFD replacement character(s), first at position {position}"
    elif 0xDC80 <= ord(first) <= 0xDCFF:
        what = f"{len(bad)} byte(s) that are not valid UTF-8, first 0x{ord(first) - 0xDC00:02X} at position {position}"
    else:
        what = f"{len(bad)} lone surrogate(s), first U+{ord(first):04X} at position {position}"
    return f"text holds {what}; the original characters are lost"


def _detail(reason: str, text: Any, raw_label: Any, spec: SourceSpec, max_chars: int | None) -> str:
    if reason == "text_empty":
        if text is None or (isinstance(text, float) and np.isnan(text)):
            return f"column {spec.text_column!r} is missing"
        return "text is empty" if text == "" else f"text is whitespace only ({len(text)} chars)"
    if reason == "text_not_string":
        return f"column {spec.text_column!r} holds a {type(text).__name__}, expected a string"
    if reason == "text_undecodable":
        return _undecodable_detail(text)
    if reason == "text_too_long":
        return f"text has {len(text)} characters; the contract allows at most {max_chars}"
    if reason == "label_missing":
        return f"column {spec.label_column!r} is empty ({printable_text(raw_label)!r})"
    if reason == "label_unmapped":
        return (
            f"label {printable_text(raw_label)!r} is left out of source {spec.name!r}'s label_map on "
            "purpose (expected_unmapped); not counted toward the quarantine share"
        )
    return (
        f"label {printable_text(raw_label)!r} is not in source {spec.name!r}'s label_map "
        f"{sorted(spec.label_map)} nor in expected_unmapped {list(spec.expected_unmapped)}"
    )


def check_rows(
    raw: pd.DataFrame, spec: SourceSpec, policy: QuarantinePolicy, contract: ModuleType
) -> pd.DataFrame:
    """One row per raw row: source, source_row, text, raw_label, label (Int64), reason, detail.

    `contract` is the use case's contract module: its `MAX_TEXT_CHARS` (if any) bounds a text.
    """
    max_chars = max_text_chars(contract)
    text = raw[spec.text_column]
    labels = raw[spec.label_column]
    is_str = text.map(lambda v: isinstance(v, str)).astype(bool)
    strings = text.where(is_str, "").astype(str)
    masks = {
        "text_empty": text.isna() | (is_str & (strings.str.strip() == "")),
        "text_not_string": text.notna() & ~is_str,
        "text_undecodable": is_str & strings.str.contains(UNDECODABLE),
        "text_too_long": (
            is_str & (strings.str.len() > max_chars)
            if max_chars is not None
            else pd.Series(False, index=raw.index)
        ),
    }
    classified = [classify_label(v, spec, policy) for v in labels.tolist()]
    mapped = pd.array([c[0] for c in classified], dtype="Int64")
    label_reasons = pd.Series([c[1] for c in classified], index=raw.index, dtype=object)
    for code in ("label_missing", "label_unmapped", "label_out_of_domain"):
        masks[code] = label_reasons == code

    reason = pd.Series(None, index=raw.index, dtype=object)
    for code in ROW_REASONS:
        reason = reason.mask(reason.isna() & masks[code], code)
    flagged = reason.notna()
    detail = pd.Series(None, index=raw.index, dtype=object)
    detail[flagged] = [
        _detail(r, t, lab, spec, max_chars)
        for r, t, lab in zip(reason[flagged], text[flagged], labels[flagged], strict=True)
    ]
    return pd.DataFrame(
        {
            "source": spec.name,
            "source_row": np.arange(len(raw), dtype="int64"),
            "text": text.to_numpy(dtype=object),
            "raw_label": labels.to_numpy(dtype=object),
            "label": mapped,
            "reason": reason.to_numpy(dtype=object),
            "detail": detail.to_numpy(dtype=object),
        },
        columns=FRAME_COLUMNS,
    )


def flag_conflicting_duplicates(rows: pd.DataFrame, key: str = "text") -> pd.DataFrame:
    """Quarantine every copy of a text (or of the `key` column's value: a tabular row's raw
    values) that appears with more than one label in the run.

    Copies with the same label stay accepted: the feature job de-duplicates
    them and reports how many it removed.
    """
    rows = rows.copy()
    open_rows = rows[rows["reason"].isna()]
    n_labels = open_rows.groupby(key, sort=False)["label"].transform("nunique")
    conflicting = open_rows[n_labels > 1]
    if conflicting.empty:
        return rows
    what = "text appears" if key == "text" else "raw values appear"
    for _text, group in conflicting.groupby(key, sort=False):
        pairs = list(zip(group["source"], group["source_row"], strict=True))[:5]
        places = ", ".join(f"{s}:{r}" for s, r in pairs)
        counts = group["label"].value_counts().sort_index()
        labels = " and ".join(f"{int(k)} ({v}x)" for k, v in counts.items())  # type: ignore[call-overload]
        more = "" if len(group) <= 5 else f" and {len(group) - 5} more"
        message = f"same {what} {len(group)} times with labels {labels} at {places}{more}"
        rows.loc[group.index, "reason"] = "duplicate_conflicting_label"
        rows.loc[group.index, "detail"] = message
    return rows


def accepted_frame(rows: pd.DataFrame, contract: ModuleType) -> pd.DataFrame:
    """The accepted rows in the output layout: the contract's text column (str) and label
    column (int64), source str, source_row int64."""
    ok = rows[rows["reason"].isna()]
    return pd.DataFrame(
        {
            _text_column(contract): ok["text"].astype(str).to_numpy(),
            contract.RAW_LABEL: ok["label"].astype("int64").to_numpy(),
            "source": ok["source"].astype(str).to_numpy(),
            "source_row": ok["source_row"].astype("int64").to_numpy(),
        }
    )


def apply_contract(rows: pd.DataFrame, contract: ModuleType) -> pd.DataFrame:
    """Run the contract's `raw_schema` over the candidate rows; quarantine row-level failures.

    The checks above are meant to make this a no-op. If the contract is ever
    tightened without updating them, rows it rejects are quarantined as
    `contract_violation` instead of failing the run or slipping through. A
    failure that is not about particular rows (a dtype, a missing column) is
    a defect in this module and raises.
    """
    rows = rows.copy()
    candidates = rows[rows["reason"].isna()]
    frame = pd.DataFrame(
        {
            _text_column(contract): candidates["text"].astype(str),
            contract.RAW_LABEL: candidates["label"].astype("int64"),
        },
        index=candidates.index,
    )
    schema_name = f"{contract.__name__}.raw_schema"
    try:
        contract.raw_schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        frame_level = cases[cases["index"].isna()]
        if not frame_level.empty:
            raise RawContractViolation(
                f"the accepted frame does not have the shape {schema_name} "
                f"expects: {frame_level[['column', 'check', 'failure_case']].to_dict('records')}",
                failures=frame_level.astype(str).to_dict("records"),
            ) from errors
        for index, group in cases.groupby("index"):
            what = "; ".join(
                f"{c}: {chk}" for c, chk in zip(group["column"], group["check"], strict=True)
            )
            rows.loc[int(index), "reason"] = "contract_violation"
            rows.loc[int(index), "detail"] = f"fails {schema_name} ({what})"
    return rows


def quarantine_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The quarantined rows: source, source_row, text, raw_label (as str), reason, detail."""
    bad = rows[rows["reason"].notna()]
    return pd.DataFrame(
        {
            "source": bad["source"].astype(str).to_numpy(),
            "source_row": bad["source_row"].astype("int64").to_numpy(),
            "text": pd.array([printable_text(v) for v in bad["text"]], dtype="string"),
            "raw_label": pd.array([printable_text(v) for v in bad["raw_label"]], dtype="string"),
            "reason": bad["reason"].astype(str).to_numpy(),
            "detail": bad["detail"].astype(str).to_numpy(),
        }
    )

"""The credit-default contract: raw columns with their ranges and codes, features, API shapes.

Ingestion (quarantine), the Spark job, training and the API all read the
credit columns, ranges and allowed codes from here, so a change is one edit.
`FEATURE_CONTRACT_VERSION` names the feature definitions a model was trained
with; the registry records it and serving refuses a model whose version it
does not compute. `FEATURE_FINGERPRINT` hashes what `features.credit` returns
on a fixed frame of hostile rows; a test recomputes it, so changing a feature
without bumping the version fails CI.

Ranges are wider than what the UCI file holds (a limit of NT$ 10,000 to
1,000,000, ages 21-79) so that ordinary new clients are accepted, and narrow
enough that a unit mistake (a limit in cents, an age in months) is caught.
Codes are the ones the data holds, undocumented ones included; what they mean
is `features.credit`'s explicit mapping.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pydantic import BaseModel, ConfigDict, Field, create_model

from features.credit import (
    AGE,
    BILL_AMT,
    EDUCATION,
    EDUCATION_CODES,
    FEATURE_COLUMNS,
    FEATURE_DTYPES,
    LIMIT,
    MARRIAGE,
    MARRIAGE_CODES,
    PAY_AMT,
    PAY_STATUS,
    PAY_STATUS_MEANINGS,
    RAW_COLUMNS,
    SEX,
    SEX_CODES,
)

USE_CASE = "credit"
FEATURE_CONTRACT_VERSION = "credit-v2"
FEATURE_FINGERPRINT = "414a6938e4e217b2"

RAW_LABEL = "label"
ROW_ID = "client_id"
SPLIT = "split"
SPLITS = ("train", "valid", "test")
LABEL_NAMES = {0: "no_default", 1: "default"}
# A raw column naming a population segment, for drift reports.
SEGMENT_COLUMN = AGE

__all__ = [
    "FEATURE_COLUMNS",
    "FEATURE_CONTRACT_VERSION",
    "FEATURE_DTYPES",
    "RAW_COLUMNS",
    "USE_CASE",
]


@dataclass(frozen=True)
class RawField:
    """One raw column: an integer code from `codes`, or a number in [low, high]."""

    name: str
    description: str
    low: float | None = None
    high: float | None = None
    codes: tuple[int, ...] = ()
    integer: bool = False
    example: float | int = 0

    def describe_range(self) -> str:
        if self.codes:
            return f"one of {list(self.codes)}"
        return f"between {self.low:,.0f} and {self.high:,.0f}"


_MONTH_NAMES = ("Sep", "Aug", "Jul", "Jun", "May", "Apr")
MAX_AMOUNT = 10_000_000.0

RAW_FIELDS: dict[str, RawField] = {
    f.name: f
    for f in (
        RawField(
            LIMIT,
            "Credit limit in NT$ (the client and any supplementary cards).",
            1_000.0,
            MAX_AMOUNT,
            example=120_000,
        ),
        RawField(
            SEX,
            "1 = male, 2 = female.",
            codes=tuple(SEX_CODES),
            integer=True,
            example=2,
        ),
        RawField(
            EDUCATION,
            "1 = graduate school, 2 = university, 3 = high school, 4 = other; "
            "0, 5, 6 occur in the data undocumented and are read as other.",
            codes=tuple(sorted(EDUCATION_CODES)),
            integer=True,
            example=2,
        ),
        RawField(
            MARRIAGE,
            "1 = married, 2 = single, 3 = other; 0 occurs undocumented and is read as other.",
            codes=tuple(sorted(MARRIAGE_CODES)),
            integer=True,
            example=2,
        ),
        RawField(AGE, "Age in years.", 18, 100, integer=True, example=35),
        *(
            RawField(
                column,
                f"Repayment status in {_MONTH_NAMES[i]} (month {i + 1}, 1 = most recent): "
                "-2 = no consumption, -1 = paid duly, 0 = revolving credit, "
                "1..9 = payment delayed by that many months (9 = nine or more).",
                codes=tuple(sorted(PAY_STATUS_MEANINGS)),
                integer=True,
                example=0,
            )
            for i, column in enumerate(PAY_STATUS)
        ),
        *(
            RawField(
                column,
                f"Bill statement amount in {_MONTH_NAMES[i]} (month {i + 1}), NT$; "
                "negative when the client holds a credit balance.",
                -MAX_AMOUNT,
                MAX_AMOUNT,
                example=40_000 - 2_000 * i,
            )
            for i, column in enumerate(BILL_AMT)
        ),
        *(
            RawField(
                column,
                f"Amount paid in {_MONTH_NAMES[i]} (month {i + 1}), NT$.",
                0.0,
                MAX_AMOUNT,
                example=2_000,
            )
            for i, column in enumerate(PAY_AMT)
        ),
    )
}
if tuple(RAW_FIELDS) != RAW_COLUMNS:  # pragma: no cover - guards an edit of one side only
    raise RuntimeError("contracts.credit.RAW_FIELDS must list features.credit.RAW_COLUMNS in order")


# ---- Pandera schemas -------------------------------------------------------------------


def _raw_column(spec: RawField) -> pa.Column:
    if spec.codes:
        return pa.Column("int64", pa.Check.isin(list(spec.codes)), nullable=False)
    checks = [pa.Check.in_range(spec.low, spec.high)]
    if spec.integer:
        return pa.Column("int64", checks, nullable=False)
    return pa.Column("float64", checks, nullable=False)


raw_schema = pa.DataFrameSchema(
    {
        **{name: _raw_column(spec) for name, spec in RAW_FIELDS.items()},
        RAW_LABEL: pa.Column("int64", pa.Check.isin([0, 1])),
    },
    strict=False,
    coerce=False,
    name="raw_credit",
)

_COUNT_MAX = {
    "n_undocumented_codes": 2,
    "months_delinquent": 6,
    "months_since_delinquent": 7,
    "months_paid_duly": 6,
    "months_revolving": 6,
    "months_no_consumption": 6,
    "months_over_limit": 6,
    "months_no_payment": 5,
}


def _feature_column(name: str, dtype: str) -> pa.Column:
    if dtype == "int64":
        high = _COUNT_MAX.get(name, 1)
        return pa.Column("int64", pa.Check.in_range(0, high), nullable=False)
    checks: list[pa.Check] = []
    if name.startswith("delay_m") or name == "worst_delay":
        checks.append(pa.Check.in_range(0.0, 9.0))
    elif name.startswith("pay_ratio_m") or name in ("pay_ratio_mean", "paid_to_billed"):
        checks.append(pa.Check.in_range(0.0, 10.0))
    # NaN marks a value the raw row did not give (only outside the raw contract).
    return pa.Column("float64", checks, nullable=True)


feature_schema = pa.DataFrameSchema(
    {name: _feature_column(name, dtype) for name, dtype in FEATURE_DTYPES.items()},
    strict=False,
    name="credit_features",
)

training_frame_schema = feature_schema.add_columns(
    {
        RAW_LABEL: pa.Column("int64", pa.Check.isin([0, 1])),
        SPLIT: pa.Column(str, pa.Check.isin(list(SPLITS))),
    }
)


# ---- row-level reasons (ingestion quarantine) --------------------------------------------

ROW_REASONS = ("value_missing", "value_not_numeric", "value_out_of_range", "code_not_allowed")


def row_reasons(raw: pd.DataFrame) -> pd.DataFrame:
    """Per raw row, the first contract breach: columns `reason` and `detail` (None when clean).

    Order: a missing cell, a cell that is not a number, an amount or age out of
    its range (or not whole where a whole number is required), a code the
    contract does not allow. Ingestion quarantines the rows with a reason.
    """
    open_rows = np.ones(len(raw), dtype=bool)
    reason = np.full(len(raw), None, dtype=object)
    detail = np.full(len(raw), None, dtype=object)
    for name, spec in RAW_FIELDS.items():
        if name not in raw.columns:
            raise KeyError(f"raw credit frame lacks column {name!r}")
        cells = raw[name]
        numbers = pd.to_numeric(cells, errors="coerce")
        missing = cells.isna()
        not_numeric = ~missing & numbers.isna()
        values = numbers.to_numpy(dtype="float64", na_value=np.nan)
        known = ~np.isnan(values)
        if spec.codes:
            bad = known & ~np.isin(values, spec.codes)
            bad_code, out_of_range = bad, np.zeros(len(raw), dtype=bool)
        else:
            outside = known & ((values < spec.low) | (values > spec.high) | ~np.isfinite(values))
            fractional = known & spec.integer & (np.floor(values) != values)
            out_of_range, bad_code = outside | fractional, np.zeros(len(raw), dtype=bool)
        for code, mask in (
            ("value_missing", missing.to_numpy()),
            ("value_not_numeric", not_numeric.to_numpy()),
            ("value_out_of_range", out_of_range),
            ("code_not_allowed", bad_code),
        ):
            new = open_rows & mask
            open_rows &= ~mask
            for i in np.flatnonzero(new):
                reason[i] = code
                detail[i] = (
                    f"{name}={cells.iloc[i]!r} ({code}); the contract allows "
                    f"{spec.describe_range()}"
                )
    return pd.DataFrame({"reason": reason, "detail": detail}, index=raw.index)


# ---- API models ------------------------------------------------------------------------


def _request_field(spec: RawField) -> tuple[Any, Any]:
    # Lax int/float on purpose: the Spark job validates CSV cells (strings such as "2" or
    # "2e+05") with this same model, so both paths give build_features the same typed values.
    # 2.5 or "two" are still refused.
    if spec.codes:
        return (
            int,
            Field(
                ...,
                ge=min(spec.codes),
                le=max(spec.codes),
                description=f"{spec.description} Allowed: {list(spec.codes)}.",
                json_schema_extra={"enum": list(spec.codes)},
                examples=[spec.example],
            ),
        )
    low, high = float(spec.low or 0.0), float(spec.high or 0.0)
    description = f"{spec.description} Range {spec.describe_range()}."
    if spec.integer:
        return (
            int,
            Field(..., ge=int(low), le=int(high), description=description, examples=[spec.example]),
        )
    return (
        float,
        Field(
            ...,
            ge=low,
            le=high,
            allow_inf_nan=False,
            description=description,
            examples=[spec.example],
        ),
    )


class _RequestBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_raw_row(self) -> dict[str, Any]:
        """The request as one canonical raw row (what build_features reads)."""
        return self.model_dump()


PredictRequest = create_model(  # type: ignore[call-overload]
    "CreditPredictRequest",
    __base__=_RequestBase,
    __doc__="One credit-card client to score: the raw columns of the credit contract.",
    **{name: _request_field(spec) for name, spec in RAW_FIELDS.items()},
)


class Reason(BaseModel):
    """One feature that pushed the default probability up."""

    feature: str = Field(..., description="Feature name (see features/credit.py).")
    contribution: float = Field(
        ..., description="Its contribution to the model's log-odds of default (> 0 raises it)."
    )
    value: float | None = Field(default=None, description="The feature's value for this client.")


class PredictResponse(BaseModel):
    label: int = Field(..., description="0 = no default, 1 = default next month")
    label_name: str
    probability: float = Field(..., ge=0.0, le=1.0, description="P(default next month)")
    model_version: str
    request_id: str
    reasons: list[Reason] = Field(
        default_factory=list,
        description="Up to three features pushing the default probability up most, strongest first.",
    )
    features: dict[str, Any] | None = Field(
        default=None, description="The computed features (only with ?return_features=true)."
    )


# ---- self-check rows -------------------------------------------------------------------------


def _example_rows() -> tuple[dict[str, Any], ...]:
    base: dict[str, Any] = {name: spec.example for name, spec in RAW_FIELDS.items()}
    return (
        dict(base),
        {**base, LIMIT: 1_000.0, **{c: 9_000.0 + 500 * i for i, c in enumerate(BILL_AMT)}},
        {**base, **{c: -2_500.0 for c in BILL_AMT}, **{c: 0.0 for c in PAY_AMT}},
        {**base, **{c: 0.0 for c in BILL_AMT}, **{c: 0.0 for c in PAY_AMT}},
        {**base, EDUCATION: 0, MARRIAGE: 0, **{c: -2 for c in PAY_STATUS}},
        {**base, EDUCATION: 5, **dict(zip(PAY_STATUS, (2, 3, 4, 5, 6, 8), strict=True))},
        {**base, EDUCATION: 6, SEX: 1, AGE: 18, PAY_STATUS[0]: 9, PAY_STATUS[1]: -1},
        {
            **base,
            LIMIT: MAX_AMOUNT,
            AGE: 100,
            **{c: MAX_AMOUNT for c in BILL_AMT},
            **{c: MAX_AMOUNT for c in PAY_AMT},
        },
        {**base, **{c: 1 for c in PAY_STATUS[::2]}, **{c: -1 for c in PAY_STATUS[1::2]}},
        {**base, LIMIT: 50_000.0, **{c: 0.01 for c in BILL_AMT}, PAY_AMT[0]: 123_456.78},
        {**base, MARRIAGE: 3, EDUCATION: 4, **{c: 1 for c in PAY_STATUS}},
        {**base, LIMIT: 360_000.0, **{c: -MAX_AMOUNT for c in BILL_AMT}},
    )


# Valid clients a freshly loaded model is self-checked on (serving: the fast scoring path must
# reproduce the pipeline's answers on them) and the start-up feature-schema check uses: the
# limit and the amounts at their bounds, zero and negative bills, every undocumented code.
EXAMPLE_ROWS: tuple[dict[str, Any], ...] = _example_rows()


# ---- fingerprint ---------------------------------------------------------------------------


def fingerprint_frame() -> pd.DataFrame:
    """Fixed hostile raw rows: zero limit, negative bills, NaN, strings, undocumented codes."""
    base = {name: spec.example for name, spec in RAW_FIELDS.items()}
    rows: list[dict[str, Any]] = [
        dict(base),
        {**base, LIMIT: 0.0},
        {**base, LIMIT: -5_000.0, **{c: -1_000.0 for c in BILL_AMT}},
        {**base, **{c: float("nan") for c in BILL_AMT}, PAY_AMT[0]: float("nan")},
        {**base, EDUCATION: 0, MARRIAGE: 0, **{c: -2 for c in PAY_STATUS}},
        {
            **base,
            EDUCATION: 5,
            **{c: s for c, s in zip(PAY_STATUS, (2, 3, 4, 5, 6, 8), strict=True)},
        },
        {**base, EDUCATION: 6, PAY_STATUS[0]: 11, PAY_STATUS[1]: -3, SEX: 9},
        {**base, **{c: 0.0 for c in BILL_AMT}, **{c: 0.0 for c in PAY_AMT}},
        {**base, **{c: 500_000.0 for c in BILL_AMT}, **{c: 5_000_000.0 for c in PAY_AMT}},
        {**base, AGE: None, LIMIT: "abc", PAY_AMT[2]: float("inf")},
        {**base, **{c: 1 for c in PAY_STATUS[::2]}, **{c: -1 for c in PAY_STATUS[1::2]}},
        {name: None for name in RAW_FIELDS},
    ]
    return pd.DataFrame(rows, columns=list(RAW_COLUMNS))


def feature_fingerprint() -> str:
    """sha256 of features.credit.build_features on fingerprint_frame()."""
    from features.credit import build_features

    frame = build_features(fingerprint_frame())
    rounded = frame.astype(object).where(frame.notna(), None)  # type: ignore[call-overload]
    payload = json.dumps(
        {
            "dtypes": {k: str(v) for k, v in frame.dtypes.items()},
            "rows": [
                {k: (round(v, 9) if isinstance(v, float) else v) for k, v in row.items()}
                for row in rounded.to_dict("records")
            ],
        },
        sort_keys=True,
        ensure_ascii=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]

"""Credit-default features: the only place they are defined.

`build_features` runs unchanged inside Spark (`mapInPandas`, training) and in
the API (online), so a client's features are the same numbers in both. Pure
pandas + numpy: no Spark, web, MLflow or Airflow imports.

The raw columns are the canonical ones of the credit contract (a source file's
own names, e.g. the UCI file's `PAY_0` or `BILL_AMT1`, are mapped onto them by
contracts/sources.yaml). Month 1 is the most recent month (September 2005 in
the UCI data), month 6 the oldest (April 2005).

What an analyst reads off a card account, per row:

- utilisation per month (bill / limit), its mean, maximum, the months over
  the limit and its trend (least-squares slope per month, positive = rising
  towards the most recent month);
- repayment status: months of delay per month, months delinquent, the worst
  delay, months since the last delinquency, the delay trend, and how many
  months were paid duly, revolving or without any consumption;
- repayment behaviour: each month's payment relative to the bill it pays
  (payment of month k against the statement of month k+1), their mean,
  the total paid against the total billed, months with no payment on a
  positive bill;
- the client's demographics with the undocumented codes mapped explicitly.

Code policy (the UCI codebook documents fewer codes than the data holds):

- EDUCATION 1-4 are documented; 0, 5 and 6 occur but are not. They are mapped
  to "other" on purpose (`EDUCATION_CODES`) and counted in
  `n_undocumented_codes`, so a model can still tell them apart.
- MARRIAGE 1-3 are documented; 0 occurs and is mapped to "other", counted too.
- PAY status -1 means paid duly and 1-9 months of delay. -2 (no consumption
  that month) and 0 (revolving credit: the minimum was paid) are not in the
  codebook but are the meanings the data's authors gave; both mean no delay
  (`PAY_STATUS_MEANINGS`). Values outside -2..9 count as unknown (NaN delay).

Missing or non-numeric cells become NaN and stay NaN through the ratios
(missing is not silently zero); counts only count the months that are known.
A zero or negative limit gives NaN utilisation, a non-positive bill means
nothing was due, so that month's payment ratio is 1.0 (nothing left unpaid).
Stateful transforms (scaling, binning, imputation) belong to the model
pipeline, not here. No feature reuses a raw column's name (`credit_limit`, not
`limit_bal`): the Spark job writes the raw columns beside the features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

MONTHS = (1, 2, 3, 4, 5, 6)

LIMIT = "limit_bal"
SEX = "sex"
EDUCATION = "education"
MARRIAGE = "marriage"
AGE = "age"
PAY_STATUS = tuple(f"pay_status_{m}" for m in MONTHS)
BILL_AMT = tuple(f"bill_amt_{m}" for m in MONTHS)
PAY_AMT = tuple(f"pay_amt_{m}" for m in MONTHS)
RAW_COLUMNS: tuple[str, ...] = (
    LIMIT,
    SEX,
    EDUCATION,
    MARRIAGE,
    AGE,
    *PAY_STATUS,
    *BILL_AMT,
    *PAY_AMT,
)

# Category codes -> meaning. Undocumented codes are listed on purpose.
SEX_CODES: dict[int, str] = {1: "male", 2: "female"}
EDUCATION_CODES: dict[int, str] = {
    1: "graduate",
    2: "university",
    3: "high_school",
    4: "other",
    0: "other",  # undocumented
    5: "other",  # undocumented
    6: "other",  # undocumented
}
UNDOCUMENTED_EDUCATION: frozenset[int] = frozenset({0, 5, 6})
MARRIAGE_CODES: dict[int, str] = {1: "married", 2: "single", 3: "other", 0: "other"}
UNDOCUMENTED_MARRIAGE: frozenset[int] = frozenset({0})
PAY_STATUS_MEANINGS: dict[int, str] = {
    -2: "no_consumption",  # undocumented in the UCI codebook
    -1: "paid_duly",
    0: "revolving",  # undocumented in the UCI codebook
    **{months: f"delay_{months}_months" for months in range(1, 10)},
}
# A payment ratio above this is a prepayment; capping keeps one huge payment
# from dominating the mean.
PAY_RATIO_CAP = 10.0

EDUCATION_LEVELS = ("graduate", "university", "high_school", "other")
MARRIAGE_LEVELS = ("married", "single", "other")

FEATURE_DTYPES: dict[str, str] = {
    "credit_limit": "float64",
    "age_years": "float64",
    "sex_female": "int64",
    **{f"edu_{level}": "int64" for level in EDUCATION_LEVELS},
    **{f"marriage_{level}": "int64" for level in MARRIAGE_LEVELS},
    "n_undocumented_codes": "int64",
    **{f"delay_m{m}": "float64" for m in MONTHS},
    "worst_delay": "float64",
    "months_delinquent": "int64",
    "months_since_delinquent": "int64",
    "delay_trend": "float64",
    "months_paid_duly": "int64",
    "months_revolving": "int64",
    "months_no_consumption": "int64",
    **{f"util_m{m}": "float64" for m in MONTHS},
    "util_mean": "float64",
    "util_max": "float64",
    "util_trend": "float64",
    "months_over_limit": "int64",
    **{f"pay_ratio_m{m}": "float64" for m in MONTHS[:-1]},
    "pay_ratio_mean": "float64",
    "paid_to_billed": "float64",
    "months_no_payment": "int64",
    "log_pay_amt_mean": "float64",
    "log_bill_amt_mean": "float64",
}
FEATURE_COLUMNS: tuple[str, ...] = tuple(FEATURE_DTYPES)
NUMERIC_FEATURES = FEATURE_COLUMNS
# "Never delinquent in the window" for months_since_delinquent.
NEVER_DELINQUENT = len(MONTHS) + 1


class MissingRawColumnsError(KeyError):
    """The frame lacks raw columns the credit features need."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def _numeric(df: pd.DataFrame, column: str) -> np.ndarray:
    """A column as float64; anything that is not a finite number becomes NaN."""
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return np.where(np.isfinite(values), values, np.nan)


def _matrix(df: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    return np.column_stack([_numeric(df, c) for c in columns])


def _one_hot(
    codes: np.ndarray, mapping: dict[int, str], levels: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """One int64 indicator per level; codes outside `mapping` (and NaN) map to "other"."""
    meaning = np.full(codes.shape, "other", dtype=object)
    for code, name in mapping.items():
        meaning[codes == code] = name
    return {level: (meaning == level).astype("int64") for level in levels}


def _nan_mean(values: np.ndarray) -> np.ndarray:
    known = ~np.isnan(values)
    count = known.sum(axis=1)
    total = np.where(known, values, 0.0).sum(axis=1)
    with np.errstate(all="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nan_max(values: np.ndarray) -> np.ndarray:
    known = ~np.isnan(values)
    filled = np.where(known, values, -np.inf).max(axis=1)
    return np.where(known.any(axis=1), filled, np.nan)


def _slope(values: np.ndarray) -> np.ndarray:
    """Least-squares slope per month over the known months (NaN with fewer than two).

    Columns run from the most recent month to the oldest; time runs the other
    way, so a positive slope means rising towards the most recent month.
    """
    time = np.arange(values.shape[1], 0, -1, dtype="float64")[None, :]
    known = ~np.isnan(values)
    count = known.sum(axis=1)
    t = np.where(known, time, 0.0)
    y = np.where(known, values, 0.0)
    with np.errstate(all="ignore"):
        t_mean = t.sum(axis=1) / np.maximum(count, 1)
        y_mean = y.sum(axis=1) / np.maximum(count, 1)
        dt = np.where(known, time - t_mean[:, None], 0.0)
        dy = np.where(known, values - y_mean[:, None], 0.0)
        denominator = (dt * dt).sum(axis=1)
        slope = (dt * dy).sum(axis=1) / denominator
    return np.where((count >= 2) & (denominator > 0), slope, np.nan)


def _repayment_status(status: np.ndarray) -> dict[str, np.ndarray]:
    valid = np.isin(status, list(PAY_STATUS_MEANINGS))
    delay = np.where(valid, np.clip(status, 0, None), np.nan)
    delinquent = valid & (status >= 1)
    first = np.argmax(delinquent, axis=1) + 1  # month index of the most recent delinquency
    recent_half = _nan_mean(delay[:, :3])
    older_half = _nan_mean(delay[:, 3:])
    out = {f"delay_m{m}": delay[:, i] for i, m in enumerate(MONTHS)}
    out.update(
        {
            "worst_delay": _nan_max(delay),
            "months_delinquent": delinquent.sum(axis=1).astype("int64"),
            "months_since_delinquent": np.where(
                delinquent.any(axis=1), first, NEVER_DELINQUENT
            ).astype("int64"),
            "delay_trend": recent_half - older_half,
            "months_paid_duly": (valid & (status == -1)).sum(axis=1).astype("int64"),
            "months_revolving": (valid & (status == 0)).sum(axis=1).astype("int64"),
            "months_no_consumption": (valid & (status == -2)).sum(axis=1).astype("int64"),
        }
    )
    return out


def _utilisation(limit: np.ndarray, bills: np.ndarray) -> dict[str, np.ndarray]:
    usable = (limit > 0)[:, None]
    with np.errstate(all="ignore"):
        util = np.where(usable, bills / np.where(usable, limit[:, None], 1.0), np.nan)
    util = np.where(np.isfinite(util), util, np.nan)  # a tiny limit must not give inf
    out = {f"util_m{m}": util[:, i] for i, m in enumerate(MONTHS)}
    out.update(
        {
            "util_mean": _nan_mean(util),
            "util_max": _nan_max(util),
            "util_trend": _slope(util),
            "months_over_limit": (util > 1.0).sum(axis=1).astype("int64"),
        }
    )
    return out


def _repayment(bills: np.ndarray, payments: np.ndarray) -> dict[str, np.ndarray]:
    # The payment of month k settles the statement of month k+1 (the one before it).
    due = bills[:, 1:]
    paid = payments[:, :-1]
    with np.errstate(all="ignore"):
        ratio = np.where(
            due > 0, np.clip(paid / np.where(due > 0, due, 1.0), 0.0, PAY_RATIO_CAP), 1.0
        )
    ratio = np.where(np.isnan(due) | np.isnan(paid), np.nan, ratio)
    owed = np.where(due > 0, due, 0.0)
    paid_known = np.where(np.isnan(paid), 0.0, np.clip(paid, 0.0, None))
    owed_total = np.where(np.isnan(due), 0.0, owed).sum(axis=1)
    paid_total = paid_known.sum(axis=1)
    any_known = ~(np.isnan(due) | np.isnan(paid)).all(axis=1)
    with np.errstate(all="ignore"):
        paid_to_billed = np.where(
            owed_total > 0,
            np.clip(paid_total / np.where(owed_total > 0, owed_total, 1.0), 0.0, PAY_RATIO_CAP),
            1.0,
        )
    out = {f"pay_ratio_m{m}": ratio[:, i] for i, m in enumerate(MONTHS[:-1])}
    out.update(
        {
            "pay_ratio_mean": _nan_mean(ratio),
            "paid_to_billed": np.where(any_known, paid_to_billed, np.nan),
            "months_no_payment": ((due > 0) & (paid == 0)).sum(axis=1).astype("int64"),
            "log_pay_amt_mean": np.log1p(np.clip(_nan_mean(payments), 0.0, None)),
            "log_bill_amt_mean": np.sign(_nan_mean(bills)) * np.log1p(np.abs(_nan_mean(bills))),
        }
    )
    return out


def _as_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    out = np.asarray(values).astype(dtype, copy=False)
    if dtype == "float64":
        out = np.where(np.isfinite(out), out, np.nan)  # overflow in a ratio is unknown, not inf
    return out


def check_raw_columns(df: pd.DataFrame) -> None:
    """Raise MissingRawColumnsError naming every raw column `df` lacks."""
    missing = [c for c in RAW_COLUMNS if c not in df.columns]
    if missing:
        raise MissingRawColumnsError(
            f"build_features (credit) needs raw columns {missing}, which the frame lacks; "
            f"it has {list(df.columns)}. Map a source's own column names with "
            "contracts/sources.yaml."
        )


def _feature_arrays(
    limit: np.ndarray,
    age: np.ndarray,
    sex: np.ndarray,
    education: np.ndarray,
    marriage: np.ndarray,
    status: np.ndarray,
    bills: np.ndarray,
    payments: np.ndarray,
) -> dict[str, np.ndarray]:
    """Every feature column from the raw values as float64 arrays (NaN = unknown)."""
    columns: dict[str, np.ndarray] = {
        "credit_limit": limit,
        "age_years": age,
        "sex_female": (sex == 2).astype("int64"),
    }
    columns.update(
        {f"edu_{k}": v for k, v in _one_hot(education, EDUCATION_CODES, EDUCATION_LEVELS).items()}
    )
    columns.update(
        {f"marriage_{k}": v for k, v in _one_hot(marriage, MARRIAGE_CODES, MARRIAGE_LEVELS).items()}
    )
    undocumented = np.isin(education, list(UNDOCUMENTED_EDUCATION)).astype("int64") + np.isin(
        marriage, list(UNDOCUMENTED_MARRIAGE)
    ).astype("int64")
    columns["n_undocumented_codes"] = undocumented
    columns.update(_repayment_status(status))
    columns.update(_utilisation(limit, bills))
    columns.update(_repayment(bills, payments))
    return {name: _as_dtype(columns[name], FEATURE_DTYPES[name]) for name in FEATURE_COLUMNS}


def _raw_arrays(raw: np.ndarray) -> dict[str, np.ndarray]:
    """`_feature_arrays` of a (rows, RAW_COLUMNS) float64 matrix."""
    index = {name: i for i, name in enumerate(RAW_COLUMNS)}

    def block(names: tuple[str, ...]) -> np.ndarray:
        return raw[:, [index[n] for n in names]]

    return _feature_arrays(
        raw[:, index[LIMIT]],
        raw[:, index[AGE]],
        raw[:, index[SEX]],
        raw[:, index[EDUCATION]],
        raw[:, index[MARRIAGE]],
        block(PAY_STATUS),
        block(BILL_AMT),
        block(PAY_AMT),
    )


def build_features(df: pd.DataFrame) -> pd.DataFrame:
    """Feature frame for the raw credit rows of `df`: same index, dtypes from FEATURE_DTYPES.

    Deterministic and total on any row that has the raw columns: NaN,
    strings, zero or negative limits and negative bills produce a row.
    """
    check_raw_columns(df)
    data = _raw_arrays(_matrix(df, RAW_COLUMNS).reshape(len(df), len(RAW_COLUMNS)))
    return pd.DataFrame(data, index=df.index, copy=False)


_PLAIN_NUMBERS = (int, float)


def featurize_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]] | None:
    """The feature columns of raw rows given as dicts, as lists, without building a DataFrame.

    The same numbers as `build_features(pd.DataFrame.from_records(rows))` (the serving
    process checks this on the contract's example rows at start-up): the raw values go
    straight into the float64 matrix `build_features` builds from a frame (a missing key is
    NaN, as in a frame built with `columns=RAW_COLUMNS`). Only rows whose raw values are all
    plain ints, floats or None take this path (what a validated `PredictRequest` holds); for
    anything else (strings, booleans, numpy scalars) it returns None and the caller goes
    through `build_features`.
    """
    n = len(RAW_COLUMNS)
    flat: list[Any] = []
    for row in rows:
        values = [row.get(name) for name in RAW_COLUMNS]
        if not all(v is None or type(v) in _PLAIN_NUMBERS for v in values):
            return None
        flat.extend(values)
    raw = np.array(flat, dtype="float64").reshape(len(rows), n)
    raw = np.where(np.isfinite(raw), raw, np.nan)
    arrays = _raw_arrays(raw)
    return {name: arrays[name].tolist() for name in FEATURE_COLUMNS}

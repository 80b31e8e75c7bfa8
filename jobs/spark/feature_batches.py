"""The code Spark's Python workers run: a use case's row check and `build_features` on batches.

Kept apart from `featurize` so a worker imports only pandas, the use case's feature module and,
for tabular use cases, its contract's `PredictRequest` (nothing of Spark's driver side). The
functions here receive module *names*, not registry lookups: a worker may not see the
registry's extra folders, but it imports the modules the driver shipped to it (see
`ship_use_case_modules`). The Spark schema of the output is derived from `FEATURE_DTYPES`
instead of being typed a second time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
from pyspark.sql.types import DataType, DoubleType, LongType, StringType, StructField, StructType

# pandas dtype of a feature -> Spark type of its Parquet column.
SPARK_TYPES: dict[str, DataType] = {
    "object": StringType(),
    "str": StringType(),
    "string": StringType(),
    "int64": LongType(),
    "float64": DoubleType(),
}

REASON_COLUMN = "_reason"
DETAIL_COLUMN = "_detail"
CONTRACT_VIOLATION = "contract_violation"


def feature_fields(feature_columns: Sequence[str], dtypes: dict[str, str]) -> list[StructField]:
    """Spark fields of the feature columns, in order, typed from their pandas dtypes."""
    fields = []
    for name in feature_columns:
        dtype = str(dtypes[name])
        if dtype not in SPARK_TYPES:
            raise TypeError(
                f"feature {name!r} has dtype {dtype!r}, which has no Spark type; "
                f"known dtypes: {sorted(SPARK_TYPES)} (extend SPARK_TYPES)"
            )
        fields.append(StructField(name, SPARK_TYPES[dtype], nullable=False))
    return fields


def output_schema(
    passthrough: StructType,
    keep: Sequence[str],
    feature_columns: Sequence[str],
    dtypes: dict[str, str],
) -> StructType:
    """`keep` columns of the input, then the feature columns."""
    by_name = {field.name: field for field in passthrough.fields}
    return StructType([by_name[name] for name in keep] + feature_fields(feature_columns, dtypes))


def json_types(request_model: Any) -> dict[str, set[str]]:
    """JSON types each PredictRequest field accepts ({"integer"}, {"number", "null"}, ...)."""
    out: dict[str, set[str]] = {}
    for name, spec in request_model.model_json_schema().get("properties", {}).items():
        options = spec.get("anyOf", [spec])
        out[name] = {str(o.get("type")) for o in options if "type" in o}
    return out


def _as_json_value(value: Any, types: set[str]) -> Any:
    """A CSV field (always text in Spark) as the JSON value an API client would send.

    "20000" for an integer field becomes 20000, "1.5" for a number 1.5; text that is no such
    number stays text, so the request model rejects it exactly as it would reject it in JSON.
    """
    if not isinstance(value, str) or "string" in types:
        return value
    text = value.strip()
    if text == "" and "null" in types:
        return None
    try:
        if "integer" in types:
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
        if "number" in types:
            return float(text)
    except ValueError:
        return value
    return value


def json_row(row: Mapping[Any, Any], types: dict[str, set[str]]) -> dict[str, Any]:
    """`row` with NaN as None and text fields typed as JSON would carry them."""
    return {
        str(k): _as_json_value(_clean(v), types.get(str(k), {"string"})) for k, v in row.items()
    }


def typed_rows(batch: pd.DataFrame, request_model: Any, raw_columns: Sequence[str]) -> pd.DataFrame:
    """Raw rows as the API sees them: each row through `PredictRequest`, then `model_dump()`.

    Spark reads every CSV field as a string; the API receives JSON values. Passing both through
    the same pydantic model gives `build_features` the same typed values on both paths.
    """
    types = json_types(request_model)
    records = [
        request_model.model_validate(json_row(row, types)).model_dump()
        for row in batch[list(raw_columns)].to_dict("records")
    ]
    return pd.DataFrame.from_records(records, index=batch.index, columns=list(raw_columns))


def _clean(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and value != value) else value


def row_problem(
    request_model: Any, row: Mapping[Any, Any], types: dict[str, set[str]] | None = None
) -> str | None:
    """Why `row` breaks the contract's PredictRequest (first error, 'field: message'), or None."""
    try:
        request_model.model_validate(json_row(row, types or json_types(request_model)))
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        errors: list[dict[str, Any]] = getattr(exc, "errors", lambda: [])()
        if errors:
            first = errors[0]
            where = ".".join(str(part) for part in first.get("loc", ())) or "row"
            return f"{where}: {first.get('msg', 'invalid')}"[:300]
        return str(exc).splitlines()[0][:300]
    return None


def make_row_checks(
    contract_module: str, raw_columns: Sequence[str]
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A `mapInPandas` function adding `_reason` / `_detail`: does the row pass PredictRequest?"""
    raw_columns = list(raw_columns)

    def row_checks(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        request_model = importlib.import_module(contract_module).PredictRequest
        types = json_types(request_model)
        for batch in batches:
            details = [
                row_problem(request_model, row, types)
                for row in batch[raw_columns].astype(object).to_dict("records")
            ]
            out = batch.copy()
            out[REASON_COLUMN] = [None if d is None else CONTRACT_VIOLATION for d in details]
            out[DETAIL_COLUMN] = details
            yield out

    return row_checks


def make_feature_batches(
    keep: Sequence[str],
    feature_module: str,
    raw_columns: Sequence[str],
    contract_module: str | None = None,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A `mapInPandas` function: `keep` columns unchanged, then the use case's `build_features`.

    With `contract_module` (tabular use cases) each row first goes through its `PredictRequest`
    (`typed_rows`), exactly as the API does; text use cases hand the raw text over as it is.
    """
    keep, raw_columns = list(keep), list(raw_columns)

    def feature_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        features_mod = importlib.import_module(feature_module)
        request_model = (
            importlib.import_module(contract_module).PredictRequest if contract_module else None
        )
        for batch in batches:
            raw = batch[raw_columns]
            if request_model is not None:
                raw = typed_rows(raw.astype(object), request_model, raw_columns)
            features = features_mod.build_features(raw)
            yield pd.concat(
                [batch[keep].reset_index(drop=True), features.reset_index(drop=True)], axis=1
            )

    return feature_batches

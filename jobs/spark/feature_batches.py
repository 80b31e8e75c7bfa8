"""The code Spark's Python workers run: `features.reviews.build_features` on Arrow batches.

Kept apart from `featurize` so a worker imports only pandas and `features` (not Pandera,
pydantic or the contracts), and so the Spark schema of the output is derived from
`FEATURE_DTYPES` instead of being typed a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pandas as pd
from pyspark.sql.types import DataType, DoubleType, LongType, StringType, StructField, StructType

from features.reviews import FEATURE_COLUMNS, FEATURE_DTYPES, build_features

# pandas dtype of a feature -> Spark type of its Parquet column.
SPARK_TYPES: dict[str, DataType] = {
    "object": StringType(),
    "str": StringType(),
    "string": StringType(),
    "int64": LongType(),
    "float64": DoubleType(),
}


def feature_fields() -> list[StructField]:
    """Spark fields of FEATURE_COLUMNS, in order, typed from FEATURE_DTYPES."""
    fields = []
    for name in FEATURE_COLUMNS:
        dtype = FEATURE_DTYPES[name]
        if dtype not in SPARK_TYPES:
            raise TypeError(
                f"feature {name!r} has dtype {dtype!r}, which has no Spark type; "
                f"known dtypes: {sorted(SPARK_TYPES)} (extend SPARK_TYPES)"
            )
        fields.append(StructField(name, SPARK_TYPES[dtype], nullable=False))
    return fields


def output_schema(passthrough: StructType, keep: Sequence[str]) -> StructType:
    """`keep` columns of the input, then the feature columns."""
    by_name = {field.name: field for field in passthrough.fields}
    return StructType([by_name[name] for name in keep] + feature_fields())


def make_feature_batches(
    keep: Sequence[str], text_column: str
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A `mapInPandas` function: `keep` columns unchanged, then `build_features(text_column)`."""
    keep = list(keep)

    def feature_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            features = build_features(batch, text_col=text_column)
            yield pd.concat(
                [batch[keep].reset_index(drop=True), features.reset_index(drop=True)], axis=1
            )

    return feature_batches

"""The review-sentiment contract: raw columns, feature columns, API shapes.

Every process kind reads its column names and dtypes from here, so a rename
is one edit. `FEATURE_CONTRACT_VERSION` names the feature definitions a model
was trained with; the registry records it and serving refuses a model whose
version it does not compute. `FEATURE_FINGERPRINT` is a hash of what
`features.build_features` returns on a fixed set of hostile inputs; the
append-only history in `fingerprints.yaml` (see `contracts.history`) records it per
version, so changing a feature without a new version fails CI and serving.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any

import pandas as pd
import pandera.pandas as pa
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    field_validator,
)

from features.reviews import FEATURE_COLUMNS, FEATURE_DTYPES, NUMERIC_FEATURES, TEXT_CLEAN

USE_CASE = "reviews"
FEATURE_CONTRACT_VERSION = "reviews-v1"
FEATURE_FINGERPRINT = "24081e15e33e399f"

# Canonical raw columns after a source's own names are mapped.
RAW_TEXT = "text"
RAW_COLUMNS: tuple[str, ...] = (RAW_TEXT,)
RAW_LABEL = "label"
ROW_ID = "review_id"
SPLIT = "split"
LABEL_NAMES = {0: "negative", 1: "positive"}
SPLITS = ("train", "valid", "test")

# Hard limits shared by ingestion (quarantine) and the API (422).
MAX_TEXT_CHARS = 20_000
# Most reviews one POST /predict/batch may carry (the document's maxItems); a server may
# lower it (DRIFTLOOP_MAX_BATCH_REVIEWS, 413 above), never raise it.
MAX_BATCH_REVIEWS = 100

__all__ = [
    "FEATURE_COLUMNS",
    "FEATURE_CONTRACT_VERSION",
    "FEATURE_DTYPES",
    "NUMERIC_FEATURES",
    "RAW_COLUMNS",
    "TEXT_CLEAN",
    "USE_CASE",
    "load_sources",
    "map_label",
]


raw_schema = pa.DataFrameSchema(
    {
        RAW_TEXT: pa.Column(str, nullable=False, checks=pa.Check.str_length(1, MAX_TEXT_CHARS)),
        RAW_LABEL: pa.Column("int64", checks=pa.Check.isin([0, 1])),
    },
    strict=False,
    coerce=False,
    name="raw_reviews",
)

feature_schema = pa.DataFrameSchema(
    {
        TEXT_CLEAN: pa.Column(str, nullable=False),
        "n_chars": pa.Column("int64", pa.Check.ge(0)),
        "n_words": pa.Column("int64", pa.Check.ge(0)),
        "upper_ratio": pa.Column("float64", pa.Check.in_range(0.0, 1.0)),
        "n_exclaim": pa.Column("int64", pa.Check.ge(0)),
        "n_question": pa.Column("int64", pa.Check.ge(0)),
        "n_html_tags": pa.Column("int64", pa.Check.ge(0)),
        "n_negations": pa.Column("int64", pa.Check.ge(0)),
        "avg_word_len": pa.Column("float64", pa.Check.ge(0.0)),
        "elongated_words": pa.Column("int64", pa.Check.ge(0)),
    },
    strict=False,
    name="review_features",
)

training_frame_schema = feature_schema.add_columns(
    {
        RAW_LABEL: pa.Column("int64", pa.Check.isin([0, 1])),
        SPLIT: pa.Column(str, pa.Check.isin(list(SPLITS))),
    }
)


# ---- API models -------------------------------------------------------------


class ReviewBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        ...,
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="The raw review text, as a user wrote it (HTML allowed).",
        examples=["A gripping film. I was not bored for a second!"],
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # Ingestion quarantines blank reviews (reason empty_text); the API
        # refuses them the same way instead of scoring an empty document.
        if not value.strip():
            raise ValueError("text must contain at least one non-whitespace character")
        return value


class PredictRequest(ReviewBase):
    """One review to score."""


class PredictResponse(BaseModel):
    label: int = Field(..., description="0 = negative, 1 = positive")
    label_name: str
    probability: float = Field(..., ge=0.0, le=1.0, description="P(positive)")
    model_version: str
    request_id: str
    features: dict[str, Any] | None = Field(
        default=None, description="The computed features (only with ?return_features=true)."
    )


def _whole_number(value: Any) -> Any:
    """2.0 is the JSON integer 2 (JSON Schema says so); 2.5, "2" and true stay invalid."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Label = Annotated[StrictInt, BeforeValidator(_whole_number)]


def _require_non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("text must contain at least one non-whitespace character")
    return value


ReviewText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS),
    AfterValidator(_require_non_blank),
]


class BatchPredictRequest(BaseModel):
    """Several reviews scored in one call; each obeys the same rules as PredictRequest.text."""

    model_config = ConfigDict(extra="forbid")

    texts: list[ReviewText] = Field(
        ...,
        min_length=1,
        max_length=MAX_BATCH_REVIEWS,
        description=(
            f"Raw review texts, at most {MAX_BATCH_REVIEWS}; a server may cap it lower "
            "(413 above its DRIFTLOOP_MAX_BATCH_REVIEWS)."
        ),
        examples=[["Loved it!", "Two hours I will never get back."]],
    )


class BatchPrediction(BaseModel):
    request_id: str = Field(..., description="Id of this review's prediction, for POST /feedback.")
    label: int = Field(..., description="0 = negative, 1 = positive")
    label_name: str
    probability: float = Field(..., ge=0.0, le=1.0, description="P(positive)")


class BatchPredictResponse(BaseModel):
    model_version: str
    request_id: str = Field(..., description="Id of the whole request; items use <id>-<index>.")
    predictions: list[BatchPrediction]


class FeedbackRequest(BaseModel):
    """The true label of an earlier prediction, once it is known."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(..., min_length=1, max_length=200, description="From a prediction.")
    label: Label = Field(..., ge=0, le=1, description="0 = negative, 1 = positive")


class FeedbackResponse(BaseModel):
    request_id: str
    label: int
    label_name: str
    received_at: datetime


# ---- sources (label maps are data) ------------------------------------------
# The loader is shared by every use case; these names stay importable from here.
from contracts.sources import load_sources, map_label  # noqa: E402

# ---- fingerprint ---------------------------------------------------------------

FINGERPRINT_INPUTS: tuple[Any, ...] = (
    "",
    None,
    float("nan"),
    "   ",
    "Plain review. Nothing special.",
    "I LOVED it!!! <br /><br />Best film, don\x92t miss &amp; see",
    "Was it good?? No... NOT at all. I can't recommend it",
    "caf\u00e9 \u00bd \ufb01ne \u2018quoted\u2019 \u201cdouble\u201d \u2014 dash",
    "\x00\x07ctrl\x1b chars\x7f and \u200b zero width",
    "emoji \U0001f600\U0001f44d and sooooo goooood",
    "<p>para</p><div class='x'>html</div> a < b > c",
    "\u0130stanbul \u00df \u01c5 casefolds",
    "word " * 500,
)


def feature_fingerprint() -> str:
    """sha256 of build_features' output on FINGERPRINT_INPUTS."""
    from features.reviews import build_features

    frame = build_features(pd.DataFrame({RAW_TEXT: list(FINGERPRINT_INPUTS)}))
    payload = json.dumps(
        {"dtypes": {k: str(v) for k, v in frame.dtypes.items()}, "rows": frame.to_dict("records")},
        sort_keys=True,
        ensure_ascii=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]

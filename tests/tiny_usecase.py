"""A tiny third tabular use case written into a temp folder, to prove plug-ins need no generic edit.

`write_tiny_use_case(folder)` writes a feature module, a contract module, a config folder and a
registry file (`usecases.yaml`) into `folder`; pointing `DRIFTLOOP_USECASES` at it registers the
use case `tiny` next to the built-in ones.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

FEATURES = '''
"""Tiny tabular features: pure pandas, total on hostile values."""

from __future__ import annotations

import numpy as np
import pandas as pd

RAW_COLUMNS: tuple[str, ...] = ("amount", "channel")
FEATURE_COLUMNS: tuple[str, ...] = ("log_amount", "is_web", "amount_missing")
FEATURE_DTYPES: dict[str, str] = {
    "log_amount": "float64",
    "is_web": "int64",
    "amount_missing": "int64",
}


def build_features(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in RAW_COLUMNS if c not in df.columns]
    if missing:
        raise KeyError(f"build_features needs column(s) {missing}; got {list(df.columns)}")
    amount = pd.to_numeric(df["amount"], errors="coerce").astype("float64")
    out = pd.DataFrame(index=df.index)
    out["log_amount"] = np.log1p(amount.clip(lower=0.0).fillna(0.0)).round(9)
    out["is_web"] = (df["channel"].astype("string").fillna("") == "web").astype("int64")
    out["amount_missing"] = amount.isna().astype("int64")
    return out.astype(FEATURE_DTYPES)
'''

CONTRACT = '''
"""Tiny tabular contract."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

import pandas as pd
import pandera.pandas as pa
from pydantic import BaseModel, ConfigDict, Field

from tiny_features import FEATURE_COLUMNS, FEATURE_DTYPES, RAW_COLUMNS, build_features

USE_CASE = "tiny"
FEATURE_CONTRACT_VERSION = "tiny-v1"
FEATURE_FINGERPRINT = "0439491dcd0a7b11"
RAW_LABEL = "label"
LABEL_NAMES = {0: "ok", 1: "bad"}
ROW_ID = "row_id"
CHANNELS = ("web", "shop")
MAX_AMOUNT = 10_000.0
# Rows a freshly loaded model is self-checked on (serving) and the start-up schema check uses.
EXAMPLE_ROWS = (
    {"amount": 0.0, "channel": "web"},
    {"amount": 12.5, "channel": "shop"},
    {"amount": 9999.0, "channel": "web"},
)

raw_schema = pa.DataFrameSchema(
    {
        "amount": pa.Column(float, pa.Check.in_range(0.0, MAX_AMOUNT), coerce=True),
        "channel": pa.Column(str, pa.Check.isin(list(CHANNELS))),
        RAW_LABEL: pa.Column("int64", pa.Check.isin([0, 1])),
    },
    strict=False,
)
feature_schema = pa.DataFrameSchema(
    {name: pa.Column(dtype) for name, dtype in FEATURE_DTYPES.items()}, strict=False
)
training_frame_schema = feature_schema.add_columns(
    {
        RAW_LABEL: pa.Column("int64", pa.Check.isin([0, 1])),
        "split": pa.Column(str, pa.Check.isin(["train", "valid", "test"])),
    }
)


class PredictRequest(BaseModel):
    """One tiny row."""

    model_config = ConfigDict(extra="forbid")

    amount: float = Field(..., ge=0.0, le=MAX_AMOUNT, description="Amount in euros.")
    channel: Literal["web", "shop"] = Field(..., description="Where it happened.")


def feature_fingerprint() -> str:
    frame = build_features(
        pd.DataFrame({"amount": [0.0, None, 5.5, -1.0], "channel": ["web", None, "shop", "x"]})
    )
    payload = json.dumps(frame.to_dict("records"), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
'''

FAMILIES = '''
"""The tiny use case brings its own model family and reason codes (no edit of training/)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def _logreg(params: dict[str, Any], seed: int, layout: Any) -> Pipeline:
    features = ColumnTransformer([("num", StandardScaler(), list(layout.numeric))])
    model = LogisticRegression(
        C=float(params["C"]), class_weight=params["class_weight"], random_state=seed
    )
    return Pipeline([("features", features), ("classifier", model)])


BUILDERS = {"tiny_logreg": _logreg}


def explain(model: Any, features: Any) -> list[list[dict[str, Any]]]:
    """Per row: each feature's coefficient x standardised value, strongest push up first."""
    scaled = model.named_steps["features"].transform(features)
    contributions = scaled * model.named_steps["classifier"].coef_[0]
    names = list(features.columns)
    out = []
    for row in np.asarray(contributions):
        order = np.argsort(-row)[:2]
        out.append([{"feature": names[i], "contribution": float(row[i])} for i in order])
    return out
'''

SEARCH_SPACES = """
builders: tiny_families
families:
  tiny_logreg:
    summary: logistic regression on standardised tiny features
    defaults: {C: 1.0, class_weight: null}
    search:
      C: {type: float, low: 0.01, high: 100.0, log: true}
      class_weight: {type: categorical, choices: [null, balanced]}
"""

REGISTRY = """
use_cases:
  tiny:
    kind: tabular
    description: A tiny tabular use case added from a temp folder
    features: tiny_features
    contract: tiny_contract
    model_name: tiny-model
    config_dir: tiny_config
    explain: tiny_families:explain
"""


def write_tiny_use_case(folder: Path, extra_config: dict[str, str] | None = None) -> Path:
    """Write the tiny use case into `folder` and return its registry file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny_features.py").write_text(textwrap.dedent(FEATURES).lstrip())
    (folder / "tiny_contract.py").write_text(textwrap.dedent(CONTRACT).lstrip())
    (folder / "tiny_families.py").write_text(textwrap.dedent(FAMILIES).lstrip())
    # The contract history serving checks a model's contract version against.
    (folder / "fingerprints.yaml").write_text("tiny:\n  tiny-v1: 0439491dcd0a7b11\n")
    config = folder / "tiny_config"
    config.mkdir(exist_ok=True)
    (config / "search_spaces.yaml").write_text(textwrap.dedent(SEARCH_SPACES).lstrip())
    for name, text in (extra_config or {}).items():
        (config / name).write_text(textwrap.dedent(text).lstrip())
    registry = folder / "usecases.yaml"
    registry.write_text(textwrap.dedent(REGISTRY).lstrip())
    return registry

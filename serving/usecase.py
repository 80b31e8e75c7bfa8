"""What serving needs to know about one use case, derived from its registry entry.

Serving is generic: it never imports a use case's modules by name. `ServedUseCase` bundles what
the scoring path, the model holder and the routes read: the raw and feature columns, how to turn
validated requests into feature columns, the rows a freshly loaded model is self-checked on,
the request models `/docs` shows, and the optional reason-code hook.

An *item* is what one prediction is made from: the text (a `text` use case: its one raw column)
or the request row as a dict (`tabular`: `PredictRequest.model_dump()`, so Spark, which passes
each raw row through the same model, hands `build_features` the same typed values).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from core.usecases import DEFAULT_USE_CASE, get_use_case

FeatureColumnsOf = Callable[[Sequence[Any]], dict[str, list[Any]]]
Explain = Callable[[Any, pd.DataFrame], list[list[dict[str, Any]]]]


@dataclass(frozen=True)
class ServedUseCase:
    """One use case as the serving process sees it (see the module docstring)."""

    name: str
    kind: str
    model_name: str
    contract_version: str
    raw_columns: tuple[str, ...]
    feature_columns: tuple[str, ...]
    feature_dtypes: dict[str, str]
    label_names: dict[int, str]
    request_model: type[BaseModel]
    batch_request_model: type[BaseModel]
    featurize: FeatureColumnsOf
    build_features: Callable[[pd.DataFrame], pd.DataFrame]
    check_items: tuple[Any, ...]
    explain: Explain | None = None
    description: str = ""

    def item_of(self, request: BaseModel) -> Any:
        """The item one validated PredictRequest stands for."""
        if self.kind == "text":
            return getattr(request, self.raw_columns[0])
        return request.model_dump()

    def raw_frame(self, items: Sequence[Any]) -> pd.DataFrame:
        """The raw-column frame `build_features` takes, for these items."""
        if self.kind == "text":
            return pd.DataFrame({self.raw_columns[0]: list(items)})
        return pd.DataFrame.from_records(list(items), columns=list(self.raw_columns))

    def feature_frame(self, columns: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
        """The DataFrame build_features would return for these feature columns (same dtypes)."""
        import numpy as np

        return pd.DataFrame(
            {
                name: np.array(columns[name], dtype=self.feature_dtypes[name])
                for name in self.feature_columns
            },
            copy=False,
        )


def _batch_model(name: str, request_model: type[BaseModel]) -> type[BaseModel]:
    model: type[BaseModel] = create_model(
        f"{name.title().replace('_', '')}BatchPredictRequest",
        __config__=ConfigDict(extra="forbid"),
        rows=(
            list[request_model],  # type: ignore[valid-type]
            Field(
                ...,
                min_length=1,
                description="Rows to score, each as in the single-row request. The server caps "
                "how many one request may carry (413 above).",
            ),
        ),
    )
    return model


def _featurizer(
    feats: Any, kind: str, raw_columns: tuple[str, ...], checks: tuple[Any, ...] = ()
) -> FeatureColumnsOf:
    columns = tuple(feats.FEATURE_COLUMNS)
    if kind == "text" and hasattr(feats, "featurize_texts"):
        # Column-wise fast path a text feature module may offer (same numbers, no DataFrame).
        fast: FeatureColumnsOf = feats.featurize_texts
        return fast

    def featurize(items: Sequence[Any]) -> dict[str, list[Any]]:
        if kind == "text":
            raw = pd.DataFrame({raw_columns[0]: list(items)})
        else:
            raw = pd.DataFrame.from_records(list(items), columns=list(raw_columns))
        frame = feats.build_features(raw)
        return {name: frame[name].tolist() for name in columns}

    rows_path = getattr(feats, "featurize_rows", None) if kind != "text" else None
    if rows_path is None:
        return featurize
    from serving.tabular_scoring import row_featurizer

    return row_featurizer(rows_path, featurize, columns, checks)


def served_use_case(name: str = DEFAULT_USE_CASE) -> ServedUseCase:
    """The ServedUseCase of a registered use case as registered now (cached per registry entry).

    The cache key holds the registry file and the model name, so an environment that changes
    them (another extra registry, DRIFTLOOP_MODEL_NAME_<NAME>) gets a fresh description.
    """
    uc = get_use_case(name)
    return _served(name, str(uc.registry_file), uc.model_name)


@lru_cache(maxsize=32)
def _served(name: str, registry_file: str, model_name: str) -> ServedUseCase:
    uc = get_use_case(name)
    feats, contract = uc.features, uc.contract
    raw_columns = tuple(contract.RAW_COLUMNS)
    if uc.kind == "text":
        checks = tuple(getattr(contract, "SELF_CHECK_ITEMS", ()))
    else:
        examples = getattr(contract, "EXAMPLE_ROWS", ())
        checks = tuple(contract.PredictRequest.model_validate(r).model_dump() for r in examples)
    batch_model = getattr(contract, "BatchRowsRequest", None) or _batch_model(
        name, contract.PredictRequest
    )
    return ServedUseCase(
        name=name,
        kind=uc.kind,
        model_name=model_name,
        contract_version=contract.FEATURE_CONTRACT_VERSION,
        raw_columns=raw_columns,
        feature_columns=tuple(feats.FEATURE_COLUMNS),
        feature_dtypes=dict(feats.FEATURE_DTYPES),
        label_names={int(k): str(v) for k, v in contract.LABEL_NAMES.items()},
        request_model=contract.PredictRequest,
        batch_request_model=batch_model,
        featurize=_featurizer(feats, uc.kind, raw_columns, checks),
        build_features=feats.build_features,
        check_items=checks,
        explain=uc.explain,
        description=uc.description,
    )

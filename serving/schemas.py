"""Response models of the operational endpoints (the prediction shapes live in contracts/)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Health(BaseModel):
    """Liveness: the process answers."""

    status: str = "ok"


class Readiness(BaseModel):
    """Readiness: a model is loaded and predictions will be answered."""

    status: str = "ready"
    model_version: str


class ShadowInfo(BaseModel):
    """Whether a challenger scores a share of live traffic in the background."""

    model_config = ConfigDict(protected_namespaces=())

    enabled: bool = Field(..., description="DRIFTLOOP_SHADOW_FRACTION > 0 on this server.")
    alias: str = Field(..., description="The alias whose version shadow-scores.")
    fraction: float = Field(..., description="Share of answered rows sampled (by request id).")
    version: str | None = Field(
        ..., description="The challenger version loaded now (None: the alias is not set)."
    )
    scored_rows: int = Field(
        ..., description="Rows this worker's shadow process scored so far (across restarts)."
    )


class ModelInfo(BaseModel):
    """Which model answers, where it came from, and how long it took to load."""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    alias: str
    version: str
    run_id: str | None
    feature_contract_version: str
    loaded_at: datetime
    load_seconds: float = Field(
        ..., description="Registry lookup + download + unpickle + scoring self-check."
    )
    scoring_path: str = Field(
        ...,
        description=(
            "direct: the fitted TF-IDF/scaling/logistic arithmetic run without scikit-learn's "
            "per-call checks; fast: ColumnTransformer branches driven directly; pipeline: the "
            "model's own predict_proba (used when neither reproduces it exactly)."
        ),
    )
    loads: int = Field(..., description="Models loaded by this process since it started.")
    decision_threshold: float = Field(
        ...,
        description=(
            "P(positive) at or above which the label is positive: the version's "
            "`decision_threshold` tag (chosen on the validation split), else the configured default."
        ),
    )
    last_reload_error: str | None = Field(
        default=None,
        description="Set when a newer alias target could not be loaded; this model still serves.",
    )
    shadow: ShadowInfo | None = Field(
        default=None, description="Shadow scoring by the challenger (see DRIFTLOOP_SHADOW_*)."
    )

    @classmethod
    def of(
        cls,
        model: Any,
        holder: Any,
        default_threshold: float,
        shadow: Any = None,
        shadow_alias: str = "challenger",
    ) -> ModelInfo:
        """What /model-info answers for a loaded model, its holder and its shadow scorer.

        `shadow` None means shadow scoring is off (DRIFTLOOP_SHADOW_FRACTION=0).
        """
        if shadow is not None:
            info = ShadowInfo(**vars(shadow.status()))
        else:
            info = ShadowInfo(
                enabled=False, alias=shadow_alias, fraction=0.0, version=None, scored_rows=0
            )
        return cls(
            decision_threshold=model.threshold(default_threshold),
            shadow=info,
            name=model.name,
            alias=model.alias,
            version=model.version,
            run_id=model.run_id,
            feature_contract_version=model.feature_contract_version,
            loaded_at=model.loaded_at,
            load_seconds=model.load_seconds,
            scoring_path=model.scoring_path,
            loads=holder.reloads,
            last_reload_error=holder.last_error,
        )


class ErrorDetail(BaseModel):
    """Shape of 503 answers (and of FastAPI's HTTPException answers in general)."""

    detail: str


class ReloadResult(BaseModel):
    """What POST /admin/reload did."""

    model_config = ConfigDict(protected_namespaces=())

    changed: bool = Field(..., description="A model was (re)loaded and swapped in.")
    previous_version: str | None
    version: str
    loaded_at: datetime
    load_seconds: float
    scoring_path: str

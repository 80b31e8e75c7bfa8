"""Per-use-case endpoints: `/v1/{use_case}/predict`, `/predict/batch`, `/feedback`, `/model-info`.

One set of routes per served use case, each with that use case's contract `PredictRequest` as
its body, so `/docs` shows every field with its range. Each use case has its own model holder
(its registered model's `champion`, hot-reloaded), its own micro-batcher, its self-checked
scorer, its own prediction-log tables and, when on, its shadow challenger; rate limits, body
and batch limits, request ids and the middleware are shared, and the metrics carry a
`use_case` label. The review endpoints (`/predict`, `/feedback`, ...) are aliases of
`/v1/reviews/...` served by the same holder and log.

Reason codes: when the registry names an `explain` hook for the use case, each prediction
carries `reasons` (strongest first), computed from the served model and the feature row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import anyio.to_thread
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.batching import MicroBatcher, Scored
from serving.lean_route import LeanRoute, request_only
from serving.lean_route import json_response as _json
from serving.model import ModelHolder
from serving.prediction_log import PredictionLog, UnknownRequestError
from serving.query import strict_bool
from serving.runtime import record_predictions
from serving.schemas import ErrorDetail, ModelInfo
from serving.shadow import ShadowScorer
from serving.tabular_scoring import fast_reasons
from serving.usecase import ServedUseCase

V1_PREFIX = "/v1"


class Reason(BaseModel):
    """One feature's push on the score (positive: towards label 1)."""

    feature: str
    contribution: float
    value: Any = None


class UseCasePrediction(BaseModel):
    label: int = Field(..., description="0 or 1, at the server's decision threshold")
    label_name: str
    probability: float = Field(..., ge=0.0, le=1.0, description="P(label 1)")
    model_version: str
    request_id: str
    reasons: list[Reason] | None = Field(
        default=None, description="Top reason codes, when the use case defines them."
    )
    features: dict[str, Any] | None = None


class UseCaseBatchResponse(BaseModel):
    model_version: str
    request_id: str
    predictions: list[UseCasePrediction]


class UseCaseFeedback(BaseModel):
    """The true label of an earlier prediction of this use case, once it is known."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(..., min_length=1, max_length=200, description="From a prediction.")
    label: Literal[0, 1] = Field(..., description="The observed outcome (0 or 1).")


class UseCaseFeedbackResponse(BaseModel):
    request_id: str
    label: int
    label_name: str
    received_at: datetime


@dataclass
class UseCaseRuntime:
    """What one served use case scores with; settings, limits and metrics live in the app's."""

    use_case: ServedUseCase
    holder: ModelHolder
    batcher: MicroBatcher
    prediction_log: PredictionLog | None = None
    shadow: ShadowScorer | None = None

    def log_predictions(
        self,
        request_ids: Sequence[str],
        items: Sequence[Any],
        scored: Scored,
        labels: Sequence[int],
    ) -> None:
        """Queue one prediction-log row per item (never blocks): raw columns, features, score."""
        log = self.prediction_log
        if log is None:
            return
        uc = self.use_case
        if uc.kind == "text":
            raws: list[tuple[Any, ...]] = [(item,) for item in items]
        else:
            raws = [tuple(item.get(c) for c in uc.raw_columns) for item in items]
        record_predictions(log, request_ids, raws, scored, labels)


def _body_errors(error: ValidationError) -> RequestValidationError:
    errors = []
    for item in error.errors(include_url=False):
        item = {**item, "loc": ("body", *item["loc"])}
        if isinstance(item.get("input"), bytes):
            item["input"] = item["input"].decode("utf-8", "replace")
        errors.append(item)
    return RequestValidationError(errors)


def _reasons(rt: UseCaseRuntime, scored: Scored) -> list[list[dict[str, Any]]] | None:
    explain = rt.use_case.explain
    if explain is None:
        return None
    names = rt.use_case.feature_columns
    frame = rt.use_case.feature_frame(
        {name: [row[i] for row in scored.feature_rows] for i, name in enumerate(names)}
    )
    return [list(r) for r in explain(scored.model.pipeline, frame)]


def _too_long(rt: UseCaseRuntime, items: Sequence[Any], limit: int, batch: bool) -> None:
    if rt.use_case.kind != "text":
        return
    for index, text in enumerate(items):
        if len(text) > limit:
            loc: tuple[Any, ...] = ("body", "rows", index, rt.use_case.raw_columns[0])
            if not batch:
                loc = ("body", rt.use_case.raw_columns[0])
            raise RequestValidationError(
                [
                    {
                        "type": "string_too_long",
                        "loc": loc,
                        "msg": f"String should have at most {limit} characters (got {len(text)})",
                        "ctx": {"max_length": limit},
                    }
                ]
            )


async def _score(
    request: Request,
    rt: UseCaseRuntime,
    items: Sequence[Any],
    route: str,
    item_ids: list[str],
    *,
    batch: bool,
) -> tuple[Scored, list[dict[str, Any]]]:
    from serving.routes import _rate_limit

    runtime = request.app.state.runtime
    settings = runtime.settings
    _too_long(rt, items, settings.max_text_chars, batch=batch)
    await _rate_limit(runtime, request, route, len(items))
    rt.holder.require()
    scored = await rt.batcher.score(tuple(items), client=request.scope.get("client"))
    threshold = scored.model.threshold(settings.decision_threshold)
    probabilities = [float(p) for p in scored.probabilities]
    labels = [int(p >= threshold) for p in probabilities]
    rt.log_predictions(item_ids, items, scored, labels)
    if rt.shadow is not None:
        rt.shadow.offer(item_ids, items, scored)
    reasons = None
    if rt.use_case.explain:
        # Proven fast reason codes (serving.tabular_scoring) cost well under a millisecond:
        # computed here; the explain hook on a feature frame goes to a worker thread.
        reasons = fast_reasons(scored.model.scorer, scored.feature_rows)
        if reasons is None:
            reasons = await anyio.to_thread.run_sync(_reasons, rt, scored)
    names = rt.use_case.label_names
    predictions = []
    for i, (item_id, label, probability) in enumerate(
        zip(item_ids, labels, probabilities, strict=True)
    ):
        row: dict[str, Any] = {
            "label": label,
            "label_name": names[label],
            "probability": probability,
            "model_version": scored.model.version,
            "request_id": item_id,
        }
        if reasons is not None:
            row["reasons"] = reasons[i]
        predictions.append(row)
    return scored, predictions


async def store_feedback(
    request: Request, rt: UseCaseRuntime, request_id: str, label: int, route: str
) -> int:
    """Store a label in the use case's feedback table; 404 for an unknown id (µs time stored)."""
    from serving.routes import _rate_limit

    runtime = request.app.state.runtime
    await _rate_limit(runtime, request, route, 1)
    prediction_log = rt.prediction_log
    if prediction_log is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="the prediction log is turned off (DRIFTLOOP_PREDICTION_LOG_ENABLED=false)",
        )
    settings = runtime.settings
    wait = 2 * settings.prediction_log_flush_seconds + 0.1 if settings.workers > 1 else 0.0
    try:
        ts_us: int = await anyio.to_thread.run_sync(
            lambda: prediction_log.add_feedback(request_id, label, wait_seconds=wait)
        )
    except UnknownRequestError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from error
    except Exception as error:  # the store's driver errors differ between SQLite and Postgres
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"could not store feedback in the prediction log: {error}",
        ) from error
    return ts_us


_ERRORS: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": ErrorDetail,
        "description": "No model of this use case is loaded yet (or it was refused).",
    },
    status.HTTP_413_CONTENT_TOO_LARGE: {
        "model": ErrorDetail,
        "description": "Body too large, or more rows than DRIFTLOOP_MAX_BATCH_REVIEWS.",
    },
    status.HTTP_429_TOO_MANY_REQUESTS: {
        "model": ErrorDetail,
        "description": "This client exceeded its rate limit; see Retry-After.",
    },
}
_VALIDATION_ERROR = {
    "description": "Validation Error",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(item, defs) for item in node]
    return node


def _body(model: type[BaseModel]) -> dict[str, Any]:
    # Pydantic refers to nested models as "#/$defs/..."; inside an OpenAPI document that path
    # does not exist, so nested models are inlined (request models are small and not recursive).
    schema = model.model_json_schema()
    return {
        "required": True,
        "content": {"application/json": {"schema": _inline_refs(schema, schema.get("$defs", {}))}},
    }


def add_use_case_routes(app: FastAPI, use_case: ServedUseCase) -> None:
    """Register `/v1/<name>/predict`, `/predict/batch` and `/model-info` on `app`."""
    name = use_case.name
    router = APIRouter(
        prefix=f"{V1_PREFIX}/{name}", tags=[f"use case: {name}"], route_class=LeanRoute
    )
    show_features = {
        "name": "return_features",
        "in": "query",
        "required": False,
        "schema": {"type": "boolean", "default": False},
        "description": "Also return the computed features (for skew checks).",
    }

    @router.post(
        "/predict",
        response_model=UseCasePrediction,
        response_model_exclude_none=True,
        responses=_ERRORS,
        summary=f"Score one {name} row",
        openapi_extra={
            "requestBody": _body(use_case.request_model),
            "responses": {"422": _VALIDATION_ERROR},
            "parameters": [show_features],
        },
        name=f"{name}_predict",
    )
    @request_only
    async def predict(request: Request) -> Response:
        return_features = strict_bool(request, "return_features")
        rt: UseCaseRuntime = request.app.state.use_cases[name]
        try:
            body = rt.use_case.request_model.model_validate_json(await request.body())
        except ValidationError as error:
            raise _body_errors(error) from None
        request_id: str = request.scope["state"]["request_id"]
        scored, predictions = await _score(
            request,
            rt,
            [rt.use_case.item_of(body)],
            f"/v1/{name}/predict",
            [request_id],
            batch=False,
        )
        payload = predictions[0]
        if return_features:
            payload["features"] = dict(
                zip(rt.use_case.feature_columns, scored.feature_rows[0], strict=True)
            )
        return _json(payload)

    @router.post(
        "/predict/batch",
        response_model=UseCaseBatchResponse,
        responses=_ERRORS,
        summary=f"Score several {name} rows in one call",
        openapi_extra={
            "requestBody": _body(use_case.batch_request_model),
            "responses": {"422": _VALIDATION_ERROR},
        },
        name=f"{name}_predict_batch",
    )
    @request_only
    async def predict_batch(request: Request) -> Response:
        rt: UseCaseRuntime = request.app.state.use_cases[name]
        try:
            body = rt.use_case.batch_request_model.model_validate_json(await request.body())
        except ValidationError as error:
            raise _body_errors(error) from None
        rows = list(body.rows)  # type: ignore[attr-defined]
        limit = request.app.state.runtime.settings.max_batch_reviews
        if len(rows) > limit:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                detail=f"{len(rows)} rows in one request; at most {limit} are accepted "
                "(DRIFTLOOP_MAX_BATCH_REVIEWS): split the request",
            )
        request_id: str = request.scope["state"]["request_id"]
        item_ids = [f"{request_id}-{i}" for i in range(len(rows))]
        items = [rt.use_case.item_of(row) for row in rows]
        scored, predictions = await _score(
            request, rt, items, f"/v1/{name}/predict/batch", item_ids, batch=True
        )
        return _json(
            {
                "model_version": scored.model.version,
                "request_id": request_id,
                "predictions": predictions,
            }
        )

    @router.get(
        "/model-info",
        response_model=ModelInfo,
        responses={503: _ERRORS[503]},
        summary=f"The {name} model being served",
        name=f"{name}_model_info",
    )
    async def model_info(request: Request) -> ModelInfo:
        rt: UseCaseRuntime = request.app.state.use_cases[name]
        model = rt.holder.require()
        settings = request.app.state.settings
        return ModelInfo.of(
            model, rt.holder, settings.decision_threshold, rt.shadow, settings.shadow_alias
        )

    @router.post(
        "/feedback",
        response_model=UseCaseFeedbackResponse,
        status_code=status.HTTP_201_CREATED,
        responses={
            status.HTTP_404_NOT_FOUND: {
                "model": ErrorDetail,
                "description": f"No {name} prediction with this request id was logged.",
            },
            status.HTTP_503_SERVICE_UNAVAILABLE: {
                "model": ErrorDetail,
                "description": "The prediction log is turned off or unreachable.",
            },
            status.HTTP_429_TOO_MANY_REQUESTS: _ERRORS[status.HTTP_429_TOO_MANY_REQUESTS],
            status.HTTP_413_CONTENT_TOO_LARGE: {
                "model": ErrorDetail,
                "description": "Body larger than DRIFTLOOP_MAX_BODY_BYTES.",
            },
            status.HTTP_400_BAD_REQUEST: {
                "model": ErrorDetail,
                "description": "The body could not be read as text (not UTF-8).",
            },
            status.HTTP_504_GATEWAY_TIMEOUT: {
                "model": ErrorDetail,
                "description": "No answer within DRIFTLOOP_REQUEST_TIMEOUT_SECONDS.",
            },
        },
        summary=f"Report the true outcome of an earlier {name} prediction",
        name=f"{name}_feedback",
    )
    async def feedback(body: UseCaseFeedback, request: Request) -> UseCaseFeedbackResponse:
        """Store the label durably (before answering); the latest label per request id counts."""
        rt: UseCaseRuntime = request.app.state.use_cases[name]
        ts_us = await store_feedback(
            request, rt, body.request_id, body.label, f"/v1/{name}/feedback"
        )
        return UseCaseFeedbackResponse(
            request_id=body.request_id,
            label=body.label,
            label_name=rt.use_case.label_names[body.label],
            received_at=datetime.fromtimestamp(ts_us / 1e6, UTC),
        )

    app.include_router(router)

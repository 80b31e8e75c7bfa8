"""HTTP endpoints: predict (one or many), feedback, liveness, readiness, model info, admin, metrics.

Features come from `features.reviews.featurize_texts`, the core of the
`build_features` function the Spark job maps over the training data, so a
review gets the same numbers online as it did offline. The feature frame is
not re-validated with Pandera per request (6-28 ms on one row against well
under 1 ms for computing it); the app checks the schema once at start-up
(`serving.app.check_feature_schema`) and every model load checks that the
scoring path reproduces the pipeline's own probabilities.

The prediction routes answer with pre-encoded JSON: their response models
still document the shape in OpenAPI, but FastAPI's per-response validation and
re-encoding of an object the route just built would only add latency.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from core.usecases import DEFAULT_USE_CASE, get_use_case
from serving.deps import AdminDep, HolderDep, ModelDep, RuntimeDep
from serving.lean_route import LeanRoute, request_only
from serving.lean_route import json_response as _json
from serving.metrics import CONTENT_TYPE
from serving.model import LoadedModel, ModelLoadError
from serving.query import strict_bool
from serving.ratelimit import RateLimiterUnavailableError, retry_after_header
from serving.runtime import ServingRuntime
from serving.schemas import ErrorDetail, Health, ModelInfo, Readiness, ReloadResult

# The unprefixed endpoints serve the default use case (review sentiment), with its contract's
# request and response models; /v1/<use case>/ serves every use case (serving.usecase_routes).
# The type checker reads the review contract's classes; at run time they come from the registry.
_DEFAULT = get_use_case(DEFAULT_USE_CASE)
if TYPE_CHECKING:
    from contracts.reviews import (
        BatchPredictRequest,
        BatchPredictResponse,
        FeedbackRequest,
        FeedbackResponse,
        PredictRequest,
        PredictResponse,
    )
else:
    BatchPredictRequest = _DEFAULT.contract.BatchPredictRequest
    BatchPredictResponse = _DEFAULT.contract.BatchPredictResponse
    FeedbackRequest = _DEFAULT.contract.FeedbackRequest
    FeedbackResponse = _DEFAULT.contract.FeedbackResponse
    PredictRequest = _DEFAULT.contract.PredictRequest
    PredictResponse = _DEFAULT.contract.PredictResponse
LABEL_NAMES: dict[int, str] = dict(_DEFAULT.contract.LABEL_NAMES)
FEATURE_COLUMNS: tuple[str, ...] = tuple(_DEFAULT.features.FEATURE_COLUMNS)

router = APIRouter(route_class=LeanRoute)


_NO_MODEL: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": ErrorDetail,
        "description": "No model is loaded yet (or the registry's model was refused).",
    }
}
_LIMITS: dict[int | str, dict[str, Any]] = {
    status.HTTP_413_CONTENT_TOO_LARGE: {
        "model": ErrorDetail,
        "description": "Body larger than DRIFTLOOP_MAX_BODY_BYTES, or too many reviews.",
    },
    status.HTTP_429_TOO_MANY_REQUESTS: {
        "model": ErrorDetail,
        "description": "This client exceeded its rate limit; see Retry-After.",
    },
    status.HTTP_504_GATEWAY_TIMEOUT: {
        "model": ErrorDetail,
        "description": "No answer within DRIFTLOOP_REQUEST_TIMEOUT_SECONDS.",
    },
}
_UNDECODABLE: dict[int | str, dict[str, Any]] = {
    status.HTTP_400_BAD_REQUEST: {
        "model": ErrorDetail,
        "description": "The body could not be read as text (not UTF-8).",
    }
}
_ADMIN: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"model": ErrorDetail, "description": "Missing or wrong key."},
    status.HTTP_403_FORBIDDEN: {
        "model": ErrorDetail,
        "description": "Admin endpoints are off (no DRIFTLOOP_ADMIN_API_KEY configured).",
    },
}


def _too_long(length: int, limit: int, loc: tuple[str | int, ...]) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "type": "string_too_long",
                "loc": loc,
                "msg": f"String should have at most {limit} characters (got {length})",
                "ctx": {"max_length": limit},
            }
        ]
    )


async def _rate_limit(runtime: ServingRuntime, request: Request, route: str, cost: int) -> None:
    limiter = runtime.rate_limiter
    if limiter is None:
        return
    client = request.client.host if request.client else "unknown"
    try:
        decision = await limiter.check(client, cost)
    except RateLimiterUnavailableError:
        runtime.metrics.rate_limiter_errors.inc()
        return
    if not decision.allowed:
        runtime.metrics.rate_limited.labels(route).inc()
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=(
                f"rate limit exceeded for client {client}: {limiter.rate:g} requests/s "
                f"(burst {limiter.burst}); retry after {decision.retry_after_seconds:.2f} s"
            ),
            headers={"Retry-After": retry_after_header(decision.retry_after_seconds)},
        )


_VALIDATION_ERROR = {
    "description": "Validation Error",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}
_PREDICT_BODY = {
    "required": True,
    "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
}


def _body_errors(error: ValidationError) -> RequestValidationError:
    """Pydantic's errors in FastAPI's shape (loc under "body"); raw bytes shown as text."""
    errors = []
    for item in error.errors(include_url=False):
        item = {**item, "loc": ("body", *item["loc"])}
        if isinstance(item.get("input"), bytes):
            item["input"] = item["input"].decode("utf-8", "replace")
        errors.append(item)
    return RequestValidationError(errors)


@router.post(
    "/predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    responses={**_NO_MODEL, **_LIMITS},
    summary="Score one review",
    tags=["predict"],
    openapi_extra={
        "requestBody": _PREDICT_BODY,
        "responses": {"422": _VALIDATION_ERROR},
        "parameters": [
            {
                "name": "return_features",
                "in": "query",
                "required": False,
                "schema": {"type": "boolean", "default": False},
                "description": "Also return the computed features (for skew checks).",
            }
        ],
    },
)
@request_only
async def predict(request: Request) -> Response:
    """P(positive) for one review from the champion model.

    Concurrent requests are scored together in one model call (micro-batching);
    each gets exactly the probability it would get alone. The model is taken
    after the body is validated, so bad input is a 422 even while no model is loaded.
    The body is parsed here with the contract model (what FastAPI would do,
    without its per-request dependency resolution).
    """
    return_features = strict_bool(request, "return_features")
    runtime: ServingRuntime = request.app.state.runtime
    settings = runtime.settings
    try:
        body = PredictRequest.model_validate_json(await request.body())
    except ValidationError as error:
        raise _body_errors(error) from None
    text = body.text
    if len(text) > settings.max_text_chars:
        raise _too_long(len(text), settings.max_text_chars, ("body", "text"))
    await _rate_limit(runtime, request, "/predict", 1)
    runtime.holder.require()
    scope = request.scope
    request_id: str = scope["state"]["request_id"]
    scored = await runtime.batcher.score((text,), client=scope.get("client"))
    probability = float(scored.probabilities[0])
    label = int(probability >= scored.model.threshold(settings.decision_threshold))
    runtime.log_predictions((request_id,), (text,), scored, (label,))
    if runtime.shadow is not None:
        runtime.shadow.offer((request_id,), (text,), scored)
    payload: dict[str, Any] = {
        "label": label,
        "label_name": LABEL_NAMES[label],
        "probability": probability,
        "model_version": scored.model.version,
        "request_id": request_id,
    }
    if return_features:
        payload["features"] = dict(zip(FEATURE_COLUMNS, scored.feature_rows[0], strict=True))
    return _json(payload)


@router.post(
    "/predict/batch",
    response_model=BatchPredictResponse,
    responses={**_NO_MODEL, **_LIMITS, **_UNDECODABLE},
    summary="Score several reviews in one call",
    tags=["predict"],
)
async def predict_batch(
    body: BatchPredictRequest, request: Request, runtime: RuntimeDep
) -> Response:
    """P(positive) for each review, in order; item i gets request id `<request id>-<i>`.

    At most DRIFTLOOP_MAX_BATCH_REVIEWS reviews per call (413 above); each
    review counts against the client's rate limit.
    """
    settings = runtime.settings
    texts = body.texts
    if len(texts) > settings.max_batch_reviews:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=(
                f"{len(texts)} reviews in one request; at most {settings.max_batch_reviews} are "
                "accepted (DRIFTLOOP_MAX_BATCH_REVIEWS): split the request"
            ),
        )
    for index, text in enumerate(texts):
        if len(text) > settings.max_text_chars:
            raise _too_long(len(text), settings.max_text_chars, ("body", "texts", index))
    await _rate_limit(runtime, request, "/predict/batch", len(texts))
    runtime.holder.require()
    request_id: str = request.state.request_id
    scored = await runtime.batcher.score(texts, client=request.scope.get("client"))
    threshold = scored.model.threshold(settings.decision_threshold)
    probabilities = [float(p) for p in scored.probabilities]
    labels = [int(p >= threshold) for p in probabilities]
    item_ids = [f"{request_id}-{i}" for i in range(len(texts))]
    runtime.log_predictions(item_ids, texts, scored, labels)
    if runtime.shadow is not None:
        runtime.shadow.offer(item_ids, texts, scored)
    return _json(
        {
            "model_version": scored.model.version,
            "request_id": request_id,
            "predictions": [
                {
                    "request_id": item_id,
                    "label": label,
                    "label_name": LABEL_NAMES[label],
                    "probability": probability,
                }
                for item_id, label, probability in zip(item_ids, labels, probabilities, strict=True)
            ],
        }
    )


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        status.HTTP_404_NOT_FOUND: {
            "model": ErrorDetail,
            "description": "No prediction with this request id was logged.",
        },
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "model": ErrorDetail,
            "description": "The prediction log is turned off or unreachable.",
        },
        **_LIMITS,
        **_UNDECODABLE,
    },
    summary="Report the true label of an earlier prediction",
    tags=["predict"],
)
async def feedback(body: FeedbackRequest, request: Request) -> FeedbackResponse:
    """Store the label durably (before answering); the latest label per request id counts.

    The same as `POST /v1/reviews/feedback`.
    """
    from serving.usecase_routes import store_feedback

    rt = request.app.state.use_cases[DEFAULT_USE_CASE]
    ts_us = await store_feedback(request, rt, body.request_id, body.label, "/feedback")
    return FeedbackResponse(
        request_id=body.request_id,
        label=body.label,
        label_name=LABEL_NAMES[body.label],
        received_at=datetime.fromtimestamp(ts_us / 1e6, UTC),
    )


@router.get("/health", response_model=Health, summary="Liveness", tags=["ops"])
async def health() -> Health:
    """200 while the process runs, model or not."""
    return Health()


@router.get(
    "/ready", response_model=Readiness, responses=_NO_MODEL, summary="Readiness", tags=["ops"]
)
async def ready(holder: HolderDep) -> Readiness:
    """200 once a model is loaded; 503 with the reason before that."""
    model = holder.current
    if model is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=holder.not_ready_reason())
    return Readiness(model_version=model.version)


@router.get(
    "/model-info",
    response_model=ModelInfo,
    responses=_NO_MODEL,
    summary="The model being served",
    tags=["ops"],
)
async def model_info(model: ModelDep, holder: HolderDep, runtime: RuntimeDep) -> ModelInfo:
    return ModelInfo.of(
        model,
        holder,
        runtime.settings.decision_threshold,
        runtime.shadow,
        runtime.settings.shadow_alias,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["ops"],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format."}},
)
async def metrics(runtime: RuntimeDep) -> Response:
    for prediction_log in runtime.prediction_logs:
        runtime.metrics.log_queue_depth.labels(prediction_log.schema.predictions_table).set(
            prediction_log.depth
        )
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)


@router.post(
    "/admin/reload",
    response_model=ReloadResult,
    responses={**_ADMIN, **_NO_MODEL},
    dependencies=[AdminDep],
    summary="Re-check the alias now and hot-swap the model",
    tags=["admin"],
)
async def admin_reload(
    runtime: RuntimeDep,
    force: Annotated[
        bool, Query(description="Reload even if the alias still points at the same version.")
    ] = False,
) -> ReloadResult:
    """Load `<model>@<alias>` in the background and swap it in; requests keep being answered.

    Needs the `X-API-Key` header. 503 when the registry's model cannot be
    loaded (the previous model, if any, keeps serving).
    """
    settings = runtime.settings
    holder = runtime.holder
    previous = holder.current
    try:
        loaded: LoadedModel | None
        if force:
            loaded = await anyio.to_thread.run_sync(
                holder.force_reload, settings.model_name, settings.model_alias
            )
        else:
            loaded = await anyio.to_thread.run_sync(
                holder.reload_if_changed, settings.model_name, settings.model_alias
            )
    except ModelLoadError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(error)) from error
    model = loaded or holder.require()
    return ReloadResult(
        changed=loaded is not None,
        previous_version=previous.version if previous else None,
        version=model.version,
        loaded_at=model.loaded_at,
        load_seconds=model.load_seconds,
        scoring_path=model.scoring_path,
    )

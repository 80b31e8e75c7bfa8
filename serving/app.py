"""The FastAPI application: factory, lifespan, wiring.

`create_app()` builds an app from `ServingSettings` (read from the environment
when not given), so uvicorn can start several workers from the import string
`serving.app:create_app` with `factory=True`. Start-up never fails for lack of
a model: the lifespan starts a background loader and waits a bounded time for
its first attempt; until a model is in, `/health` answers 200 and `/ready` and
`/predict` answer 503 with the reason. That lets the demo start the API before
the first training run has registered a champion.

Shutdown (uvicorn runs it on SIGTERM, after in-flight requests finished):
score whatever is still queued in the micro-batcher, stop the model loader,
have the shadow process score and write what was sampled and stop it, write
every queued prediction-log row, close the rate limiter's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import numpy as np
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pandera.errors import SchemaError, SchemaErrors

from core.usecases import DEFAULT_USE_CASE, get_use_case, use_case_names
from serving.batching import BatchObserver, MicroBatcher
from serving.config import ServingSettings
from serving.metrics import ServingMetrics
from serving.middleware import ServingMiddleware
from serving.model import LoadedModel, ModelHolder, ModelNotLoadedError, keep_model_loaded
from serving.prediction_log import PredictionLog, log_schema
from serving.ratelimit import build_rate_limiter
from serving.routes import router
from serving.runtime import ServingRuntime
from serving.shadow import ShadowScorer
from serving.shadow_child import ShadowChildConfig
from serving.shadow_process import ShadowProcess
from serving.usecase import served_use_case
from serving.usecase_routes import UseCaseRuntime, add_use_case_routes

log = logging.getLogger(__name__)

_SELF_CHECK_TEXTS = (
    "",
    "A GREAT film!!! <br />Not boring at all... sooo good?",
    "caf\u00e9 \u2014 ok",
)


class FeatureSchemaError(RuntimeError):
    """A use case's build_features no longer produces what its feature_schema describes."""


def check_feature_schema(use_case: str = DEFAULT_USE_CASE) -> None:
    """Validate build_features' output against the contract once, at start-up.

    Per request this check costs far more than computing the features, so it
    runs here on a few awkward inputs (text use cases) or the contract's
    EXAMPLE_ROWS (tabular): a server whose feature code and contract disagree
    refuses to start instead of serving skewed features.
    """
    uc = get_use_case(use_case)
    served = served_use_case(use_case)
    items = (
        list(_SELF_CHECK_TEXTS) if uc.kind == "text" else [dict(row) for row in served.check_items]
    )
    if not items:
        return
    frame = uc.features.build_features(served.raw_frame(items))
    try:
        uc.contract.feature_schema.validate(frame, lazy=True)
    except (SchemaError, SchemaErrors) as error:
        raise FeatureSchemaError(
            f"{uc.feature_module}.build_features does not satisfy {uc.contract_module}."
            f"feature_schema ({served.contract_version}): {error}"
        ) from error


def served_use_case_names(settings: ServingSettings) -> list[str]:
    """The use cases this server serves: DRIFTLOOP_USE_CASES, else every registered one."""
    wanted = [n.strip() for n in settings.use_cases.split(",") if n.strip()]
    names = wanted or use_case_names()
    for name in names:
        get_use_case(name)  # an unknown name fails start-up with the registered ones listed
    return [DEFAULT_USE_CASE, *[n for n in names if n != DEFAULT_USE_CASE]]


@contextlib.contextmanager
def _mlflow_client_env(settings: ServingSettings) -> Iterator[None]:
    """Configure MLflow's client for a server process (it reads these per call); restore on exit.

    Registry retries and timeout come from the settings; download progress bars
    are turned off because they only clutter the server log.
    """
    wanted = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.registry_max_retries),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(settings.registry_timeout_seconds),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    previous = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def _no_model(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


def _printable(value: Any) -> Any:
    """Echoed input made safe for a UTF-8 JSON answer (raw bytes, lone surrogates)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {key: _printable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(item) for item in value]
    return value


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 shape; its default handler fails (500) on input it cannot encode."""
    assert isinstance(error, RequestValidationError)  # registered for this class only
    return JSONResponse(
        {"detail": _printable(jsonable_encoder(_printable(list(error.errors()))))},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ServingSettings = app.state.settings
    holder: ModelHolder = app.state.holder
    runtime: ServingRuntime = app.state.runtime
    extra: dict[str, UseCaseRuntime] = {
        name: rt for name, rt in app.state.use_cases.items() if rt.holder is not holder
    }
    for name in app.state.use_cases:
        check_feature_schema(name)
    for prediction_log in runtime.prediction_logs:
        await anyio.to_thread.run_sync(prediction_log.start)
    shadow_process: ShadowProcess | None = app.state.shadow_process
    with _mlflow_client_env(settings):
        if shadow_process is not None:
            shadow_process.start()
        first_attempt_done = asyncio.Event()
        loader = asyncio.create_task(
            keep_model_loaded(
                holder,
                settings.model_name,
                settings.model_alias,
                retry_seconds=settings.load_retry_seconds,
                reload_seconds=settings.reload_interval_seconds,
                first_attempt_done=first_attempt_done,
            ),
            name="driftloop-model-loader",
        )
        loaders = [loader]
        # A use case that may never be trained on this deployment (no champion yet) is looked up
        # at the alias-poll pace, not every few seconds, so its absence does not flood the log.
        extra_retry = max(settings.load_retry_seconds, settings.reload_interval_seconds)
        for name, rt in extra.items():
            loaders.append(
                asyncio.create_task(
                    keep_model_loaded(
                        rt.holder,
                        rt.use_case.model_name,
                        settings.model_alias,
                        retry_seconds=extra_retry,
                        reload_seconds=settings.reload_interval_seconds,
                        first_attempt_done=asyncio.Event(),
                    ),
                    name=f"driftloop-model-loader-{name}",
                )
            )
        try:
            await asyncio.wait_for(first_attempt_done.wait(), settings.startup_wait_seconds)
        except TimeoutError:
            log.warning(
                "no answer from the registry within %.0f s; accepting traffic, still loading",
                settings.startup_wait_seconds,
            )
        try:
            yield
        finally:
            await runtime.batcher.drain()
            for rt in extra.values():
                await rt.batcher.drain()
            for task in loaders:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if shadow_process is not None:
                await anyio.to_thread.run_sync(
                    shadow_process.stop, settings.graceful_shutdown_seconds
                )
            for prediction_log in runtime.prediction_logs:
                await anyio.to_thread.run_sync(
                    prediction_log.close, settings.graceful_shutdown_seconds
                )
            if runtime.rate_limiter is not None:
                await runtime.rate_limiter.close()


def _watch_model(
    holder: ModelHolder, metrics: ServingMetrics, use_case: str = DEFAULT_USE_CASE
) -> None:
    """Report loads and failed loads of `holder` (serving `use_case`) in the metrics."""

    def loaded(model: LoadedModel) -> None:
        metrics.reloads.labels("loaded").inc()
        metrics.set_model(
            model.name,
            model.version,
            model.loaded_at.timestamp(),
            model.load_seconds,
            model.alias_set_at.timestamp() if model.alias_set_at else None,
            use_case=use_case,
        )

    def failed(reason: str) -> None:
        metrics.reloads.labels("failed").inc()

    holder.on_loaded = loaded
    holder.on_failed = failed
    if holder.current is not None:
        loaded(holder.current)


def _batch_observer(
    metrics: ServingMetrics,
    holder: ModelHolder,
    default_threshold: float,
    use_case: str = DEFAULT_USE_CASE,
) -> BatchObserver:
    """Count each batch's predicted labels at the threshold the answers used.

    That is the served version's own `decision_threshold` (the configured one only for a
    version without the tag), read from the model the metrics name as the version, so the
    `driftloop_predictions_total` labels agree with the labels the API returned.
    """

    def observe(rows: int, seconds: float, probabilities: np.ndarray) -> None:
        model = holder.current
        threshold = default_threshold if model is None else model.threshold(default_threshold)
        metrics.observe_batch(rows, seconds, probabilities.tolist(), threshold, use_case)

    return observe


def _prediction_log(
    settings: ServingSettings, metrics: ServingMetrics, use_case: str
) -> PredictionLog | None:
    """The writer of one use case's prediction table; None when logging is off."""
    if not settings.prediction_log_enabled:
        return None
    schema = log_schema(use_case)
    return PredictionLog(
        settings.prediction_log_url,
        schema=schema,
        flush_seconds=settings.prediction_log_flush_seconds,
        batch_rows=settings.prediction_log_batch_rows,
        max_queue=settings.prediction_log_max_queue,
        on_written=metrics.log_written.inc,
        on_dropped=metrics.log_dropped.inc,
        on_depth=metrics.log_queue_depth.labels(schema.predictions_table).set,
    )


def _shadow(
    settings: ServingSettings, metrics: ServingMetrics, use_case: str, model_name: str
) -> ShadowScorer | None:
    """The use case's side of shadow scoring, when DRIFTLOOP_SHADOW_FRACTION > 0."""
    if settings.shadow_fraction <= 0.0:
        return None
    return ShadowScorer(
        served_use_case(use_case),
        model_name=model_name,
        fraction=settings.shadow_fraction,
        alias=settings.shadow_alias,
        metrics=metrics,
        max_queue=settings.shadow_max_queue,
        batch_rows=settings.shadow_batch_rows,
    )


def _shadow_process(
    settings: ServingSettings, metrics: ServingMetrics, scorers: list[ShadowScorer]
) -> ShadowProcess | None:
    """This worker's shadow-scoring child for every use case with a shadow scorer."""
    if not scorers:
        return None
    config = ShadowChildConfig(
        use_cases=tuple((s.use_case.name, s.model_name) for s in scorers),
        alias=settings.shadow_alias,
        tracking_uri=settings.mlflow_tracking_uri,
        default_threshold=settings.decision_threshold,
        # The challenger's alias is looked up at the pace of the other use cases' champions.
        poll_seconds=max(settings.load_retry_seconds, settings.reload_interval_seconds),
        nice=settings.shadow_nice,
        log_enabled=settings.prediction_log_enabled,
        log_url=settings.prediction_log_url,
        log_flush_seconds=settings.prediction_log_flush_seconds,
        log_batch_rows=settings.prediction_log_batch_rows,
        log_max_queue=settings.prediction_log_max_queue,
        log_level=settings.log_level,
        log_json=settings.log_json,
        environment={
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.registry_max_retries),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(settings.registry_timeout_seconds),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        },
    )
    return ShadowProcess(
        config,
        scorers,
        metrics,
        batch_rows=settings.shadow_batch_rows,
        interval_seconds=settings.shadow_interval_seconds,
    )


def create_app(
    settings: ServingSettings | None = None, holder: ModelHolder | None = None
) -> FastAPI:
    """A ready-to-serve app; `settings` default to the environment."""
    settings = settings or ServingSettings()
    # FastAPIOffline: /docs with Swagger UI served by this app, not from a CDN.
    app = FastAPIOffline(
        title="driftloop",
        version=served_use_case(DEFAULT_USE_CASE).contract_version,
        summary="Scores each registered use case with its champion model.",
        description=(
            f"Serves `{settings.model_name}@{settings.model_alias}` (the `{DEFAULT_USE_CASE}` "
            "use case, also under the unprefixed endpoints) and every other served use case's "
            f"`<model>@{settings.model_alias}` under `/v1/<use case>/`. Features are computed "
            "with the same feature modules training uses."
        ),
        lifespan=lifespan,
    )
    metrics = ServingMetrics()
    holder = holder or ModelHolder(settings.mlflow_tracking_uri, gc_freeze=settings.gc_freeze)
    _watch_model(holder, metrics)
    prediction_log = _prediction_log(settings, metrics, DEFAULT_USE_CASE)
    runtime = ServingRuntime(
        settings=settings,
        holder=holder,
        metrics=metrics,
        batcher=MicroBatcher(
            holder,
            max_size=settings.batch_max_size,
            max_wait_seconds=settings.batch_max_wait_ms / 1000.0,
            on_batch=_batch_observer(metrics, holder, settings.decision_threshold),
        ),
        prediction_log=prediction_log,
        rate_limiter=build_rate_limiter(
            settings.rate_limit_per_second,
            settings.rate_limit_burst,
            settings.redis_url,
            prefix=settings.rate_limit_redis_prefix,
        ),
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.runtime = runtime
    app.add_middleware(
        ServingMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        timeout_seconds=settings.request_timeout_seconds,
        access_log_enabled=settings.access_log,
    )
    app.add_exception_handler(ModelNotLoadedError, _no_model)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(router)
    app.state.use_cases = _use_case_runtimes(settings, runtime)
    app.state.shadow_process = _shadow_process(
        settings,
        metrics,
        [rt.shadow for rt in app.state.use_cases.values() if rt.shadow is not None],
    )
    for name in app.state.use_cases:
        add_use_case_routes(app, served_use_case(name))
    return app


def _use_case_runtimes(
    settings: ServingSettings, runtime: ServingRuntime
) -> dict[str, UseCaseRuntime]:
    """The default use case on the app's own holder, batcher and log; each other one on its own.

    Every use case gets its micro-batcher (reporting to the metrics under its name), its
    prediction-log tables and, when shadow scoring is on, its shadow scorer (the shadow table
    is written by the worker's shadow process); the runtime keeps the list of logs so the
    lifespan starts and drains them all.
    """
    metrics = runtime.metrics
    logs = [log for log in (runtime.prediction_log,) if log is not None]
    shadow = _shadow(settings, metrics, DEFAULT_USE_CASE, settings.model_name)
    runtime.shadow = shadow
    runtimes = {
        DEFAULT_USE_CASE: UseCaseRuntime(
            use_case=served_use_case(DEFAULT_USE_CASE),
            holder=runtime.holder,
            batcher=runtime.batcher,
            prediction_log=runtime.prediction_log,
            shadow=shadow,
        )
    }
    for name in served_use_case_names(settings)[1:]:
        holder = ModelHolder(
            settings.mlflow_tracking_uri, gc_freeze=settings.gc_freeze, use_case=name
        )
        _watch_model(holder, metrics, name)
        batcher = MicroBatcher(
            holder,
            max_size=settings.batch_max_size,
            max_wait_seconds=settings.batch_max_wait_ms / 1000.0,
            on_batch=_batch_observer(metrics, holder, settings.decision_threshold, name),
        )
        prediction_log = _prediction_log(settings, metrics, name)
        shadow = _shadow(settings, metrics, name, served_use_case(name).model_name)
        logs += [prediction_log] if prediction_log is not None else []
        runtimes[name] = UseCaseRuntime(
            served_use_case(name), holder, batcher, prediction_log, shadow
        )
    runtime.prediction_logs = logs
    return runtimes

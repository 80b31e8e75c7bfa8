"""Settings of the prediction server, read once from the environment.

One `ServingSettings` object configures the whole process: which registered
model and alias to serve, where the registry is, how uvicorn binds, and how
often the server retries or re-checks the registry. Every field can be set with
`DRIFTLOOP_<FIELD>` (e.g. `DRIFTLOOP_PORT=9000`); the registry address is the
standard `MLFLOW_TRACKING_URI`, so the same variable configures training and
serving.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.settings import get_settings
from core.usecases import DEFAULT_USE_CASE, get_use_case

# The default use case's limit (the review endpoints' text); the contract's, not ours to loosen.
MAX_TEXT_CHARS: int = int(
    getattr(get_use_case(DEFAULT_USE_CASE).contract, "MAX_TEXT_CHARS", 20_000)
)
# Most reviews in one batch request: the contract's maxItems; a server may only lower it.
MAX_BATCH_REVIEWS: int = int(
    getattr(get_use_case(DEFAULT_USE_CASE).contract, "MAX_BATCH_REVIEWS", 100)
)

PREDICTION_LOG_URL_ENV = "DRIFTLOOP_PREDICTION_LOG_URL"


def _default_model_name() -> str:
    return get_settings().model_name


def _default_tracking_uri() -> str:
    return get_settings().mlflow_tracking_uri


class ServingSettings(BaseSettings):
    """Everything the server needs to know, with defaults for the one-machine demo."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_",
        extra="ignore",
        populate_by_name=True,
        protected_namespaces=(),
    )

    model_name: str = Field(
        default_factory=_default_model_name,
        min_length=1,
        description="Registered model to serve (shared default with training).",
    )
    model_alias: str = Field(default="champion", min_length=1)
    use_cases: str = Field(
        default="",
        description=(
            "Comma-separated use cases served under /v1/<name>/ (default: every registered "
            "one); the default use case is always served, also by the unprefixed endpoints."
        ),
    )
    mlflow_tracking_uri: str = Field(
        default_factory=_default_tracking_uri,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        description="Registry and artifact store; read from MLFLOW_TRACKING_URI as-is.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    max_text_chars: int = Field(
        default=MAX_TEXT_CHARS,
        ge=1,
        description="Longest review accepted; may tighten, never loosen, the contract limit.",
    )
    decision_threshold: float = Field(
        default=0.5,
        gt=0.0,
        lt=1.0,
        description=(
            "P(positive) at or above which the label is positive, for a model version without "
            "a `decision_threshold` tag; a tagged version (training chooses it) uses its own."
        ),
    )
    reload_interval_seconds: float = Field(
        default=30.0,
        ge=0.0,
        description=(
            "Once a model is loaded, re-check the alias this often and hot-swap a new version; "
            "0 turns it off (POST /admin/reload still works)."
        ),
    )
    load_retry_seconds: float = Field(
        default=5.0,
        gt=0.0,
        description="While no model is loaded, try the registry again this often.",
    )
    registry_max_retries: int = Field(
        default=2,
        ge=0,
        validation_alias=AliasChoices("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "registry_max_retries"),
        description=(
            "HTTP retries per registry call. MLflow's default (7, exponential back-off) holds "
            "one failed lookup for minutes; the loader retries on its own schedule instead."
        ),
    )
    registry_timeout_seconds: int = Field(
        default=10,
        ge=1,
        validation_alias=AliasChoices("MLFLOW_HTTP_REQUEST_TIMEOUT", "registry_timeout_seconds"),
    )
    startup_wait_seconds: float = Field(
        default=30.0,
        ge=0.0,
        description=(
            "How long start-up waits for the first load attempt before accepting traffic "
            "(the attempt carries on in the background)."
        ),
    )

    worker_healthcheck_timeout_seconds: int = Field(
        default=60,
        ge=1,
        description=(
            "With several workers, uvicorn's supervisor restarts a worker that does not answer "
            "its ping within this many seconds. Uvicorn's own 5 s kills workers still importing "
            "on a busy machine, over and over, so none ever starts."
        ),
    )
    graceful_shutdown_seconds: float = Field(
        default=30.0,
        gt=0.0,
        description="On SIGTERM, wait this long for in-flight requests before closing them.",
    )
    gc_freeze: bool = Field(
        default=True,
        description=(
            "gc.freeze() after each model load, so the cyclic collector stops re-scanning the "
            "model's millions of objects (a full collection otherwise costs hundreds of ms)."
        ),
    )

    # ---- micro-batching ------------------------------------------------------------
    batch_max_size: int = Field(
        default=64,
        ge=1,
        description="Most reviews scored in one model call (a /predict/batch request is never split).",
    )
    batch_max_wait_ms: float = Field(
        default=2.0,
        ge=0.0,
        le=50.0,
        description=(
            "Under concurrent load, wait at most this long to fill a batch; a lone request is "
            "scored at once (0 = only ever take what is already queued)."
        ),
    )

    # ---- limits and safety ---------------------------------------------------------
    max_batch_reviews: int = Field(
        default=MAX_BATCH_REVIEWS,
        ge=1,
        le=MAX_BATCH_REVIEWS,
        description="Most reviews accepted by one POST /predict/batch (413 above); may tighten, "
        "never loosen, the contract's maxItems.",
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body accepted (413 above)."
    )
    request_timeout_seconds: float = Field(
        default=10.0, gt=0.0, description="A request still unanswered after this gets a 504."
    )
    rate_limit_per_second: float = Field(
        default=1000.0,
        ge=0.0,
        description="Sustained requests (reviews, for batches) per client per second; 0 = off.",
    )
    rate_limit_burst: int = Field(
        default=2000, ge=1, description="Requests a client may send at once before being paced."
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "DRIFTLOOP_REDIS_URL", "redis_url"),
        description="When set, rate limits are shared by every worker and replica through Redis.",
    )
    rate_limit_redis_prefix: str = Field(
        default="driftloop:ratelimit:",
        min_length=1,
        description="Key prefix of the shared buckets (one per deployment sharing a Redis).",
    )
    admin_api_key: SecretStr | None = Field(
        default=None,
        description="Key for /admin/* (header X-API-Key); without one the admin endpoints are off.",
    )

    # ---- prediction log ------------------------------------------------------------
    prediction_log_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(PREDICTION_LOG_URL_ENV, "prediction_log_url"),
        description=(
            "sqlite:////abs/path.db or postgresql://user@host:port/db; default "
            "sqlite under DRIFTLOOP_HOME (predictions.db)."
        ),
    )
    shadow_fraction: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description=(
            "Share of answered rows also scored by the version holding shadow_alias, in a "
            "low-priority child process of each worker (0 = off). Sampled by request id, so a "
            "request is in or out for good."
        ),
    )
    shadow_alias: str = Field(default="challenger", min_length=1)
    shadow_max_queue: int = Field(
        default=10_000,
        ge=1,
        description=(
            "Sampled rows waiting to be sent to the shadow process, per use case; beyond "
            "this they are skipped (counted)."
        ),
    )
    shadow_batch_rows: int = Field(
        default=256,
        ge=1,
        description="Rows per batch sent to the shadow process (one message, one model call).",
    )
    shadow_interval_seconds: float = Field(
        default=0.5,
        gt=0.0,
        le=60.0,
        description=(
            "How often the sampled rows are sent to the shadow process (sooner when a full "
            "batch is queued)."
        ),
    )
    shadow_nice: int = Field(
        default=19,
        ge=0,
        le=19,
        description=(
            "Added to the worker's niceness for its shadow-scoring child process (the OS caps "
            "niceness at 19), so on a busy machine it gets only CPU the request path leaves over."
        ),
    )
    prediction_log_enabled: bool = True
    prediction_log_flush_seconds: float = Field(default=0.25, gt=0.0, le=10.0)
    prediction_log_batch_rows: int = Field(default=1000, ge=1)
    prediction_log_max_queue: int = Field(
        default=200_000,
        ge=1,
        description="Rows held in memory while the store is unreachable; beyond this they are dropped (counted).",
    )

    # ---- logs ----------------------------------------------------------------------
    log_level: str = Field(default="INFO")
    log_json: bool = Field(default=True, description="One JSON object per log line.")
    access_log: bool = Field(default=True, description="One log line per request.")

    @field_validator("max_text_chars")
    @classmethod
    def _within_contract(cls, value: int) -> int:
        if value > MAX_TEXT_CHARS:
            raise ValueError(
                f"DRIFTLOOP_MAX_TEXT_CHARS={value} exceeds the contract limit "
                f"of the {DEFAULT_USE_CASE} contract, MAX_TEXT_CHARS={MAX_TEXT_CHARS}; the request model rejects "
                "longer texts anyway, so set a value <= that limit"
            )
        return value

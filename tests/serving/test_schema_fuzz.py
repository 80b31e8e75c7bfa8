"""Property-based run against the app's own OpenAPI schema: no input makes it answer 5xx.

Schemathesis generates requests for every documented operation, valid ones
and invalid ones (wrong types, missing or extra fields, odd strings, bad
query values), and each answer is checked: never a server error, a
documented status code and content type, a body matching the documented
response schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving.app import create_app
from serving.config import ServingSettings

# Only the review model has a champion in this module's registry; another use case would
# answer every request with a (documented) 503, which is not what this fuzz run is about.
FUZZED_USE_CASES = "reviews"
SPEC = create_app(
    ServingSettings(
        model_name="spec-only",
        mlflow_tracking_uri="http://127.0.0.1:9",
        prediction_log_enabled=False,
        use_cases=FUZZED_USE_CASES,
    )
).openapi()
OPERATIONS = [(path, method.upper()) for path, item in SPEC["paths"].items() for method in item]
# Invalid data can only be generated for operations that take some input.
CASES = [
    (path, method, mode)
    for path, method in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE
    or {"parameters", "requestBody"} & set(SPEC["paths"][path][method.lower()])
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_app(
    champion_name: str, settings_for: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FastAPI]:
    log = Path(tmp_path_factory.mktemp("fuzz")) / "predictions.db"
    app = create_app(
        settings_for(
            champion_name,
            prediction_log_url=f"sqlite:///{log}",
            admin_api_key="fuzz-key",
            reload_interval_seconds=0.0,
            use_cases=FUZZED_USE_CASES,
        )
    )
    try:
        yield app
    finally:
        asgi.shutdown_lifespans()  # schemathesis' client started the app's lifespan


def test_every_route_is_fuzzed() -> None:
    assert {"/predict", "/predict/batch", "/feedback", "/admin/reload", "/metrics"} <= {
        path for path, _ in OPERATIONS
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "method", "mode"), CASES, ids=[f"{m} {p} {g.value}" for p, m, g in CASES]
)
def test_no_generated_request_gets_a_server_error(
    fuzz_app: FastAPI, path: str, method: str, mode: GenerationMode
) -> None:
    operation = schemathesis.openapi.from_dict(SPEC)[path][method]
    statuses: list[int] = []

    @settings(
        max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case: Any) -> None:
        response = case.call(app=fuzz_app)
        statuses.append(response.status_code)
        assert response.status_code < 500, (case.body, response.text)
        case.validate_response(response, checks=CHECKS)

    exercise()
    assert statuses

"""The prediction routes' lean request path: same answers, same errors, same document.

The prediction endpoints are called without FastAPI's dependency resolution
(`serving.lean_route`); these tests pin what must not change with that: the 422 bodies
for bad input, errors raised by the endpoint, the request id header, the OpenAPI
operations, and that the generic machinery is really skipped.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import fastapi.routing
import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.config import ServingSettings
from serving.lean_route import LeanRoute, request_only
from serving.logs import iso_millis
from serving.middleware import _with_header, new_request_id


@pytest.fixture(scope="module")
def no_model() -> TestClient:
    """An app with no model (no lifespan run): bad input must still be a 422."""
    app = create_app(
        ServingSettings(
            model_name="no-such-model",
            mlflow_tracking_uri="http://127.0.0.1:9",
            prediction_log_enabled=False,
            use_cases="reviews,credit",
        )
    )
    return TestClient(app)


PREDICT_PATHS = ["/predict", "/v1/reviews/predict"]


@pytest.mark.parametrize("path", PREDICT_PATHS)
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b"{",
            [
                {
                    "type": "json_invalid",
                    "loc": ["body"],
                    "msg": "Invalid JSON: EOF while parsing an object at line 1 column 1",
                    "input": "{",
                    "ctx": {"error": "EOF while parsing an object at line 1 column 1"},
                }
            ],
        ),
        (
            b"[]",
            [
                {
                    "type": "model_type",
                    "loc": ["body"],
                    "msg": "Input should be an object",
                    "input": [],
                    "ctx": {"class_name": "PredictRequest"},
                }
            ],
        ),
        (
            b'{"text": ""}',
            [
                {
                    "type": "string_too_short",
                    "loc": ["body", "text"],
                    "msg": "String should have at least 1 character",
                    "input": "",
                    "ctx": {"min_length": 1},
                }
            ],
        ),
        (
            b'{"text": 5}',
            [
                {
                    "type": "string_type",
                    "loc": ["body", "text"],
                    "msg": "Input should be a valid string",
                    "input": 5,
                }
            ],
        ),
        (
            b'{"text": "ok", "extra": 1}',
            [
                {
                    "type": "extra_forbidden",
                    "loc": ["body", "extra"],
                    "msg": "Extra inputs are not permitted",
                    "input": 1,
                }
            ],
        ),
        (
            b"{}",
            [{"type": "missing", "loc": ["body", "text"], "msg": "Field required", "input": {}}],
        ),
        (
            b"\xff\xfe",
            [
                {
                    "type": "json_invalid",
                    "loc": ["body"],
                    "msg": "Invalid JSON: expected value at line 1 column 1",
                    "input": "\ufffd\ufffd",
                    "ctx": {"error": "expected value at line 1 column 1"},
                }
            ],
        ),
    ],
)
def test_bad_bodies_get_the_same_422(
    no_model: TestClient, path: str, body: bytes, expected: list[dict[str, Any]]
) -> None:
    response = no_model.post(
        path, content=body, headers={"content-type": "application/json", "X-Request-ID": "r-1"}
    )

    assert response.status_code == 422
    assert response.json() == {"detail": expected}
    assert response.headers["x-request-id"] == "r-1"


@pytest.mark.parametrize("path", [*PREDICT_PATHS, "/v1/credit/predict"])
def test_bad_query_value_is_a_422(no_model: TestClient, path: str) -> None:
    response = no_model.post(f"{path}?return_features=yes", json={"text": "ok"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "return_features"]


@pytest.mark.parametrize("path", PREDICT_PATHS)
def test_valid_body_without_a_model_is_the_documented_503(no_model: TestClient, path: str) -> None:
    response = no_model.post(path, json={"text": "fine film"})

    assert response.status_code == 503
    assert set(response.json()) == {"detail"}
    assert len(response.headers["x-request-id"]) == 32


def test_prediction_routes_skip_dependency_resolution(
    served: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["request"].url.path)
        return await solve(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)

    for path in PREDICT_PATHS:
        answer = served.post(path, json={"text": "A fine film."})
        assert answer.status_code == 200
        assert set(answer.json()) == {
            "label",
            "label_name",
            "probability",
            "model_version",
            "request_id",
        }
    assert calls == []
    assert served.get("/model-info").status_code == 200  # an ordinary route still resolves
    assert calls == ["/model-info"]


def test_prediction_answer_carries_the_request_id_once(served: TestClient) -> None:
    answer = served.post("/predict", json={"text": "Good."}, headers={"X-Request-ID": "abc-1"})

    assert answer.headers.get_list("x-request-id") == ["abc-1"]
    assert answer.json()["request_id"] == "abc-1"


@pytest.mark.parametrize("path", PREDICT_PATHS)
def test_openapi_still_documents_the_prediction_operations(no_model: TestClient, path: str) -> None:
    operation = no_model.get("/openapi.json").json()["paths"][path]["post"]

    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["text"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["text"]["minLength"] == 1
    assert schema["properties"]["text"]["maxLength"] > 1
    assert operation["parameters"][0]["name"] == "return_features"
    assert {"200", "422", "503"} <= set(operation["responses"])
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok.rsplit("/", 1)[1] in {"PredictResponse", "UseCasePrediction"}


def test_request_only_endpoint_must_not_declare_parameters() -> None:
    router = APIRouter(route_class=LeanRoute)

    @request_only
    async def endpoint(request: Request, limit: int = 3) -> Response:
        return Response()

    with pytest.raises(TypeError, match="request_only"):
        router.add_api_route("/x", endpoint, methods=["POST"])


def test_unmarked_endpoints_of_a_lean_router_keep_fastapis_handling() -> None:
    app = FastAPI()
    router = APIRouter(route_class=LeanRoute)

    @router.get("/add")
    async def add(a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}

    @router.post("/echo")
    @request_only
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/json")

    app.include_router(router)
    client = TestClient(app)

    assert client.get("/add?a=1&b=2").json() == {"sum": 3}
    assert client.get("/add?a=x&b=2").status_code == 422
    assert client.post("/echo", content=b'{"a": 1}').json() == {"a": 1}


def test_new_request_ids_are_uuid4_hex() -> None:
    ids = {new_request_id() for _ in range(2000)}

    assert len(ids) == 2000
    for value in list(ids)[:200]:
        parsed = uuid.UUID(hex=value)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert parsed.hex == value


def test_request_id_header_replaces_one_the_response_set() -> None:
    headers = [(b"content-type", b"application/json"), (b"X-Request-ID", b"old")]

    assert _with_header(headers, (b"x-request-id", b"new")) == [
        (b"content-type", b"application/json"),
        (b"x-request-id", b"new"),
    ]
    assert json.dumps(_with_header((), (b"x-request-id", b"a")), default=repr)


@pytest.mark.parametrize(
    "created",
    [
        0.0,
        1.5,
        86399.9999999,
        1_000_000_000.9999995,  # rounds up into the next second
        1_000_000_000.9999994999,
        1_000_000_000.0004995,
        1_764_553_456.0,
        1_764_553_456.999,
        1_764_553_456.9995,
        -0.0000001,
        -1.5,
    ],
)
def test_access_line_timestamp_is_datetimes_to_the_millisecond(created: float) -> None:
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")

    assert iso_millis(created) == expected
    assert iso_millis(created) == expected  # the cached second gives the same text


def test_access_line_timestamp_over_many_times() -> None:
    rng = random.Random(5)
    times = sorted(rng.uniform(1.6e9, 1.8e9) for _ in range(2000))
    times += [t + rng.random() for t in times[:500]]  # the same second again

    for created in times:
        assert iso_millis(created) == datetime.fromtimestamp(created, UTC).isoformat(
            timespec="milliseconds"
        )

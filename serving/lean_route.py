"""Prediction routes that skip FastAPI's per-request dependency machinery.

A prediction endpoint takes only the `Request`: it parses and validates its body
itself (the contract model's `model_validate_json` on the raw bytes) and returns a
pre-encoded `Response`. For such an endpoint FastAPI's generic handler still, per
request, opens two `AsyncExitStack`s, looks up the endpoint's source context, runs
`solve_dependencies` (which builds a fresh response object and error list for nothing)
and wraps `send` once more to translate exceptions. Together that was about a fifth of
the app's own CPU time per prediction (cProfile, `bench/asgi_cost.py`).

`LeanRoute` is an `APIRoute` (same path matching, OpenAPI operation, response model,
`openapi_extra`), whose ASGI app for endpoints marked `@request_only` calls the endpoint
directly. Exceptions the endpoint raises (`HTTPException`, `RequestValidationError`,
`ModelNotLoadedError`) propagate to the app's `ExceptionMiddleware`, which holds the same
handlers the per-route wrapper would have used, so status codes and bodies are unchanged.
Unmarked endpoints of the same router keep FastAPI's handler.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

_MARK = "__driftloop_request_only__"

# What json.dumps(payload, ensure_ascii=False) builds on every call, built once.
_encode = json.JSONEncoder(ensure_ascii=False).encode

Endpoint = Callable[[Request], Awaitable[Response]]


def request_only(endpoint: Endpoint) -> Endpoint:
    """Mark an `async def f(request) -> Response` endpoint to be called without dependencies."""
    setattr(endpoint, _MARK, True)
    return endpoint


def json_response(payload: dict[str, Any], status_code: int = 200) -> Response:
    """A `request_only` endpoint's answer: `payload` as UTF-8 JSON, encoded once."""
    return Response(
        _encode(payload).encode(), status_code=status_code, media_type="application/json"
    )


def _takes_only_the_request(route: APIRoute) -> bool:
    d = route.dependant
    return bool(d.request_param_name) and not (
        d.path_params
        or d.query_params
        or d.header_params
        or d.cookie_params
        or d.body_params
        or d.dependencies
        or d.websocket_param_name
        or d.http_connection_param_name
        or d.response_param_name
        or d.background_tasks_param_name
        or d.security_scopes_param_name
    )


class LeanRoute(APIRoute):
    """An APIRoute whose `@request_only` endpoints are called directly (see module doc)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if not getattr(endpoint, _MARK, False):
            return
        if not _takes_only_the_request(self):
            raise TypeError(
                f"{endpoint.__qualname__} is marked request_only but declares other parameters "
                "or dependencies"
            )
        call: Endpoint = endpoint

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await call(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app

"""What every request goes through: id, body limit, timeout, metrics, access log.

Request ids are taken from `X-Request-ID` or made up, and echoed on every
answer, including the 413 and 504 this layer writes itself. A caller (or a
proxy) that sends an id can find its prediction again in logs and in the
prediction log; everyone else gets a fresh uuid4 hex. Incoming ids are
accepted only if short and made of safe characters, so a header cannot
inject text into logs or downstream headers.

Bodies larger than `max_body_bytes` are refused with 413 before they are read
(from Content-Length) or as soon as the streamed bytes pass the limit. A
request still unanswered after `request_timeout_seconds` gets a 504. Each
request is counted and timed by route template and status, and logged as one
JSON line. Written as one plain ASGI middleware rather than Starlette's
BaseHTTPMiddleware, which adds a task and a stream per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Iterable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.logs import ACCESS_LOGGER, request_id_var
from serving.metrics import ServingMetrics

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")
# uuid4's version (4) and variant (RFC 4122) bits, set on 128 random bits as uuid.uuid4() does.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_log = logging.getLogger(ACCESS_LOGGER)


def new_request_id() -> str:
    """`uuid.uuid4().hex`, without building the UUID object (this runs per request)."""
    bits = int.from_bytes(os.urandom(16), "big") & _UUID4_CLEAR | _UUID4_SET
    return f"{bits:032x}"


def accept_request_id(value: str | None) -> str:
    """The caller's id if it is safe to echo, otherwise a new one."""
    if value and _SAFE_ID.fullmatch(value):
        return value
    return new_request_id()


class BodyTooLargeError(HTTPException):
    """The streamed body passed the configured limit (an HTTPException, so FastAPI passes it on)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"request body exceeds the limit of {limit} bytes (DRIFTLOOP_MAX_BODY_BYTES)"
        )


class ServingMiddleware:
    """Request id, body-size limit, timeout, per-route metrics and the access log."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServingMetrics,
        max_body_bytes: int,
        timeout_seconds: float,
        access_log_enabled: bool = True,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.timeout_seconds = timeout_seconds
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = None
        declared_length = None
        for key, value in scope.get("headers", ()):
            if key == _HEADER_KEY:
                incoming = value.decode("latin-1")
            elif key == b"content-length":
                declared_length = value
        request_id = accept_request_id(incoming)
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        status_holder = [0]
        id_header = (_HEADER_KEY, request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_header(message.get("headers", ()), id_header)
                status_holder[0] = message["status"]
            await send(message)

        try:
            if declared_length is not None and _too_long(declared_length, self.max_body_bytes):
                await self._refuse(
                    send_with_id,
                    413,
                    f"request body of {declared_length.decode('latin-1')} bytes exceeds the limit "
                    f"of {self.max_body_bytes} bytes (DRIFTLOOP_MAX_BODY_BYTES)",
                )
            else:
                await self._call_guarded(scope, receive, send_with_id, status_holder)
        finally:
            self._observe(scope, request_id, status_holder[0] or 500, time.perf_counter() - started)
            request_id_var.reset(token)

    async def _call_guarded(
        self, scope: Scope, receive: Receive, send: Send, status_holder: list[int]
    ) -> None:
        limit = self.max_body_bytes
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        try:
            async with asyncio.timeout(self.timeout_seconds):
                await self.app(scope, limited_receive, send)
        except BodyTooLargeError as error:
            if not status_holder[0]:
                await self._refuse(send, 413, str(error.detail))
        except TimeoutError:
            if not status_holder[0]:
                await self._refuse(
                    send,
                    504,
                    f"no answer within {self.timeout_seconds:g} s "
                    "(DRIFTLOOP_REQUEST_TIMEOUT_SECONDS); try again",
                )

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _observe(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.observe_request(template, scope["method"], status, seconds)
        if self.access_log_enabled and access_log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            method, path = scope["method"], scope["path"]
            # What access_log.info(...) does, minus the caller lookup (a walk up the stack
            # for a file and line number the JSON line does not show).
            access_log.handle(
                access_log.makeRecord(
                    ACCESS_LOGGER,
                    logging.INFO,
                    "(unknown file)",
                    0,
                    "%s %s %d",
                    (method, path, status),
                    None,
                    "_observe",
                    {
                        "request_id": request_id,
                        "method": method,
                        "path": path,
                        "route": template,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "client": client[0] if client else None,
                    },
                )
            )


def _with_header(
    headers: Iterable[tuple[bytes, bytes]], header: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    """`headers` with `header` set: an existing one of that name replaced, else appended.

    The same as `MutableHeaders(scope=message)[name] = value` (names compared lowercase),
    without building a headers view per response.
    """
    name = header[0]
    kept = [item for item in headers if item[0].lower() != name]
    kept.append(header)
    return kept


def _too_long(declared: bytes, limit: int) -> bool:
    try:
        return int(declared) > limit
    except ValueError:
        return False

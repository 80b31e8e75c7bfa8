"""Structured logs: one JSON object per line, carrying the request id of the request being served.

The request id lives in a context variable that the middleware sets for each
request, so any log line written while serving it (the access line, a
warning from the model code) carries the same `request_id` a client got in
`X-Request-ID`. `configure_logging` sets up the root logger and uvicorn's
loggers alike; `uvicorn_log_config` hands the same setup to uvicorn workers,
which configure logging in their own processes.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import math
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "driftloop_request_id", default=None
)

ACCESS_LOGGER = "driftloop.access"

# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "color_message", "taskName"}
)


# What json.dumps(payload, default=str, ensure_ascii=False) builds on every call, built once:
# a line is formatted per request.
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode


# The last second a timestamp was written for and its text up to the seconds, swapped as one
# tuple so threads that log at once never pair one second with another's text.
_second: tuple[float, str] = (-1.0, "")


def iso_millis(created: float) -> str:
    """`datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")`, cheaper.

    The date and time of day are formatted once per second (a line is written per request);
    the microseconds are rounded exactly as `datetime.fromtimestamp` rounds them (half to
    even, carrying into the next second) before truncating to milliseconds.
    """
    global _second
    fraction, whole = math.modf(created)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole += 1.0
        micros -= 1_000_000
    elif micros < 0:  # before 1970: modf keeps the sign
        whole -= 1.0
        micros += 1_000_000
    second, text = _second
    if second != whole:
        text = datetime.fromtimestamp(whole, UTC).isoformat(timespec="seconds")[:-6]
        _second = (whole, text)
    return f"{text}.{micros // 1000:03d}+00:00"


class JsonFormatter(logging.Formatter):
    """ts, level, logger, msg, request_id (when serving one), extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": iso_millis(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            payload["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key[:1] != "_":
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return _encode(payload)


def log_config(level: str = "INFO", json_logs: bool = True) -> dict[str, Any]:
    """A logging.config dict for this process and uvicorn's loggers."""
    formatter: dict[str, Any] = (
        {"()": "serving.logs.JsonFormatter"}
        if json_logs
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
        },
    }


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    logging.config.dictConfig(log_config(level, json_logs))

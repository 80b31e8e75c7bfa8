"""Query parameters parsed with the strictness the OpenAPI document promises.

One policy for every query parameter and body field: what the document calls invalid is
a 422, so a client never relies on a spelling another server would refuse.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError

_BOOLEANS = {"true": True, "false": False}


def strict_bool(request: Request, name: str) -> bool:
    """A boolean query parameter: `true` or `false`, given at most once (absent = false)."""
    if not request.scope.get("query_string"):  # no query at all: skip parsing one
        return False
    values = request.query_params.getlist(name)
    if not values:
        return False
    if len(values) > 1 or values[0] not in _BOOLEANS:
        raise RequestValidationError(
            [
                {
                    "type": "bool_parsing",
                    "loc": ("query", name),
                    "msg": "Input should be true or false, given once",
                    "input": values if len(values) > 1 else values[0],
                }
            ]
        )
    return _BOOLEANS[values[0]]

"""Dependencies the routes declare, as `Annotated` aliases.

Routes ask for `RuntimeDep`, `SettingsDep`, `HolderDep`, `ModelDep` or
`RequestIdDep` and never reach into `app.state` themselves; tests can swap any
of them with `app.dependency_overrides`. "No model loaded" is raised as
`ModelNotLoadedError` and turned into a 503 by the app's exception handler,
wherever it comes from. All dependencies are `async def`: FastAPI runs plain
`def` dependencies in a thread pool, a thread hop per dependency per request.

`require_admin` guards `/admin/*`: with no `DRIFTLOOP_ADMIN_API_KEY`
configured the endpoints answer 403 (off, not open); otherwise the
`X-API-Key` header must match (401 when missing or wrong).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from serving.config import ServingSettings
from serving.middleware import new_request_id
from serving.model import LoadedModel, ModelHolder
from serving.runtime import ServingRuntime

ADMIN_KEY_HEADER = "X-API-Key"
_admin_key_header = APIKeyHeader(
    name=ADMIN_KEY_HEADER,
    auto_error=False,
    description="The key configured in DRIFTLOOP_ADMIN_API_KEY.",
)


async def get_runtime(request: Request) -> ServingRuntime:
    return request.app.state.runtime


async def get_settings(request: Request) -> ServingSettings:
    return request.app.state.settings


async def get_holder(request: Request) -> ModelHolder:
    return request.app.state.holder


async def get_model(holder: Annotated[ModelHolder, Depends(get_holder)]) -> LoadedModel:
    """The model snapshot for this request (ModelNotLoadedError -> 503 when none)."""
    return holder.require()


async def get_request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or new_request_id()


async def require_admin(
    request: Request, api_key: Annotated[str | None, Depends(_admin_key_header)]
) -> None:
    configured = request.app.state.settings.admin_api_key
    if configured is None or not configured.get_secret_value():
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="admin endpoints are disabled: set DRIFTLOOP_ADMIN_API_KEY to enable them",
        )
    expected = configured.get_secret_value().encode()
    if api_key is None or not hmac.compare_digest(api_key.encode(), expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"missing or wrong admin key: send it in the {ADMIN_KEY_HEADER} header",
            headers={"WWW-Authenticate": ADMIN_KEY_HEADER},
        )


RuntimeDep = Annotated[ServingRuntime, Depends(get_runtime)]
SettingsDep = Annotated[ServingSettings, Depends(get_settings)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
AdminDep = Depends(require_admin)

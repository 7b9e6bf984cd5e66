"""``/v1/realtime`` (and the bare ``/``): the realtime WebSocket route.

Each accepted socket is one connection, run by
:func:`deployments.realtime.connection.serve_connection` (credentials, setup frame, admission,
the session, release); see that module for the connection protocol (docs/realtime.md, docs/admission.md).
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse

from deployments.errors import APIError
from deployments.realtime.connection import serve_connection

router = APIRouter(tags=["realtime"])


@router.websocket("/v1/realtime")
@router.websocket("/")
async def realtime(ws: WebSocket) -> None:
    """The realtime voice session (OpenAI Realtime protocol + Naia extensions)."""
    await serve_connection(ws, ws.app.state.omni)


@router.get("/v1/realtime", include_in_schema=False)  # documented by deployments.openapi
async def realtime_over_http() -> JSONResponse:
    """A plain HTTP request where a WebSocket upgrade was expected: 426 Upgrade Required."""
    err = APIError(
        426,
        "/v1/realtime is a WebSocket: connect with ws:// or wss:// (an HTTP Upgrade)",
        type="invalid_request_error",
        code="upgrade_required",
    )
    return JSONResponse(err.body(), status_code=426, headers={"Upgrade": "websocket", "Connection": "Upgrade"})

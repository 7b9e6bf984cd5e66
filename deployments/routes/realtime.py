"""``/v1/realtime`` (and the bare ``/``): the realtime WebSocket route.

Each accepted socket is one connection, run by
:func:`deployments.realtime.connection.serve_connection` (credentials, setup frame, admission,
the session, release); see that module for the connection protocol (spec 000 §3, spec 001 §2, §5).
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from deployments.realtime.connection import serve_connection

router = APIRouter(tags=["realtime"])


@router.websocket("/v1/realtime")
@router.websocket("/")
async def realtime(ws: WebSocket) -> None:
    """The realtime voice session (OpenAI Realtime protocol + Naia extensions)."""
    await serve_connection(ws, ws.app.state.omni)

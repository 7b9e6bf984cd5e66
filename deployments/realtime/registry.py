"""The realtime sessions one ingress replica holds, as the admission service sees them.

The registry reports its live session ids to the admission service (heartbeats)
and closes a session with 4002 when the service says it was superseded (docs/admission.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from deployments.admission.contract import CLOSE_SUPERSEDED
from deployments.protocol.realtime import error_event

logger = logging.getLogger("ray.serve")


class SessionRegistry:
    """The sessions one ingress replica holds, reported to the admission service (heartbeats),
    and closed with 4002 when the service says they were superseded."""

    def __init__(self, admission: Any, replica_id: str, interval_s: float):
        self.admission = admission
        self.replica_id = replica_id
        self.interval_s = interval_s
        self.live: dict[str, tuple[WebSocket, dict]] = {}
        self._task: asyncio.Task | None = None

    def add(self, session_id: str, ws: WebSocket, meta: dict) -> None:
        self.live[session_id] = (ws, meta)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())

    def remove(self, session_id: str) -> None:
        self.live.pop(session_id, None)

    async def _loop(self) -> None:
        last_beat = 0.0
        while True:
            try:
                if time.monotonic() - last_beat >= self.interval_s:
                    last_beat = time.monotonic()
                    reply = await self.admission.heartbeat.remote(
                        self.replica_id, [{"session_id": sid, **meta} for sid, (_, meta) in self.live.items()]
                    )
                    await self._close_all((reply or {}).get("close", []))
                closes = await self.admission.closes.remote(self.replica_id, self.interval_s)
                await self._close_all(closes or [])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # admission restarting: try again shortly
                logger.debug("admission heartbeat failed: %s", exc)
                await asyncio.sleep(1.0)

    async def _close_all(self, closes: list[dict]) -> None:
        for c in closes:
            entry = self.live.pop(c.get("session_id"), None)
            if entry is None:
                continue
            ws = entry[0]
            await send_and_close(
                ws,
                error_event(
                    "this session was replaced by a newer session of the same account",
                    code="superseded",
                    type="session_superseded",
                ),
                c.get("close_code", CLOSE_SUPERSEDED),
            )


async def send_and_close(ws: WebSocket, payload: dict | None, code: int) -> None:
    """Send ``payload`` (a server event, or nothing) and close with ``code``; a client already
    gone is ignored."""
    try:
        if payload is not None and ws.application_state == WebSocketState.CONNECTED:
            await ws.send_text(json.dumps(payload))
        if ws.application_state == WebSocketState.CONNECTED:
            await ws.close(code=code)
    except Exception:  # client already gone
        pass

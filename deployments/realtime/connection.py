"""One realtime WebSocket connection: credentials and setup frame, admission, the receive loop, release.

The route (:mod:`deployments.routes.realtime`) hands each accepted socket to
:func:`serve_connection`; the session it creates (:class:`~deployments.realtime.session.RealtimeSession`)
handles every event.

Connection (the Naia connection flow, docs/realtime.md): the client may send headers (``Authorization: Bearer``),
an ``openai-insecure-api-key.<key>`` subprotocol, ``?api_key=`` / ``?instance=`` /
``?consent=`` query parameters, or — browsers cannot send headers — a first frame
``{"setup": {"apiKey", "locale", "instanceId", "consent"?}}`` with no ``type``. When no API keys
are configured the server admits at once and sends ``session.created`` without waiting for a
setup frame (a later one is still accepted, for its ``locale``). When keys are configured and
none came with the connection, the server waits for the setup frame.

Admission (the gateway's status contract, docs/admission.md): every ingress replica asks the one
admission service; the client gets ``session.created``, or a status event (``session.queued``, ``session.preparing``,
``session.sold_out``, ``session.consent_required``, ``session.error``, ``error``) followed by
its close code. A superseded session gets an ``error`` event (code ``superseded``) and close 4002.

With traces on (:mod:`deployments.tracing`), the connect and its admission are one short trace
(``realtime.connect``, continuing the handshake's ``traceparent``, with the admission call as a
client span); the session's turns are traces of their own that link to it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from deployments.admission.contract import CLOSE_AUTH_FAILED, CLOSE_UNAVAILABLE
from deployments.metrics import Metrics
from deployments.protocol.realtime import RealtimeServerEventSessionCreated, error_event, new_id
from deployments.realtime.cascade import Cascade
from deployments.realtime.fetch import fetch_reference
from deployments.realtime.registry import SessionRegistry, send_and_close
from deployments.realtime.session import RealtimeSession
from deployments.realtime.settings import locale_language
from deployments.state import IngressState
from deployments.tracing import asgi, calls, scopes
from models.audio import OPENAI_PCM_RATE

logger = logging.getLogger("ray.serve")

SETUP_TIMEOUT_S = 10.0


def _credentials(ws: WebSocket) -> tuple[str | None, str | None]:
    """API key from the connection (header, subprotocol, query) and the subprotocol to accept."""
    key = None
    auth = ws.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    for p in offered:
        if p.startswith("openai-insecure-api-key."):
            key = key or p[len("openai-insecure-api-key.") :]
    key = key or ws.query_params.get("api_key")
    accept = "realtime" if "realtime" in offered else None
    return key, accept


async def _first_frame(ws: WebSocket) -> dict | None:
    """Wait for the setup frame; returns the parsed frame, or ``None`` on timeout / not JSON."""
    try:
        msg = await asyncio.wait_for(ws.receive(), timeout=SETUP_TIMEOUT_S)
    except asyncio.TimeoutError:
        return None
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    try:
        frame = json.loads(msg.get("text") or msg.get("bytes") or b"")
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


async def serve_connection(ws: WebSocket, state: IngressState) -> None:
    """Run one realtime connection to its end (OpenAI Realtime protocol + Naia extensions):
    accept, admit, serve the session, release its admission slot."""
    config = state.config
    key, subprotocol = _credentials(ws)
    await ws.accept(subprotocol=subprotocol)
    query = ws.query_params
    setup: dict = {}
    pending: dict | None = None
    keys = state.api_keys
    connect = asgi.start_connect(ws.scope)  # None with traces off
    session_id, decision = None, None
    try:
        if keys.enabled and not key:
            frame = await _first_frame(ws)
            if frame is not None and isinstance(frame.get("setup"), dict):
                setup = frame["setup"]
                key = setup.get("apiKey") or setup.get("api_key")
            else:
                pending = frame
        instance = query.get("instance") or ws.headers.get("x-naia-os-instance") or setup.get("instanceId")
        consent = setup.get("consent") or query.get("consent")
        model = query.get("model") or config.cascade.id
        with scopes.within(connect):
            session_id, decision = await _admit(state, key, instance, consent, model, ws)
        if session_id is None:
            return
    except WebSocketDisconnect:
        return
    finally:
        if connect is not None:
            connect.set({"gen_ai.conversation.id": session_id})
            connect.end("created" if session_id else (decision or {}).get("outcome", "closed"))

    send_lock = asyncio.Lock()
    cascade = Cascade(state)
    meter = SessionMeter(state.metrics, cascade, state.api_keys.check(key).key_id if keys.enabled else None)

    async def send(payload: dict) -> None:
        meter.sent(payload)
        async with send_lock:
            if ws.application_state == WebSocketState.CONNECTED:
                await ws.send_text(json.dumps(payload))

    rt = config.realtime
    session = RealtimeSession(
        send,
        cascade,
        rt,
        model=model,
        locale=locale_language(setup.get("locale")),
        reference_fetcher=lambda url: fetch_reference(
            url, rt.ref_audio_max_bytes, rt.ref_audio_timeout_s, rt.ref_audio_allow_private
        ),
    )
    session.id = session_id
    session.trace_link = connect.link if connect is not None else None
    created = (decision or {}).get("event") or RealtimeServerEventSessionCreated().to_wire()
    created["session"] = {**created.get("session", {}), **session.session_object()}
    registry = _registry(state)
    if registry is not None:
        registry.add(session_id, ws, {"instance": instance, "started_at": time.time()})
    state.metrics.session_opened()
    t_open = time.monotonic()
    try:
        await send(created)
        if pending is not None and not isinstance(pending.get("setup"), dict):
            await session.handle_text(json.dumps(pending))
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            if msg.get("text") is not None:
                await session.handle_text(msg["text"])
            elif msg.get("bytes") is not None:
                await session.emit_error(
                    "binary frames are not supported: send JSON text events", code="unsupported_frame"
                )
    except (WebSocketDisconnect, RuntimeError):
        pass  # client gone (RuntimeError: receive after close)
    finally:
        state.metrics.session_closed(time.monotonic() - t_open, meter.key_id)
        await session.close()
        if registry is not None:
            registry.remove(session_id)
        if state.admission is not None:
            try:
                await state.admission.release.remote(session_id)
            except Exception as exc:  # the heartbeat reaps it otherwise
                logger.warning("could not release session %s: %s", session_id, exc)


class SessionMeter:
    """The metrics of one realtime session, read off the events it sends (the wire is the one
    place every turn passes): ``response.done`` gives the turn's outcome, latency breakdown and
    tokens; a transcription's ``usage.seconds`` the audio heard; ``response.audio.delta`` (base64
    PCM16 mono 24 kHz) the audio spoken.

    Args:
        metrics: the replica's :class:`~deployments.metrics.Metrics`.
        cascade: the session's models (their ids label the series).
        key_id: the caller's key id, ``None`` with API keys off.
    """

    def __init__(self, metrics: Metrics, cascade: Cascade, key_id: str | None):
        self.metrics, self.cascade, self.key_id = metrics, cascade, key_id

    def sent(self, event: dict) -> None:
        if not self.metrics.recording:
            return
        kind = event.get("type", "")
        if kind in ("response.audio.delta", "response.output_audio.delta") and self.cascade.tts is not None:
            seconds = len(event.get("delta", "")) * 3 / 4 / 2 / OPENAI_PCM_RATE
            self.metrics.audio(self.cascade.tts.id, self.key_id, "out", seconds)
        elif kind == "conversation.item.input_audio_transcription.completed" and self.cascade.stt is not None:
            seconds = float((event.get("usage") or {}).get("seconds") or 0.0)
            self.metrics.audio(self.cascade.stt.id, self.key_id, "in", seconds)
        elif kind == "response.done":
            response = event.get("response") or {}
            usage = response.get("usage") or {}
            self.metrics.tokens(
                self.cascade.llm.id, self.key_id, int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
            )
            breakdown = {}
            for name, value in (response.get("metadata") or {}).items():
                try:
                    breakdown[name] = float(value)
                except (TypeError, ValueError):
                    pass  # the detector's name, the speculation outcome
            self.metrics.turn(response.get("status", "completed"), self.key_id, breakdown)


def _registry(state: IngressState) -> SessionRegistry | None:
    """This replica's session registry, made on first use (``None`` without admission)."""
    if state.admission is None:
        return None
    if state.session_registry is None:
        state.session_registry = SessionRegistry(
            state.admission, state.replica_id, state.config.admission.heartbeat_interval_s
        )
    return state.session_registry


async def _admit(
    state: Any, key: str | None, instance: str | None, consent: str | None, model: str, ws: WebSocket
) -> tuple[str | None, dict | None]:
    """Ask admission; on any outcome but ``created``, send its event and close. Returns the
    admitted session id (``None`` when closed) and the decision."""
    if state.admission is None:
        check = state.api_keys.check(key) if state.api_keys.enabled else None
        if check is not None and not check.ok:
            await send_and_close(
                ws,
                error_event("invalid or missing API key", code="invalid_api_key", type="authentication_error"),
                CLOSE_AUTH_FAILED,
            )
            return None, None
        return new_id("sess"), None
    request = {"instance": instance, "api_key": key, "consent": consent, "replica_id": state.replica_id, "model": model}
    try:
        with calls.client_span("admission", "admit") as span:
            decision = await state.admission.admit.remote(request)
            span.set({"omniserve.admission.outcome": decision.get("outcome")})
    except Exception as exc:
        logger.warning("admission unavailable: %s", exc)
        await send_and_close(ws, None, CLOSE_UNAVAILABLE)  # bare 4503: transient, reconnect
        return None, None
    if decision.get("close_code") is not None:
        await send_and_close(ws, decision.get("event"), decision["close_code"])
        return None, decision
    return decision.get("session_id") or new_id("sess"), decision

"""The FastAPI application the ingress serves: middleware, error handlers, routers.

``create_app(state)`` is called by the ingress replica (``__serve_build_asgi_app__``) and can be
called on its own to read the OpenAPI document. Conventions on every route (docs/http.md, after
the Izwi API): ``x-request-id`` echoed or generated, errors in one envelope, 413 over the body
limit, 415 for a wrong content type, CORS only when configured; with traces on
(:mod:`deployments.tracing`), one SERVER span per request, continuing the caller's
``traceparent``.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import logging
import time
import uuid
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.errors import APIError, error_body, is_replica_loss, replica_lost
from deployments.metrics import Metrics
from deployments.openapi import build_openapi
from deployments.routes import admin, audio, chat, embeddings, health, realtime, require_api_key, usage
from deployments.routes import models as models_routes
from deployments.tracing import asgi, provider
from models.base import InvalidInput

logger = logging.getLogger("ray.serve")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class BodyLimitMiddleware:
    """Pure ASGI middleware: answer 413 when a body exceeds ``max_body_bytes``, judged from
    ``Content-Length`` before reading and by counting for chunked bodies."""

    def __init__(self, app: Any, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_body_bytes
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_large = APIError(413, f"request body exceeds the limit of {limit} bytes", code="request_too_large")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _send_json(send, too_large.status, too_large.body())
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _send_json(send, too_large.status, too_large.body())


class _BodyTooLarge(Exception):
    pass


class MetricsMiddleware:
    """Pure ASGI middleware: one ``omniserve_requests`` count and one duration (until the last
    byte of the body, so a stream is timed whole) per HTTP request, labelled with the route
    template FastAPI matched (``unmatched`` otherwise), the model id a route resolved
    (``request.state.model``) and the caller's key id (``request.state.key_id``); the request also
    counts in the caller's ``/v1/usage`` totals, which are kept with ``server.metrics`` off too.

    Args:
        app: the ASGI app it wraps.
        metrics: a :class:`deployments.metrics.Metrics`.
    """

    def __init__(self, app: Any, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.metrics.recording:
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500
        done = False

        def record() -> None:
            nonlocal done
            if done:
                return
            done = True
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            state = scope.get("state") or {}
            self.metrics.request(
                route,
                state.get("model", ""),
                status,
                state.get("key_id"),
                time.perf_counter() - t0,
                keyed="key" in state,
            )

        async def counting_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                record()

        try:
            await self.app(scope, receive, counting_send)
        finally:
            record()


class TracingMiddleware:
    """Pure ASGI middleware: one OpenTelemetry SERVER span per HTTP request
    (:func:`deployments.tracing.asgi.start_http`), continuing the caller's W3C ``traceparent`` /
    ``tracestate`` and current while the request runs, so the model calls it makes are its
    children. Named ``{method} {route template}``, with ``http.request.method``, ``url.path``,
    ``url.scheme``, ``http.route``, ``http.response.status_code`` (ERROR status for a 5xx) and the
    model the route resolved. It ends when the app returns, i.e. after the last byte of a streamed
    body. Installed only while traces are on; WebSockets are traced per realtime turn instead.

    Args:
        app: the ASGI app it wraps.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope, receive, send):
        started = asgi.start_http(scope) if scope["type"] == "http" else None
        if started is None:
            return await self.app(scope, receive, send)
        status: int | None = None

        async def status_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, status_send)
        except BaseException as exc:
            asgi.end_http(started, scope, status, exc)
            raise
        asgi.end_http(started, scope, status)


async def _send_json(send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    msg = first.get("msg", "invalid value")
    return (f"invalid value for '{param}': {msg}" if param else msg), param


def _fastapi_telemetry() -> dict[str, Any]:
    """``FastAPI(...)`` keyword arguments for FastAPI's own OpenTelemetry: releases that have it
    (``telemetry=``, 0.16x) record a SERVER span of their own for every request as soon as a
    TracerProvider is configured; while :class:`TracingMiddleware` records ours, theirs is turned
    off so each request has one server span. Nothing changes with traces off, or on a FastAPI
    without it (``fastapi>=0.115`` is allowed)."""
    if provider.active() and "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False}}
    return {}


def create_app(state: Any) -> FastAPI:
    """Build the FastAPI app around ``state`` (an :class:`deployments.state.IngressState`)."""
    app = FastAPI(
        title="omniserve",
        summary="OpenAI-compatible voice-first model stack on Ray Serve",
        version="0.1.0",
        **_fastapi_telemetry(),
    )
    app.state.omni = state
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        if exc.status >= 500:
            logger.warning("request %s failed: %s", request_id_var.get(), exc.message)
        return exc.response()

    @app.exception_handler(InvalidInput)
    async def _invalid_input(request: Request, exc: InvalidInput):
        return JSONResponse(error_body(exc.message, "invalid_request_error", exc.param, "400"), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return JSONResponse(error_body(message, "invalid_request_error", param, "400"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        err = APIError(exc.status_code, str(exc.detail))
        return JSONResponse(err.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        if is_replica_loss(exc):  # a model replica died under a call that could not be retried: transient
            logger.warning("request %s: model replica lost: %r", request_id_var.get(), exc)
            return replica_lost(None, "the request could not be completed").response()
        logger.exception("request %s: unexpected error", request_id_var.get())
        return JSONResponse(error_body("internal server error", "server_error", None, "500"), status_code=500)

    app.include_router(health.router)  # probes: never behind a key
    app.include_router(realtime.router)  # authenticates in the protocol (setup frame, 4001)
    for router in (models_routes.router, chat.router, embeddings.router, audio.router, admin.router, usage.router):
        app.include_router(router, dependencies=[Depends(require_api_key)])

    # middleware added last runs first: tracing (outermost, when on), request id, CORS, metrics,
    # body limit (innermost)
    config = getattr(state, "config", None)
    max_body = config.server.max_body_bytes if config is not None else 26_214_400
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=max_body)
    metrics = getattr(state, "metrics", None)
    if metrics is not None and metrics.recording:
        app.add_middleware(MetricsMiddleware, metrics=metrics)
    if config is not None and config.server.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.server.cors_allow_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-request-id"],
        )
    behind_serve_proxy = getattr(state, "app_name", None) is not None

    @app.middleware("http")
    async def request_id(request: Request, call_next):
        # Serve's proxy already generates a missing x-request-id, puts it on the request and echoes
        # it on the response (and in replica logs); outside Serve this middleware does both.
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        token = request_id_var.set(rid)
        try:
            response = await call_next(request)
        finally:
            request_id_var.reset(token)
        if not behind_serve_proxy:
            response.headers["x-request-id"] = rid
        return response

    if provider.active():  # outermost: the span covers every other middleware
        app.add_middleware(TracingMiddleware)
    return app

"""The ingress's SERVER spans, made from ASGI scopes: HTTP requests and realtime connects.

:func:`start_http` / :func:`end_http` (run by ``deployments.http.TracingMiddleware``) record one
SERVER span per REST request, continuing the client's W3C ``traceparent`` / ``tracestate``,
with the HTTP server attributes (``http.request.method``, ``http.route``,
``http.response.status_code``, ``url.path``, ``url.scheme``); paths excluded by
``OTEL_PYTHON_EXCLUDED_URLS`` get none (:func:`deployments.tracing.provider.excluded`).
:func:`start_connect` records a realtime WebSocket's connect and admission.

FastAPI's own telemetry (``fastapi.telemetry``, in the locked FastAPI 0.165)
    It records a SERVER span for every request (and one per WebSocket connection, its whole
    life) as soon as any TracerProvider is configured. ``pyproject.toml`` allows
    ``fastapi>=0.115``, whose older releases have none, and the realtime WebSocket is traced per
    turn (:func:`deployments.tracing.scopes.start_turn`), so the ingress keeps its own middleware
    (``deployments.http.TracingMiddleware``, :func:`start_http`) and turns FastAPI's tracing off
    while ours is on (``FastAPI(telemetry={"tracing": False})`` where FastAPI takes it): one
    server span a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode

from deployments.tracing.provider import active, excluded, tracer
from deployments.tracing.scopes import Scope


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or ()}


def _server_attributes(scope: Mapping[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    client = scope.get("client")
    attrs = {
        "url.path": scope.get("path", ""),
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version"),
        "user_agent.original": headers.get("user-agent"),
        "client.address": client[0] if client else None,
    }
    if headers.get("x-request-id"):
        attrs["http.request.header.x-request-id"] = [headers["x-request-id"]]
    return {k: v for k, v in attrs.items() if v is not None}


def start_http(scope: Mapping[str, Any]) -> tuple[Scope, object] | None:
    """The SERVER span of one HTTP request (an ASGI ``http`` scope), continuing its
    ``traceparent`` / ``tracestate`` (the configured propagators), made current; ``None`` when
    traces are off or the path is excluded. Pass the result to :func:`end_http` in the same task."""
    if not active():
        return None
    path = scope.get("path", "")
    if excluded(path):
        return None
    headers = _headers(scope)
    parent = propagate.extract(headers)
    method = scope.get("method", "GET")
    attrs = {"http.request.method": method, **_server_attributes(scope, headers)}
    span = tracer().start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attrs)
    server = Scope(span, parent)
    return server, otel_context.attach(server.context)


def end_http(
    started: tuple[Scope, object], scope: Mapping[str, Any], status: int | None, error: BaseException | None = None
) -> None:
    """End :func:`start_http`'s span: named ``{method} {http.route}`` once the router matched
    (FastAPI's route template), ``http.response.status_code``, ERROR status and ``error.type``
    for a 5xx or an exception; the model a route resolved as ``gen_ai.request.model``."""
    server, token = started
    try:
        span = server.span
        route = getattr(scope.get("route"), "path", None)
        if route:
            span.update_name(f"{scope.get('method', 'GET')} {route}")
            span.set_attribute("http.route", route)
        model = (scope.get("state") or {}).get("model")
        if model:
            span.set_attribute("gen_ai.request.model", model)
        if status is None and error is not None and not isinstance(error, asyncio.CancelledError):
            status = 500
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 500 and error is None:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
        server.end(error=error)
    finally:
        otel_context.detach(token)


def start_connect(scope: Mapping[str, Any]) -> Scope | None:
    """The SERVER span of a realtime WebSocket's connect and admission, ``realtime.connect``,
    continuing the handshake's ``traceparent``; the session's turns link to it. ``None`` when
    traces are off."""
    if not active():
        return None
    headers = _headers(scope)
    parent = propagate.extract(headers)
    attrs = {"http.request.method": "GET", **_server_attributes(scope, headers)}
    span = tracer().start_span("realtime.connect", context=parent, kind=SpanKind.SERVER, attributes=attrs)
    return Scope(span, parent)

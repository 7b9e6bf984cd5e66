"""The span work runs in: a REST request's, a realtime connect's, a realtime turn's.

A :class:`Scope` is a span with the context that makes it the parent of what runs inside it;
:func:`within` and :func:`fallback` make one current, :func:`annotate` and
:func:`annotate_response` set attributes on the current one. A realtime turn is a trace of its
own: :func:`start_turn` opens its root ``realtime.turn`` span, linked to the session's connect
span (:func:`deployments.tracing.asgi.start_connect`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind

from deployments.tracing.operations import end_span
from deployments.tracing.provider import active, tracer

# Context key under which a context attached here carries its :class:`Scope` (REST request,
# realtime turn or connect): ``annotate`` and ``fallback`` look for it.
_SCOPE_KEY = otel_context.create_key("omniserve-scope")


class Scope:
    """A span with the context that makes it the parent of what runs inside it: a REST request's
    server span, a realtime turn, a realtime connect. :func:`within` attaches it; :meth:`end` ends
    it once."""

    __slots__ = ("span", "context", "_ended")

    def __init__(self, span: Span, parent: otel_context.Context | None = None):
        self.span = span
        self.context = otel_context.set_value(_SCOPE_KEY, self, trace.set_span_in_context(span, parent))
        self._ended = False

    def set(self, attributes: Mapping[str, Any]) -> None:
        """Set attributes (``None`` values skipped) on the span."""
        self.span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def end(self, outcome: str | None = None, error: BaseException | None = None) -> None:
        """End the span (once): ``outcome`` as ``omniserve.outcome``; ``error`` recorded."""
        if self._ended:
            return
        self._ended = True
        if outcome is not None:
            self.span.set_attribute("omniserve.outcome", outcome)
        end_span(self.span, error)

    def end_with_task(self, task: asyncio.Task) -> None:
        """``task.add_done_callback`` form of :meth:`end`: cancelled, failed or done."""
        if task.cancelled():
            self.end("cancelled")
        else:
            error = task.exception()
            self.end("failed" if error is not None else "responded", error)

    @property
    def link(self) -> Link:
        """A link to this span (realtime turns link to their session's connect span)."""
        return Link(self.span.get_span_context())


class _Attached:
    """Context manager: attach a context on enter, detach it on exit (same task)."""

    __slots__ = ("_context", "_token")

    def __init__(self, context: otel_context.Context):
        self._context = context
        self._token: object | None = None

    def __enter__(self) -> _Attached:
        self._token = otel_context.attach(self._context)
        return self

    def __exit__(self, *exc: Any) -> None:
        otel_context.detach(self._token)


class _Nothing:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


_NOTHING = _Nothing()


def within(scope: Scope | None) -> _Attached | _Nothing:
    """``with within(scope):`` makes ``scope`` the current span (calls made there are its
    children; tasks created there inherit it); does nothing for ``None`` (traces off)."""
    return _NOTHING if scope is None else _Attached(scope.context)


def fallback(scope: Scope | None) -> _Attached | _Nothing:
    """As :func:`within`, but only where no scope of this module is current: a realtime call made
    in a turn's own task keeps that turn, one made from the receive loop joins ``scope`` (the
    voice turn in progress)."""
    if scope is None or otel_context.get_value(_SCOPE_KEY) is not None:
        return _NOTHING
    return _Attached(scope.context)


def annotate(attributes: Mapping[str, Any]) -> None:
    """Set attributes on the current scope's span (the realtime turn a response runs in); nothing
    when traces are off or no scope is current."""
    if not active():
        return
    scope = otel_context.get_value(_SCOPE_KEY)
    if isinstance(scope, Scope):
        scope.set(attributes)


def annotate_response(response: Mapping[str, Any]) -> None:
    """:func:`annotate` the current turn with a realtime ``response`` object (``response.done``'s):
    ``gen_ai.response.id``, ``gen_ai.usage.input_tokens`` / ``output_tokens``,
    ``omniserve.realtime.response.status`` and each latency of its ``metadata`` (ms) as
    ``omniserve.realtime.<name>``."""
    if not active():
        return
    usage = response.get("usage") or {}
    attrs: dict[str, Any] = {
        "gen_ai.response.id": response.get("id"),
        "gen_ai.usage.input_tokens": usage.get("input_tokens"),
        "gen_ai.usage.output_tokens": usage.get("output_tokens"),
        "omniserve.realtime.response.status": response.get("status"),
    }
    for name, value in (response.get("metadata") or {}).items():
        try:
            attrs[f"omniserve.realtime.{name}"] = float(value)
        except (TypeError, ValueError):
            attrs[f"omniserve.realtime.{name}"] = str(value)
    annotate(attrs)


def start_turn(kind: str, session_id: str, model: str, link: Link | None = None) -> Scope | None:
    """The root span of one realtime turn, ``realtime.turn`` (SERVER: the client's speech or
    ``response.create`` asked for it): a trace of its own, with ``gen_ai.conversation.id`` (the
    session), ``gen_ai.request.model`` (the model the session connected with),
    ``omniserve.realtime.turn.kind`` (``voice`` / ``text``) and a ``link`` to the session's connect
    span. ``None`` when traces are off."""
    if not active():
        return None
    attrs = {
        "gen_ai.conversation.id": session_id,
        "gen_ai.request.model": model,
        "omniserve.realtime.turn.kind": kind,
    }
    span = tracer().start_span(
        "realtime.turn",
        context=otel_context.Context(),
        kind=SpanKind.SERVER,
        attributes=attrs,
        links=[link] if link is not None else None,
    )
    return Scope(span)

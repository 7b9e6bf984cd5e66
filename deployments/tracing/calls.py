"""The ingress side of a deployment call: its CLIENT span, and the W3C context it carries to the replica.

:func:`start_call` (in :class:`deployments.state.IngressState`) opens the CLIENT span of a handle
call to a model, child of the current span (a REST request's or a realtime turn's), and puts
that span's context in a small ``dict`` sent as the reserved keyword :data:`CARRIER_KWARG`;
inside the model replica, :func:`deployments.tracing.replica.traced` starts the call's own
SERVER span from it, in the same trace. :class:`TracedStream` keeps a streamed call's span open
until the stream ends; :func:`client_span` is the CLIENT span of a handle call that carries no
context (admission).

Why not Ray Serve's own tracing (read in Ray 2.60.0: ``ray/serve/_private/tracing_utils.py``,
``constants.py``, ``replica.py``, ``router.py``, ``proxy_request_response.py``)
    Serve turns its tracing on with ``RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH`` (or a cluster-wide
    ``serve.start(tracing_config=...)``), read at import in every Serve process, never from an
    ``OTEL_*`` variable; its sampler is fixed to ``ParentBasedTraceIdRatio`` of
    ``RAY_SERVE_TRACING_SAMPLING_RATIO`` (default 0.01), so ``OTEL_TRACES_SAMPLER`` is ignored;
    its proxy opens a SERVER span of its own (continuing ``traceparent`` only, not
    ``tracestate``) and wraps every handle call, internal ones included (admission heartbeats,
    status reads), in ``route_to_replica`` / ``replica_handle_request`` spans, so the ingress span
    would be a grandchild of the client's span; and the context rides in
    ``RequestMetadata.tracing_context`` only while Serve's own span stack records. It cannot honour
    the ``OTEL_*`` contract, so this package carries the W3C context itself: the ingress injects it
    (``opentelemetry.propagate.inject``, so ``OTEL_PROPAGATORS`` applies) into a small ``dict``
    passed as the reserved keyword :data:`CARRIER_KWARG` of the handle call, and the replica's
    :func:`~deployments.tracing.replica.traced` wrapper pops it and starts its span from it.
    Serve's tracing should stay off (its default) beside this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind

from deployments.tracing.operations import OPERATIONS, Operation, end_span, rpc_attributes, safe_attributes
from deployments.tracing.provider import active, tracer

#: The reserved keyword of a traced handle call: the W3C trace context (``{"traceparent": ...}``)
#: of the ingress's CLIENT span. Sent only while tracing is on; the replica's
#: :func:`~deployments.tracing.replica.traced` wrapper always pops it, so a method never sees it.
CARRIER_KWARG = "_otel_carrier"


class Call:
    """One traced deployment call from the ingress: its CLIENT span, named
    ``{gen_ai.operation.name} {model id}`` (``chat smollm2-135m-instruct``), and the carrier of
    its context. Made by :func:`start_call`; ended once (later ends are ignored)."""

    __slots__ = ("span", "op", "model_id", "carrier", "_ended")

    def __init__(self, span: Span, op: Operation, model_id: str, carrier: dict[str, str]):
        self.span, self.op, self.model_id, self.carrier = span, op, model_id, carrier
        self._ended = False

    def with_carrier(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The handle call's keyword arguments plus :data:`CARRIER_KWARG`."""
        return {**kwargs, CARRIER_KWARG: self.carrier}

    def observe(self, value: Any) -> None:
        """Read attributes off a result or a streamed item (token counts on the last chat item)."""
        attrs = safe_attributes(self.op.result, value)
        if attrs:
            self.span.set_attributes(attrs)

    def end(self, result: Any = None, error: BaseException | None = None, cancelled: bool = False) -> None:
        """End the span: ``result`` (a unary call's) read as :meth:`observe`; ``error`` recorded
        with ERROR status; ``cancelled`` (or a ``CancelledError``) marked ``omniserve.cancelled``."""
        if self._ended:
            return
        self._ended = True
        if result is not None:
            self.observe(result)
        if error is None and not cancelled:
            self.span.set_attribute("gen_ai.response.model", self.model_id)
        end_span(self.span, error, cancelled)


def start_call(model: Any, method: str, args: tuple, kwargs: dict) -> Call | None:
    """The CLIENT span of ``handle.<method>.remote(*args, **kwargs)`` to ``model`` (a
    :class:`~deployments.config.ModelConfig`: ``id``, ``deployment_name``), child of the current
    span; ``None`` (nothing made) when traces are off, the method is not in
    :data:`~deployments.tracing.operations.OPERATIONS`, or no recording span is current (a
    background call, or an unsampled trace)."""
    if not active():
        return None
    op = OPERATIONS.get(method)
    if op is None:
        return None
    parent = otel_context.get_current()
    if not trace.get_current_span(parent).is_recording():
        return None
    attrs = rpc_attributes(op, model.id, model.deployment_name, method)
    attrs.update(safe_attributes(op.request, args, kwargs))
    span = tracer().start_span(f"{op.name} {model.id}", context=parent, kind=SpanKind.CLIENT, attributes=attrs)
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span, parent))
    return Call(span, op, model.id, carrier)


class TracedStream:
    """A model stream (Serve's ``DeploymentResponseGenerator``) whose CLIENT span lasts until it
    ends: exhausted, failed, or ``cancel()``-ed. Iterate it, ``cancel()`` it, read other
    attributes through to the stream, exactly as the stream itself."""

    def __init__(self, stream: Any, call: Call):
        self._stream = stream
        self._call = call

    def __aiter__(self) -> TracedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._stream.__anext__()
        except StopAsyncIteration:
            self._call.end()
            raise
        except BaseException as exc:
            self._call.end(error=exc)
            raise
        self._call.observe(item)
        return item

    def cancel(self) -> None:
        """Cancel the stream on its replica; the span ends marked ``omniserve.cancelled`` unless
        the stream had already ended."""
        self._call.end(cancelled=True)
        self._stream.cancel()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _ClientSpan:
    """Context manager of a CLIENT span around a call that is no model call (admission)."""

    __slots__ = ("_name", "_attrs", "span")

    def __init__(self, name: str, attributes: dict[str, Any]):
        self._name, self._attrs = name, attributes
        self.span: Span | None = None

    def __enter__(self) -> _ClientSpan:
        self.span = tracer().start_span(self._name, kind=SpanKind.CLIENT, attributes=self._attrs)
        return self

    def set(self, attributes: Mapping[str, Any]) -> None:
        if self.span is not None:
            self.span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        end_span(self.span, exc)


class _NoClientSpan:
    __slots__ = ()

    def __enter__(self) -> _NoClientSpan:
        return self

    def set(self, attributes: Mapping[str, Any]) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


_NO_CLIENT_SPAN = _NoClientSpan()


def client_span(deployment: str, method: str) -> _ClientSpan | _NoClientSpan:
    """``with client_span("AdmissionServer", "admit") as s:`` a CLIENT span ``{deployment}.{method}``
    (``rpc.*`` attributes; ``s.set({...})`` adds more) around a handle call that carries no
    context (the callee records no span), child of the current span; a no-op when traces are
    off or no recording span is current."""
    if not active() or not trace.get_current_span().is_recording():
        return _NO_CLIENT_SPAN
    attrs = {"rpc.system": "ray_serve", "rpc.service": deployment, "rpc.method": method}
    return _ClientSpan(f"{deployment}.{method}", attrs)

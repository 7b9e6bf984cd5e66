"""The replica side of a traced deployment call: the SERVER span a model server records for it.

:func:`traced` wraps each model server method named in
:data:`~deployments.tracing.operations.OPERATIONS`: a call that carries the ingress's trace
context (:data:`~deployments.tracing.calls.CARRIER_KWARG`) records the replica's own span,
child of the ingress's CLIENT span, in the same trace, with the GenAI attributes of the call.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind

from deployments.tracing.calls import CARRIER_KWARG
from deployments.tracing.operations import OPERATIONS, Operation, end_span, rpc_attributes, safe_attributes
from deployments.tracing.provider import active, tracer


def traced(fn: Callable) -> Callable:
    """Wrap a model server's method (named in :data:`~deployments.tracing.operations.OPERATIONS`)
    so that a call carrying :data:`~deployments.tracing.calls.CARRIER_KWARG` records a SERVER span
    in the replica, child of the ingress's CLIENT span: ``{operation} {model id}`` with the GenAI
    attributes of its arguments and its result (or of each streamed item),
    ``gen_ai.response.model`` and ``omniserve.backend``.

    The wrappers read the on/off state through :func:`~deployments.tracing.provider.active`, never
    the module global itself: a Serve deployment class is pickled by value (its module-level name
    is the ``Deployment``), and a function pickled by value carries a copy of the globals it
    names, taken in the process that built the application, while module-level functions travel
    by reference.

    The keyword is always popped, so a replica whose own tracing is off still answers a traced
    caller. Without it (traces off, or an untraced caller) the method runs as it is: one ``dict``
    lookup more. An async generator method becomes a coroutine method returning the async
    generator (Serve awaits it, then streams the generator), so nothing wraps its items then.
    The server object must have ``model_id`` and ``config`` (a ``ModelConfig``).

    Raises:
        TypeError: ``fn`` is neither an ``async def`` nor an async generator function.
        KeyError: ``fn``'s name is not in :data:`~deployments.tracing.operations.OPERATIONS`.
    """
    op = OPERATIONS[fn.__name__]
    method = fn.__name__

    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def stream_method(self: Any, *args: Any, **kwargs: Any) -> Any:
            carrier = kwargs.pop(CARRIER_KWARG, None)
            gen = fn(self, *args, **kwargs)
            if carrier is None or not active():
                return gen
            return _served_stream(gen, _served_span(self, op, method, carrier, args, kwargs), op)

        stream_method.__omniserve_traced__ = op.name  # type: ignore[attr-defined]
        return stream_method

    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"traced() wraps async methods; {fn.__qualname__} is neither async nor an async generator")

    @functools.wraps(fn)
    async def unary_method(self: Any, *args: Any, **kwargs: Any) -> Any:
        carrier = kwargs.pop(CARRIER_KWARG, None)
        if carrier is None or not active():
            return await fn(self, *args, **kwargs)
        span = _served_span(self, op, method, carrier, args, kwargs)
        try:
            result = await fn(self, *args, **kwargs)
        except BaseException as exc:
            end_span(span, exc)
            raise
        span.set_attributes(safe_attributes(op.result, result))
        end_span(span)
        return result

    unary_method.__omniserve_traced__ = op.name  # type: ignore[attr-defined]
    return unary_method


def _served_span(server: Any, op: Operation, method: str, carrier: dict, args: tuple, kwargs: dict) -> Span:
    config = server.config
    attrs = rpc_attributes(op, server.model_id, config.deployment_name, method)
    attrs.update(safe_attributes(op.request, args, kwargs))
    attrs["gen_ai.response.model"] = server.model_id
    attrs["omniserve.backend"] = config.backend
    return tracer().start_span(
        f"{op.name} {server.model_id}", context=propagate.extract(carrier), kind=SpanKind.SERVER, attributes=attrs
    )


async def _served_stream(gen: Any, span: Span, op: Operation) -> AsyncIterator[Any]:
    error: BaseException | None = None
    try:
        async for item in gen:
            if op.result is not None:
                attrs = safe_attributes(op.result, item)
                if attrs:
                    span.set_attributes(attrs)
            yield item
    except BaseException as exc:  # GeneratorExit / CancelledError: the caller stopped it
        error = exc
        raise
    finally:
        try:
            await gen.aclose()
        finally:
            end_span(span, error)

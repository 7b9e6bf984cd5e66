"""OpenTelemetry traces across the deployments, configured only by the standard ``OTEL_*`` variables.

One trace per REST request (a SERVER span at the ingress, continuing the client's W3C
``traceparent`` / ``tracestate``) and one per realtime turn (a root ``realtime.turn`` span), with
a CLIENT span per deployment call made for it (:func:`start_call`, in
:class:`deployments.state.IngressState`) and, inside the model replica, that call's own SERVER span
(:func:`traced`), child of the client span, in the same trace. Attributes follow OpenTelemetry's
GenAI conventions where they exist (``gen_ai.operation.name``, ``gen_ai.request.model``,
``gen_ai.response.model``, ``gen_ai.request.max_tokens`` / ``temperature`` / ``top_p`` /
``seed`` / ``stop_sequences``, ``gen_ai.usage.input_tokens`` / ``output_tokens``,
``gen_ai.response.finish_reasons``, ``gen_ai.embeddings.dimension.count``,
``gen_ai.conversation.id``), the RPC ones for the handle call (``rpc.system`` ``ray_serve``,
``rpc.service`` the deployment, ``rpc.method``) and the HTTP server ones for the ingress span
(``http.request.method``, ``http.route``, ``http.response.status_code``, ``url.path``,
``url.scheme``). Operations the GenAI conventions do not name are named here:
``transcription`` (STT), ``speech`` (TTS, with ``gen_ai.output.type`` ``speech``),
``voice_activity`` and ``end_of_turn`` (VAD). No prompt, transcript or message content is
recorded.

On and off
    Off unless an exporter is asked for: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (OTLP over HTTP/protobuf), or ``OTEL_TRACES_EXPORTER``
    naming ``otlp`` and/or ``console`` (``none`` turns traces off). ``OTEL_SDK_DISABLED=true``
    wins over all of them. Everything else is the SDK's own reading of the environment: the
    exporter's endpoint, headers, timeout and compression (``OTEL_EXPORTER_OTLP_*``), the sampler
    (``OTEL_TRACES_SAMPLER`` / ``_ARG``, default ``parentbased_always_on``), the batch processor
    (``OTEL_BSP_*``), the propagators (``OTEL_PROPAGATORS``, default W3C ``tracecontext,baggage``)
    and the resource (``OTEL_SERVICE_NAME``, default ``omniserve``, and
    ``OTEL_RESOURCE_ATTRIBUTES``; each replica adds ``service.instance.id`` (its Serve replica
    id), ``omniserve.deployment`` and ``omniserve.application``). ``OTEL_PYTHON_EXCLUDED_URLS``
    (or ``OTEL_PYTHON_ASGI_EXCLUDED_URLS``), comma-separated regular expressions searched in the
    path, keeps requests such as probes out of the traces. Only HTTP/protobuf OTLP is installed: a
    ``grpc`` protocol is warned about and HTTP is used.

    Replicas inherit the environment their Ray node was started with (``ray start`` on a KubeRay
    pod, ``scripts/serve.sh``), not later changes to the driver's: :func:`with_otel_env` copies
    the building process's ``OTEL_*`` variables into each deployment's
    ``ray_actor_options.runtime_env.env_vars`` when any is set (the app builder applies it).

    When off, :func:`setup` builds nothing, the ingress installs no tracing middleware, and the
    hot path is one module-global check per call (:func:`start_call` returns ``None``; the
    replica wrapper pops a keyword that is never sent): no span object, no context copy.

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
    the ``OTEL_*`` contract, so this module carries the W3C context itself: the ingress injects it
    (``opentelemetry.propagate.inject``, so ``OTEL_PROPAGATORS`` applies) into a small ``dict``
    passed as the reserved keyword :data:`CARRIER_KWARG` of the handle call, and the replica's
    :func:`traced` wrapper pops it and starts its span from it. Serve's tracing should stay off
    (its default) beside this one.

FastAPI's own telemetry (``fastapi.telemetry``, in the locked FastAPI 0.165)
    It records a SERVER span for every request (and one per WebSocket connection, its whole
    life) as soon as any TracerProvider is configured. ``pyproject.toml`` allows
    ``fastapi>=0.115``, whose older releases have none, and the realtime WebSocket is traced here
    per turn, so the ingress keeps its own middleware (``deployments.http.TracingMiddleware``,
    :func:`start_http`) and turns FastAPI's tracing off while ours is on
    (``FastAPI(telemetry={"tracing": False})`` where FastAPI takes it): one server span a request.

This module imports nothing else of :mod:`deployments` (a leaf), so every layer may use it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib.metadata
import inspect
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import ray
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from ray import serve

logger = logging.getLogger("ray.serve")

#: The reserved keyword of a traced handle call: the W3C trace context (``{"traceparent": ...}``)
#: of the ingress's CLIENT span. Sent only while tracing is on; the replica's :func:`traced`
#: wrapper always pops it, so a method never sees it.
CARRIER_KWARG = "_otel_carrier"
#: ``service.name`` unless ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` name one.
DEFAULT_SERVICE_NAME = "omniserve"
#: Instrumentation scope name of every span made here.
SCOPE_NAME = "omniserve"
#: The variables that ask for an exporter (any one turns traces on, unless ``OTEL_SDK_DISABLED``).
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
EXCLUDED_URLS_VARS = ("OTEL_PYTHON_ASGI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")

# Context key under which a context attached here carries its :class:`Scope` (REST request,
# realtime turn or connect): ``annotate`` and ``fallback`` look for it.
_SCOPE_KEY = otel_context.create_key("omniserve-scope")

_lock = threading.Lock()
_setup_done = False
_enabled = False
_tracer: trace.Tracer | None = None
_excluded: re.Pattern[str] | None = None


# ---------------------------------------------------------------------------------- configuration
def exporter_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The span exporters the environment asks for (``["otlp"]``, ``["console"]``, both, or ``[]``
    for off): ``OTEL_TRACES_EXPORTER`` when set (comma-separated, ``none`` dropped), else ``otlp``
    when an OTLP endpoint variable (:data:`ENDPOINT_VARS`) is set; ``[]`` whenever
    ``OTEL_SDK_DISABLED`` is ``true``."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if names:
        return [n for n in (p.strip().lower() for p in names.split(",")) if n and n != "none"]
    return ["otlp"] if any(env.get(v, "").strip() for v in ENDPOINT_VARS) else []


def configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment turns traces on (see :func:`exporter_names`)."""
    return bool(exporter_names(environ))


def otel_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every ``OTEL_*`` variable of the environment (``{}`` when none is set)."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k.startswith("OTEL_")}


def with_otel_env(options: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``Deployment.options(...)`` keyword arguments with this process's ``OTEL_*`` variables added
    to ``ray_actor_options.runtime_env.env_vars``, so the replicas trace as the process that built
    the application asks; ``options`` itself, unchanged, when no ``OTEL_*`` variable is set.

    A deployment with a ``runtime_env`` of its own no longer gets Serve's default (the job's,
    ``ray.get_runtime_context().runtime_env``), so that default is copied in first; variables the
    deployment sets itself win over the forwarded ones.
    """
    env = otel_env(environ)
    if not env:
        return options
    actor = dict(options.get("ray_actor_options") or {})
    runtime_env = dict(actor.get("runtime_env") or _default_runtime_env())
    runtime_env["env_vars"] = {**env, **(runtime_env.get("env_vars") or {})}
    actor["runtime_env"] = runtime_env
    return {**options, "ray_actor_options": actor}


def _default_runtime_env() -> dict[str, Any]:
    try:
        return dict(ray.get_runtime_context().runtime_env or {}) if ray.is_initialized() else {}
    except Exception:  # no Ray context: nothing to inherit
        return {}


def setup() -> bool:
    """Build this process's TracerProvider once, if the environment turns traces on.

    Idempotent and thread-safe; call it in each replica's constructor (the ingress's
    :class:`~deployments.state.IngressState` and every model server do). The provider gets a
    ``BatchSpanProcessor`` per exporter (:func:`exporter_names`: ``OTLPSpanExporter()``, which
    reads ``OTEL_EXPORTER_OTLP_*`` itself, or ``ConsoleSpanExporter``), the SDK's sampler from
    ``OTEL_TRACES_SAMPLER`` and the resource described in the module docstring; it becomes the
    global provider too unless one was set before. A failure logs and leaves traces off.

    Returns:
        Whether traces are on in this process.
    """
    global _setup_done, _enabled, _tracer, _excluded
    with _lock:
        if _setup_done:
            return _enabled
        _setup_done = True
        names = exporter_names()
        if not names:
            return False
        try:
            exporters = _exporters(names)
            if not exporters:
                return False
            provider = TracerProvider(resource=_resource())
            for exporter in exporters:
                provider.add_span_processor(BatchSpanProcessor(exporter))
            if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                trace.set_tracer_provider(provider)
            _tracer = provider.get_tracer(SCOPE_NAME, _version())
            _excluded = _excluded_urls()
        except Exception:
            logger.exception("OpenTelemetry tracing could not be set up; traces stay off")
            return False
        _enabled = True
        logger.info("OpenTelemetry traces on: exporters %s", ",".join(names))
        return True


def active() -> bool:
    """Whether this process records traces (:func:`setup` found them on). The one check the hot
    path makes when they are off."""
    return _enabled


def _exporters(names: list[str]) -> list[SpanExporter]:
    out: list[SpanExporter] = []
    for name in names:
        if name == "otlp":
            protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            if protocol.strip() != "http/protobuf":
                logger.warning("OTLP protocol %r is not installed here; exporting spans over http/protobuf", protocol)
            out.append(OTLPSpanExporter())
        elif name == "console":
            out.append(ConsoleSpanExporter())
        else:
            logger.warning("OTEL_TRACES_EXPORTER %r is not supported (otlp, console, none); ignored", name)
    return out


def _resource() -> Resource:
    env = OTELResourceDetector().detect().attributes
    attrs: dict[str, Any] = {"service.name": DEFAULT_SERVICE_NAME, "service.version": _version()}
    try:
        ctx = serve.get_replica_context()
        attrs.update(
            {
                "service.instance.id": ctx.replica_id.to_full_id_str(),
                "omniserve.deployment": ctx.deployment,
                "omniserve.application": ctx.app_name,
            }
        )
    except Exception:  # not inside a Serve replica
        pass
    return Resource.create({k: v for k, v in attrs.items() if k not in env and v})


def _version() -> str:
    try:
        return importlib.metadata.version("omniserve")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _excluded_urls() -> re.Pattern[str] | None:
    for var in EXCLUDED_URLS_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return re.compile("|".join(p.strip() for p in value.split(",") if p.strip()))
    return None


# ---------------------------------------------------------------------------------- operations
@dataclasses.dataclass(frozen=True)
class Operation:
    """How one deployment method is traced: its ``gen_ai.operation.name`` and the attributes read
    from its arguments (``request(args, kwargs)``) and from its result or each streamed item
    (``result(value)``). Both sides use the same functions: the ingress's CLIENT span and the
    replica's SERVER span carry the same GenAI attributes."""

    name: str
    request: Callable[[tuple, dict], dict[str, Any]] | None = None
    result: Callable[[Any], dict[str, Any]] | None = None


def _arg(args: tuple, kwargs: dict, index: int, name: str) -> Any:
    return kwargs[name] if name in kwargs else (args[index] if len(args) > index else None)


def _chat_request(args: tuple, kwargs: dict) -> dict[str, Any]:
    params = _arg(args, kwargs, 1, "params") or {}
    out: dict[str, Any] = {}
    for key in ("max_tokens", "temperature", "top_p", "seed"):
        if params.get(key) is not None:
            out[f"gen_ai.request.{key}"] = params[key]
    if params.get("stop"):
        out["gen_ai.request.stop_sequences"] = [str(s) for s in params["stop"]]
    tools = _arg(args, kwargs, 2, "tools")
    if tools:
        out["omniserve.chat.tools"] = len(tools)
    return out


def _chat_item(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or not item.get("finish_reason"):
        return {}
    return {
        "gen_ai.usage.input_tokens": int(item.get("prompt_tokens") or 0),
        "gen_ai.usage.output_tokens": int(item.get("completion_tokens") or 0),
        "gen_ai.response.finish_reasons": [str(item["finish_reason"])],
    }


def _embed_request(args: tuple, kwargs: dict) -> dict[str, Any]:
    texts = _arg(args, kwargs, 0, "texts")
    return {"omniserve.embeddings.inputs": len(texts)} if texts is not None else {}


def _embed_result(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        return {}
    out = {"gen_ai.usage.input_tokens": int(result.get("prompt_tokens") or 0)}
    shape = getattr(result.get("vectors"), "shape", None)
    if shape is not None and len(shape) == 2:
        out["gen_ai.embeddings.dimension.count"] = int(shape[1])
    return out


def _transcription_result(result: Any) -> dict[str, Any]:
    if isinstance(result, dict) and result.get("type") == "done":  # transcribe_stream's last item
        result = result.get("transcription")
    if not isinstance(result, dict) or "duration" not in result:
        return {}
    out = {"omniserve.audio.input_seconds": float(result.get("duration") or 0.0)}
    if result.get("language"):
        out["omniserve.stt.language"] = str(result["language"])
    return out


def _speech_request(args: tuple, kwargs: dict) -> dict[str, Any]:
    text = _arg(args, kwargs, 0, "text")
    out: dict[str, Any] = {"gen_ai.output.type": "speech"}
    if isinstance(text, str):
        out["omniserve.tts.input_characters"] = len(text)
    voice = kwargs.get("voice")
    if voice:
        out["omniserve.tts.voice"] = str(voice)
    if kwargs.get("response_format"):
        out["omniserve.tts.format"] = str(kwargs["response_format"])
    return out


def _vad_request(args: tuple, kwargs: dict) -> dict[str, Any]:
    frames = _arg(args, kwargs, 0, "frames")
    return {"omniserve.vad.frames": len(frames)} if frames is not None else {}


def _end_of_turn_result(result: Any) -> dict[str, Any]:
    return {"omniserve.vad.end_of_turn_probability": float(result)} if isinstance(result, (int, float)) else {}


#: Deployment method name -> how it is traced. Only these methods get spans and a carrier; the
#: model servers wrap each of them with :func:`traced` (``tests/test_tracing.py`` checks that).
OPERATIONS: dict[str, Operation] = {
    "chat": Operation("chat", _chat_request, _chat_item),
    "embed": Operation("embeddings", _embed_request, _embed_result),
    "transcribe": Operation("transcription", None, _transcription_result),
    "transcribe_stream": Operation("transcription", None, _transcription_result),
    "speech": Operation("speech", _speech_request),
    "pcm": Operation("speech", _speech_request),
    "score": Operation("voice_activity", _vad_request),
    "end_of_turn": Operation("end_of_turn", None, _end_of_turn_result),
    "speech_timestamps": Operation("voice_activity"),
}


def _rpc_attributes(op: Operation, model_id: str, deployment: str, method: str) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": op.name,
        "gen_ai.request.model": model_id,
        "rpc.system": "ray_serve",
        "rpc.service": deployment,
        "rpc.method": method,
    }


def _safe(fn: Callable[..., dict[str, Any]] | None, *args: Any) -> dict[str, Any]:
    """Attributes from an extractor; a tracing bug never fails the call it describes."""
    if fn is None:
        return {}
    try:
        return fn(*args)
    except Exception:  # pragma: no cover - defensive
        return {}


def _end_span(span: Span, error: BaseException | None = None, cancelled: bool = False) -> None:
    if cancelled or isinstance(error, asyncio.CancelledError | GeneratorExit):
        span.set_attribute("omniserve.cancelled", True)
    elif error is not None:
        span.record_exception(error)
        span.set_attribute("error.type", type(error).__qualname__)
        span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
    span.end()


# ---------------------------------------------------------------------------------- ingress: calls
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
        attrs = _safe(self.op.result, value)
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
        _end_span(self.span, error, cancelled)


def start_call(model: Any, method: str, args: tuple, kwargs: dict) -> Call | None:
    """The CLIENT span of ``handle.<method>.remote(*args, **kwargs)`` to ``model`` (a
    :class:`~deployments.config.ModelConfig`: ``id``, ``deployment_name``), child of the current
    span; ``None`` (nothing made) when traces are off, the method is not in :data:`OPERATIONS`,
    or no recording span is current (a background call, or an unsampled trace)."""
    if not _enabled:
        return None
    op = OPERATIONS.get(method)
    if op is None:
        return None
    parent = otel_context.get_current()
    if not trace.get_current_span(parent).is_recording():
        return None
    attrs = _rpc_attributes(op, model.id, model.deployment_name, method)
    attrs.update(_safe(op.request, args, kwargs))
    span = _tracer.start_span(f"{op.name} {model.id}", context=parent, kind=SpanKind.CLIENT, attributes=attrs)
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


# ---------------------------------------------------------------------------------- replica side
def traced(fn: Callable) -> Callable:
    """Wrap a model server's method (named in :data:`OPERATIONS`) so that a call carrying
    :data:`CARRIER_KWARG` records a SERVER span in the replica, child of the ingress's CLIENT
    span: ``{operation} {model id}`` with the GenAI attributes of its arguments and its result
    (or of each streamed item), ``gen_ai.response.model`` and ``omniserve.backend``.

    The wrappers read the on/off state through :func:`active`, never the module global itself:
    a Serve deployment class is pickled by value (its module-level name is the ``Deployment``),
    and a function pickled by value carries a copy of the globals it names, taken in the process
    that built the application, while module-level functions travel by reference.

    The keyword is always popped, so a replica whose own tracing is off still answers a traced
    caller. Without it (traces off, or an untraced caller) the method runs as it is: one ``dict``
    lookup more. An async generator method becomes a coroutine method returning the async
    generator (Serve awaits it, then streams the generator), so nothing wraps its items then.
    The server object must have ``model_id`` and ``config`` (a ``ModelConfig``).

    Raises:
        TypeError: ``fn`` is neither an ``async def`` nor an async generator function.
        KeyError: ``fn``'s name is not in :data:`OPERATIONS`.
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
            _end_span(span, exc)
            raise
        span.set_attributes(_safe(op.result, result))
        _end_span(span)
        return result

    unary_method.__omniserve_traced__ = op.name  # type: ignore[attr-defined]
    return unary_method


def _served_span(server: Any, op: Operation, method: str, carrier: dict, args: tuple, kwargs: dict) -> Span:
    config = server.config
    attrs = _rpc_attributes(op, server.model_id, config.deployment_name, method)
    attrs.update(_safe(op.request, args, kwargs))
    attrs["gen_ai.response.model"] = server.model_id
    attrs["omniserve.backend"] = config.backend
    return _tracer.start_span(
        f"{op.name} {server.model_id}", context=propagate.extract(carrier), kind=SpanKind.SERVER, attributes=attrs
    )


async def _served_stream(gen: Any, span: Span, op: Operation) -> AsyncIterator[Any]:
    error: BaseException | None = None
    try:
        async for item in gen:
            if op.result is not None:
                attrs = _safe(op.result, item)
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
            _end_span(span, error)


# ---------------------------------------------------------------------------------- scopes
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
        _end_span(self.span, error)

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
    if not _enabled:
        return
    scope = otel_context.get_value(_SCOPE_KEY)
    if isinstance(scope, Scope):
        scope.set(attributes)


def annotate_response(response: Mapping[str, Any]) -> None:
    """:func:`annotate` the current turn with a realtime ``response`` object (``response.done``'s):
    ``gen_ai.response.id``, ``gen_ai.usage.input_tokens`` / ``output_tokens``,
    ``omniserve.realtime.response.status`` and each latency of its ``metadata`` (ms) as
    ``omniserve.realtime.<name>``."""
    if not _enabled:
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
    if not _enabled:
        return None
    attrs = {
        "gen_ai.conversation.id": session_id,
        "gen_ai.request.model": model,
        "omniserve.realtime.turn.kind": kind,
    }
    span = _tracer.start_span(
        "realtime.turn",
        context=otel_context.Context(),
        kind=SpanKind.SERVER,
        attributes=attrs,
        links=[link] if link is not None else None,
    )
    return Scope(span)


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
    if not _enabled:
        return None
    path = scope.get("path", "")
    if _excluded is not None and _excluded.search(path):
        return None
    headers = _headers(scope)
    parent = propagate.extract(headers)
    method = scope.get("method", "GET")
    attrs = {"http.request.method": method, **_server_attributes(scope, headers)}
    span = _tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attrs)
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
    if not _enabled:
        return None
    headers = _headers(scope)
    parent = propagate.extract(headers)
    attrs = {"http.request.method": "GET", **_server_attributes(scope, headers)}
    span = _tracer.start_span("realtime.connect", context=parent, kind=SpanKind.SERVER, attributes=attrs)
    return Scope(span, parent)


class _ClientSpan:
    """Context manager of a CLIENT span around a call that is no model call (admission)."""

    __slots__ = ("_name", "_attrs", "span")

    def __init__(self, name: str, attributes: dict[str, Any]):
        self._name, self._attrs = name, attributes
        self.span: Span | None = None

    def __enter__(self) -> _ClientSpan:
        self.span = _tracer.start_span(self._name, kind=SpanKind.CLIENT, attributes=self._attrs)
        return self

    def set(self, attributes: Mapping[str, Any]) -> None:
        if self.span is not None:
            self.span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        _end_span(self.span, exc)


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
    if not _enabled or not trace.get_current_span().is_recording():
        return _NO_CLIENT_SPAN
    attrs = {"rpc.system": "ray_serve", "rpc.service": deployment, "rpc.method": method}
    return _ClientSpan(f"{deployment}.{method}", attrs)

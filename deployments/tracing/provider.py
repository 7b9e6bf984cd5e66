"""Whether this process records traces, and its TracerProvider, from the standard ``OTEL_*`` variables.

This module owns the process's tracing state (on or off, the tracer, the excluded URLs), set
once by :func:`setup` in each replica's constructor; the other modules of
:mod:`deployments.tracing` read it through :func:`active`, :func:`tracer` and :func:`excluded`.

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
    hot path is one check of :func:`active` per call
    (:func:`~deployments.tracing.calls.start_call` returns ``None``; the replica wrapper pops a
    keyword that is never sent): no span object, no context copy.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

import ray
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from ray import serve

logger = logging.getLogger("ray.serve")

#: ``service.name`` unless ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` name one.
DEFAULT_SERVICE_NAME = "omniserve"
#: Instrumentation scope name of every span :mod:`deployments.tracing` makes.
SCOPE_NAME = "omniserve"
#: The variables that ask for an exporter (any one turns traces on, unless ``OTEL_SDK_DISABLED``).
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
EXCLUDED_URLS_VARS = ("OTEL_PYTHON_ASGI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")

_lock = threading.Lock()
_setup_done = False
_enabled = False
_tracer: trace.Tracer | None = None
_excluded: re.Pattern[str] | None = None


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


def tracer() -> trace.Tracer | None:
    """The tracer of every span :mod:`deployments.tracing` makes (scope ``omniserve``); ``None``
    until :func:`setup` turned traces on, so call it only while :func:`active`."""
    return _tracer


def excluded(path: str) -> bool:
    """Whether ``OTEL_PYTHON_EXCLUDED_URLS`` (or ``OTEL_PYTHON_ASGI_EXCLUDED_URLS``) keeps a
    request for ``path`` out of the traces."""
    return _excluded is not None and _excluded.search(path) is not None


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

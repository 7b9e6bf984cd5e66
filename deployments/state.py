"""The role interface: what routes and realtime sessions call to reach the models.

:class:`IngressState` holds the configuration, the catalog and one ``DeploymentHandle`` per
model, and turns a role call into a handle call (cold start, backpressure, streaming). Routes
(``deployments.routes``) and the realtime engine (``deployments.realtime``) depend on this module
only, never on the ingress deployment (``deployments.ingress``) or the app factory
(``deployments.http``), so data flows one way: wire -> ingress -> role interface -> model.

Every model call leaves through :meth:`IngressState._call_once` or :meth:`IngressState.stream`;
with traces on (:mod:`deployments.tracing`) each records a CLIENT span there, child of the
request's or the realtime turn's span, and carries its context to the replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from deployments.admission.cluster import (
    live_replicas,
    model_preparing_error,
    read_deployment_states,
    wait_until_running,
    wake_up,
)
from deployments.admission.keys import ApiKeys
from deployments.catalog import Catalog
from deployments.config import AppConfig, ModelConfig
from deployments.errors import APIError, is_replica_loss, replica_lost
from deployments.metrics import Metrics
from deployments.scaling import store as scaling_store
from deployments.tracing import calls, provider
from deployments.usage import UsageMeter

logger = logging.getLogger("ray.serve")


class IngressState:
    """What the routes need: the configuration, the catalog and one handle per model.

    Args:
        config: the application configuration.
        handles: ``{model id: DeploymentHandle}`` for every configured model.
        app_name: the Serve application name (for reading deployment status), or ``None`` when
            running outside Serve.
    """

    STATUS_TTL_S = 1.0
    #: How long the one retry after a lost replica may take (s): time for Serve to route to
    #: another replica or start a replacement of a small model.
    REPLICA_RETRY_S = 60.0

    def __init__(
        self,
        config: AppConfig,
        handles: dict[str, DeploymentHandle],
        app_name: str | None,
        admission: DeploymentHandle | None = None,
        replica_id: str | None = None,
    ):
        provider.setup()  # this replica's TracerProvider, when OTEL_* turns traces on
        self.config = config
        self.catalog = Catalog(config)
        self.handles = handles
        self.app_name = app_name
        self.admission = admission
        self.replica_id = replica_id or "local"
        self.api_keys = ApiKeys.from_config(config.admission)
        #: per-key totals of ``/v1/usage``, summed in the admission service when there is one
        self.usage = UsageMeter(admission)
        #: this replica's omniserve_* series (none outside Serve or with ``server.metrics`` off)
        self.metrics = Metrics(enabled=config.server.metrics and app_name is not None, usage=self.usage)
        #: this replica's realtime :class:`~deployments.realtime.registry.SessionRegistry`, made by
        #: the realtime route on its first session (``None`` until then and without admission)
        self.session_registry: Any = None
        self.started_at = time.time()
        self._status: tuple[float, dict[str, dict]] | None = None
        self._info: dict[str, dict] = {}
        self._status_lock = asyncio.Lock()

    def handle(self, model: ModelConfig, stream: bool = False) -> DeploymentHandle:
        h = self.handles[model.id]
        return h.options(stream=True) if stream else h

    async def ensure_running(self, model: ModelConfig) -> None:
        """REST under cold start: when the model's deployment has no RUNNING replica (scaled to
        zero, or starting), trigger its scale-up and wait up to
        ``admission.rest_cold_start_wait_s``; then answer 503 ``model_preparing`` with
        ``Retry-After``.

        Raises:
            APIError: 503 ``model_preparing``.
        """
        if self.app_name is None:
            return
        info = (await self.deployment_states()).get(model.deployment_name)
        if info is not None and info["replica_states"].get("RUNNING", 0) > 0:
            return
        adm = self.config.admission
        if not await wait_until_running(
            model.deployment_name,
            adm.rest_cold_start_wait_s,
            trigger=self.handles[model.id],
            states=self.deployment_states,
        ):
            raise model_preparing_error(model.id, adm.preparing_retry_s)

    async def call(self, model: ModelConfig, method: str, *args: Any, **kwargs: Any) -> Any:
        """``await handle.<method>.remote(...)`` once the model runs (see :meth:`ensure_running`),
        mapping Serve's backpressure to a 503 envelope. A call whose replica dies before it
        answers (:func:`~deployments.errors.is_replica_loss`) is sent once more, to another or a
        replacement replica, for at most :attr:`REPLICA_RETRY_S`; model calls are stateless, so
        this is safe for every non-streamed request.

        Raises:
            APIError: 503 ``model_overloaded`` (backpressure) or ``model_unavailable`` (the
                replica was lost and the retry failed or timed out), with ``Retry-After``.
        """
        await self.ensure_running(model)
        return await self._retrying(model, method, lambda: self._call_once(model, method, args, kwargs))

    async def collect(self, model: ModelConfig, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Every item of the streaming method ``method``, for a response that is sent only once
        complete (non-streamed chat). Nothing has reached the client before it returns, so a
        replica lost at any point is handled as in :meth:`call`: the whole stream runs once more.

        Raises:
            APIError: as :meth:`call`.
        """
        await self.ensure_running(model)

        async def attempt() -> list[Any]:
            stream = self.stream(model, method, *args, **kwargs)
            try:
                return [item async for item in stream]
            finally:
                stream.cancel()

        return await self._retrying(model, method, attempt)

    async def start_stream(self, model: ModelConfig, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Open the streaming method ``method`` and wait for its first item, before a response's
        status line goes out: bad input surfaces as its 4xx here, and a replica lost before the
        first item is handled as in :meth:`call` (nothing was sent yet).

        Returns:
            ``(first item or None for an empty stream, the stream)``; read the rest with
            :func:`next_item`, and ``cancel()`` the stream when done.

        Raises:
            APIError: as :meth:`call`.
        """
        await self.ensure_running(model)

        async def attempt() -> tuple[Any, Any]:
            stream = self.stream(model, method, *args, **kwargs)
            try:
                return await next_item(stream), stream
            except BackPressureError as exc:
                stream.cancel()
                raise self._overloaded(model) from exc
            except BaseException:
                stream.cancel()
                raise

        return await self._retrying(model, method, attempt)

    async def _retrying(self, model: ModelConfig, method: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await attempt()
        except Exception as exc:
            if not is_replica_loss(exc):
                raise
            logger.warning("model '%s': replica lost during %s (%r); retrying once", model.id, method, exc)
        try:
            return await asyncio.wait_for(attempt(), timeout=self.REPLICA_RETRY_S)
        except Exception as exc:
            if not (is_replica_loss(exc) or isinstance(exc, asyncio.TimeoutError)):
                raise
            logger.error("model '%s': %s failed again after a replica loss: %r", model.id, method, exc)
            raise replica_lost(model.id, f"none answered within {self.REPLICA_RETRY_S:g} s") from exc

    async def _call_once(self, model: ModelConfig, method: str, args: tuple, kwargs: dict) -> Any:
        call = calls.start_call(model, method, args, kwargs)  # None unless traced (one check when off)
        if call is not None:
            kwargs = call.with_carrier(kwargs)
        try:
            result = await getattr(self.handle(model), method).remote(*args, **kwargs)
        except BackPressureError as exc:
            overloaded = self._overloaded(model)
            if call is not None:
                call.end(error=overloaded)
            raise overloaded from exc
        except BaseException as exc:
            if call is not None:
                call.end(error=exc)
            raise
        if call is not None:
            call.end(result)
        return result

    @staticmethod
    def _overloaded(model: ModelConfig) -> APIError:
        return APIError(
            503,
            f"model '{model.id}' is at capacity; retry shortly",
            code="model_overloaded",
            headers={"Retry-After": "1"},
        )

    async def model_info(self, model: ModelConfig) -> dict:
        """The model server's ``info()`` (voices, formats, sample rate...), fetched once."""
        if model.id not in self._info:
            self._info[model.id] = await self.call(model, "info")
        return self._info[model.id]

    def stream(self, model: ModelConfig, method: str, *args: Any, **kwargs: Any):
        """``handle.options(stream=True).<method>.remote(...)``: an async iterator of items
        (``cancel()`` stops it on its replica); traced, a
        :class:`~deployments.tracing.calls.TracedStream` whose span lasts as long as the stream."""
        call = calls.start_call(model, method, args, kwargs)
        if call is None:
            return getattr(self.handle(model, stream=True), method).remote(*args, **kwargs)
        try:
            stream = getattr(self.handle(model, stream=True), method).remote(*args, **call.with_carrier(kwargs))
        except BaseException as exc:
            call.end(error=exc)
            raise
        return calls.TracedStream(stream, call)

    async def deployment_states(self) -> dict[str, dict]:
        """``{deployment name: {"status": str, "replica_states": {state: count}, "alive": int,
        "unloaded_at": Unix s or None}}`` for this application: ``serve.status()``
        (:func:`~deployments.admission.cluster.read_deployment_states`), the replica actors still
        alive (:func:`~deployments.admission.cluster.live_replicas`) and, for model deployments,
        the admin's unload mark (:mod:`deployments.scaling.store`), cached for :attr:`STATUS_TTL_S`."""
        async with self._status_lock:
            now = time.monotonic()
            if self._status and now - self._status[0] < self.STATUS_TTL_S:
                return self._status[1]
            states: dict[str, dict] = {}
            if self.app_name is not None:
                states = await asyncio.to_thread(read_deployment_states, self.app_name)
                alive = await asyncio.to_thread(live_replicas, self.app_name)
                unloaded = await asyncio.to_thread(self._unload_marks)
                for name, info in states.items():
                    info["alive"] = alive.get(name, 0)
                    info["unloaded_at"] = unloaded.get(name)
            self._status = (now, states)
            return states

    def _unload_marks(self) -> dict[str, float]:
        """``{deployment name: unloaded since (Unix s)}`` of the unloaded models (blocking)."""
        marks = {}
        for m in self.config.models:
            at = scaling_store.unloaded_since(self.app_name or "", m.deployment_name)
            if at is not None:
                marks[m.deployment_name] = at
        return marks

    async def unload(self, model: ModelConfig) -> None:
        """Mark ``model`` unloaded: the autoscaling policy drops its floor to zero and Serve stops
        its replicas at its next control-loop tick (:mod:`deployments.scaling`). Requests that
        arrive later get the cold-start answer and start it again, as a model at zero replicas
        does."""
        await asyncio.to_thread(scaling_store.mark_unloaded, self.app_name or "", model.deployment_name, time.time())
        self._status = None

    async def live_bounds(self, model: ModelConfig) -> tuple[int, int] | None:
        """``(min_replicas, max_replicas)`` that the autoscaling policy applies to ``model`` now, as
        it published them from the deployment's live ``autoscaling_config``
        (:func:`~deployments.scaling.store.read_bounds`); ``None`` when the policy does not drive
        it or has not published yet."""
        if self.app_name is None:
            return None
        return await asyncio.to_thread(scaling_store.read_bounds, self.app_name, model.deployment_name, time.time())

    async def load(self, model: ModelConfig) -> None:
        """Undo :meth:`unload`: the floor is ``min_replicas`` again, so Serve starts replicas; a
        model whose ``min_replicas`` is 0 is woken by one cheap ``info()`` call, the way a
        request wakes it."""
        await asyncio.to_thread(scaling_store.clear_unloaded, self.app_name or "", model.deployment_name)
        self._status = None
        info = (await self.deployment_states()).get(model.deployment_name) or {}
        if not info.get("replica_states", {}).get("RUNNING"):
            wake_up(self.handles[model.id], timeout_s=max(60.0, self.config.admission.rest_cold_start_wait_s))


async def next_item(stream: Any) -> Any:
    """The next item of a model stream (a Serve streaming response), or ``None`` at its end."""
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None

"""The admission Serve deployment (exactly one replica) every ingress replica calls; it reads
capacity from ``serve.status()`` and writes its state through to Ray's internal KV (see the
package docstring)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from ray import serve

from deployments.admission.cluster import read_deployment_states, wake_up
from deployments.admission.config import AdmissionConfig
from deployments.admission.contract import internal_error_decision
from deployments.admission.core import AdmissionState
from deployments.admission.keys import ApiKeys
from deployments.admission.pods.watcher import WorkerPods
from deployments.kv import KV_NAMESPACE
from deployments.kv import kv as _kv
from deployments.metrics import Metrics
from deployments.scaling.store import DEMAND_REFRESH_S, Demand, write_demand
from deployments.usage import UsageLedger

logger = logging.getLogger("ray.serve")


@serve.deployment(num_replicas=1, max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})
class AdmissionServer:
    """The one admission service every ingress replica consults (exactly one replica).

    Args:
        config: :class:`AdmissionConfig` as a dict.
        roles: ``{role: deployment name}`` of the roles realtime sessions use (the cascade).
        handles: ``{deployment name: DeploymentHandle}``: called (``info()``) to wake a role that
            is scaled to zero when a session arrives.
        autoscaling: ``{deployment name: autoscaling_config dict or None (fixed num_replicas)}``,
            to tell "scaled to zero, can start" from "stopped".
        app_name: the application whose deployments are read (default: this replica's).
        metrics: record the ``omniserve_admission_*`` series (``server.metrics``).

    State is written through to Ray's internal KV (namespace ``omniserve``, key
    ``config.state_key`` or ``admission/<app name>``) before each answer; see the module
    docstring for why.
    """

    def __init__(
        self,
        config: dict | None = None,
        roles: dict[str, str] | None = None,
        handles: dict[str, Any] | None = None,
        autoscaling: dict[str, dict | None] | None = None,
        app_name: str | None = None,
        metrics: bool = True,
    ):
        self.config = AdmissionConfig.model_validate(config or {})
        self.roles = dict(roles or {})
        self.handles = dict(handles or {})
        self.autoscaling = autoscaling
        try:
            ctx = serve.get_replica_context()
            self.app_name = app_name or ctx.app_name
            self.replica_id = ctx.replica_id.to_full_id_str()
        except Exception:  # noqa: BLE001 - outside a replica (direct construction in tests)
            self.app_name = app_name
            self.replica_id = None
            metrics = False
        self.metrics = Metrics(enabled=metrics)
        #: the cluster's per-key usage totals (``/v1/usage``), sent by every ingress replica
        self.usage = UsageLedger()
        self.state_key = self.config.state_key or f"admission/{self.app_name}"
        self.keys = ApiKeys.from_config(self.config)
        self.restored = False
        self.state = self._load() or AdmissionState(self.config, keys=self.keys)
        self._persisted_version = self.state.version if self.restored else -1
        #: the RayCluster's worker pods on Kubernetes (None elsewhere: no client is created)
        self.pods = self._watch_pods()
        if self.pods is not None:
            self.state.capacity_eta = self.pods.eta
        self._persist_lock = asyncio.Lock()
        self._refresh_lock = asyncio.Lock()
        self._status_at = 0.0
        self._triggers: dict[str, asyncio.Task] = {}
        self._close_events: dict[str, asyncio.Event] = {}
        self._loop_task: asyncio.Task | None = None
        self._demand_lock = asyncio.Lock()
        self._published: tuple[dict[str, Demand], float] = ({}, 0.0)
        self.started_at = time.time()

    @staticmethod
    def _watch_pods() -> WorkerPods | None:
        try:
            return WorkerPods.from_environment()
        except Exception:  # noqa: BLE001 - no pod ETAs is better than no admission
            logger.exception("cannot watch the RayCluster's worker pods; ETAs use Serve start times only")
            return None

    # ------------------------------------------------------------ persistence

    def _load(self) -> AdmissionState | None:
        if not self.config.persist or (kv := _kv()) is None:
            return None
        try:
            blob = kv._internal_kv_get(self.state_key, namespace=KV_NAMESPACE)
            if not blob:
                return None
            st = AdmissionState.from_dict(json.loads(blob), self.config, keys=self.keys, resume=True)
            self.restored = True
            logger.info(
                "admission state restored from %s: %d sessions, %d reservations",
                self.state_key,
                len(st.sessions),
                len(st.queue),
            )
            return st
        except Exception:  # noqa: BLE001 - a broken blob must not keep the service down
            logger.exception("could not restore admission state %s; starting empty", self.state_key)
            return None

    async def _persist(self, covering: int | None = None) -> None:
        """Write the state through to the KV store.

        Group commit: a caller passes the state ``version`` its change produced; one write of
        the current state covers every change made before it, so callers queued behind a write
        that already covered their version return without writing again (a burst of N
        decisions costs about two writes, not N).
        """
        if not self.config.persist or (kv := _kv()) is None:
            return
        async with self._persist_lock:
            target = self.state.version if covering is None else covering
            if self._persisted_version >= target:
                return
            version = self.state.version
            blob = json.dumps(self.state.to_dict()).encode()
            await asyncio.to_thread(kv._internal_kv_put, self.state_key, blob, True, namespace=KV_NAMESPACE)
            self._persisted_version = version

    # ------------------------------------------------------------ scaling demand

    def demand(self) -> dict[str, Demand]:
        """``{deployment name: Demand}`` of every role realtime sessions use: the sessions that
        hold a slot (admitted, or reserved for a returning client) and those waiting. Each
        session takes one slot of every role, so the counts are the same for each role; the
        sessions one replica carries differ."""
        held, waiting = self.state.occupied(), len(self.state.waiting())
        return {name: Demand(held, waiting, self.config.sessions_for(role)) for role, name in self.roles.items()}

    async def _publish_demand(self) -> None:
        """Write :meth:`demand` for the autoscaling policy (:mod:`deployments.scaling.store`) when
        it changed, and at least every ``DEMAND_REFRESH_S`` so that it stays fresh."""
        if self.app_name is None or not self.roles:
            return
        async with self._demand_lock:
            demand, now = self.demand(), time.time()
            if demand == self._published[0] and now - self._published[1] < DEMAND_REFRESH_S:
                return
            await asyncio.to_thread(write_demand, self.app_name, demand, now)
            self._published = (demand, now)

    # ------------------------------------------------------------ backend status

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self._refresh(force=True)
                self.state.tick()
                await self._persist()
                self._wake_closes()
                await self._publish_demand()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                logger.exception("admission background loop")
            await asyncio.sleep(self.config.status_poll_s)

    async def _refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._status_at < self.config.status_poll_s:
            return
        async with self._refresh_lock:
            if not force and time.monotonic() - self._status_at < self.config.status_poll_s:
                return
            if self.roles and self.app_name is not None:
                states = await asyncio.to_thread(read_deployment_states, self.app_name)
            else:
                states = {}
            self.state.update_from_status(states, self.roles, self.autoscaling, triggered=self._triggered())
            self._status_at = time.monotonic()

    def _triggered(self) -> list[str]:
        return [n for n, t in self._triggers.items() if not t.done()]

    def _trigger(self, names: Iterable[str]) -> None:
        """Wake deployments at zero replicas: the arrival itself triggers the scale-up."""
        for name in names:
            handle = self.handles.get(name)
            if handle is None or (name in self._triggers and not self._triggers[name].done()):
                continue
            self._triggers[name] = wake_up(handle, timeout_s=self.config.start_timeout_s)

    def _wake_closes(self) -> None:
        for rid, ev in self._close_events.items():
            if self.state.pending_closes.get(rid):
                ev.set()

    # ------------------------------------------------------------ API (handle methods)

    async def admit(self, request: dict) -> dict:
        """Decide one realtime connection; see :meth:`AdmissionState.decide` for ``request``
        and the decision's shape. Never raises: internal failures come back as the 4500
        decision."""
        t0 = time.perf_counter()
        try:
            self._ensure_loop()
            await self._refresh()
            if self.state.backend.preparing:
                # the view may be up to status_poll_s old: right after start-up it can still show
                # replicas STARTING that now run; read again before turning a client away
                await self._refresh(force=True)
            decision = self.state.decide(request)
            version = self.state.version
            if decision["outcome"] in ("queued", "preparing") and self.state.backend.to_trigger:
                self._trigger(self.state.backend.to_trigger)
            await self._persist(covering=version)
            self._wake_closes()
            await self._publish_demand()
        except Exception as exc:  # noqa: BLE001
            logger.exception("admission failed")
            decision = internal_error_decision(f"admission failed: {type(exc).__name__}")
        self.metrics.decision(
            decision["outcome"],
            time.perf_counter() - t0,
            superseded=len(decision.get("supersede") or ()),
            queue_length=len(self.state.waiting()),
        )
        return decision

    async def record_usage(self, batch: dict[str, dict[str, float]]) -> None:
        """Add one ingress replica's usage since its last report (``{key_id: {field: delta}}``,
        :class:`deployments.usage.UsageMeter`)."""
        self.usage.merge(batch)

    async def usage_of(self, key_id: str) -> dict:
        """``{"key_id", "since" (Unix s), **totals}`` of one key (:data:`deployments.usage.FIELDS`)."""
        return {"key_id": key_id, "since": self.usage.started_at, **self.usage.totals(key_id)}

    async def release(self, session_id: str) -> bool:
        """The socket of an admitted session closed: free its slot at once."""
        self._ensure_loop()
        freed = self.state.release(session_id)
        await self._persist()
        await self._publish_demand()
        return freed

    async def heartbeat(self, replica_id: str, live_session_ids: list) -> dict:
        """Every ``heartbeat_interval_s`` from each ingress replica; see
        :meth:`AdmissionState.heartbeat`. Returns ``{"close": [...]}`` to perform."""
        self._ensure_loop()
        out = self.state.heartbeat(replica_id, live_session_ids)
        await self._persist()
        return out

    async def closes(self, replica_id: str, timeout_s: float = 0.0) -> list[dict]:
        """Long poll: sessions the ingress replica ``replica_id`` must close (4002 superseded).
        Returns at once when some are pending, else waits up to ``timeout_s`` seconds."""
        self._ensure_loop()
        ev = self._close_events.setdefault(replica_id, asyncio.Event())
        if not self.state.pending_closes.get(replica_id) and timeout_s > 0:
            ev.clear()
            try:
                await asyncio.wait_for(ev.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass
        self.state.replicas[replica_id] = self.state.clock()  # a long poll is a sign of life
        out = self.state.take_closes(replica_id)
        await self._persist()
        return out

    async def capacity(self) -> dict:
        """``{"capacity", "occupied", "free", "preparing", "preparing_eta_s", "unavailable",
        "unreachable", "roles": {role: {"deployment", "running", "starting", "state",
        "sessions_per_replica"}}, "override"}``."""
        self._ensure_loop()
        await self._refresh()
        b = self.state.backend
        return {
            "capacity": b.capacity,
            "occupied": self.state.occupied(),
            "free": self.state.free_slots(),
            "preparing": b.preparing,
            "preparing_eta_s": b.preparing_eta_s,
            "unavailable": b.unavailable,
            "unreachable": b.unreachable,
            "roles": b.roles,
            "override": self.config.capacity,
        }

    async def snapshot(self) -> dict:
        """Admin view: :meth:`AdmissionState.snapshot` plus this replica's identity and
        persistence facts."""
        self._ensure_loop()
        await self._refresh()
        return {
            **self.state.snapshot(),
            "admission_replica": self.replica_id,
            "app_name": self.app_name,
            "state_key": self.state_key,
            "restored": self.restored,
            "persisted": self._persisted_version == self.state.version,
            "uptime_s": round(time.time() - self.started_at, 3),
        }

    async def check_health(self) -> None:
        """Serve's health check; also starts the background loop after a restart."""
        self._ensure_loop()

"""Admission: one queue and one view of realtime-session capacity for every ingress replica.

The realtime WebSocket (``/v1/realtime``) admits a client onto the model stack or tells it to
wait. The outcome reaches the client as a status event (JSON) followed, unless it is admitted, by a
WebSocket close code: the Naia gateway's status contract (docs/admission.md), with the
setup frame of the Naia connection flow (docs/realtime.md) (``{"setup": {"apiKey", "locale",
"instanceId"}}``). Field names below are the contract's.

======================  =====  ==========================================================
event ``type``          close  fields (all times in seconds)
======================  =====  ==========================================================
``session.created``     —      ``session.id`` (admitted: configure with session.update)
``session.queued``      4503   ``position`` (0-based), ``queue_len`` (waiters incl. you),
                               ``reservation_token``, ``eta_s`` when an estimate exists,
                               ``instance``
``session.preparing``   4503   same as queued + ``eta_s`` (observed start times) and
                               ``provider`` ("local" on one machine)
``session.sold_out``    4503   ``retry_after_s``, ``tier_a_hint``
``session.consent_required`` 4409  ``branches`` (["replace", "add"] or ["replace"])
``session.error``       4503   ``error`` {message, type, code}: assigned, but a backend
                               deployment has no endpoint
``error``               4001   missing / invalid API key (``error.type`` authentication_error)
``error``               4003   key over its concurrent-session quota (insufficient_quota)
``error``               4500   any other internal failure (server_error)
(none, decided by the ingress) 4002  superseded: the account's session was replaced
======================  =====  ==========================================================

Consent (an extension of the setup frame, documented here): when the account already holds
``sessions_per_account`` live sessions the client receives ``session.consent_required`` and
repeats its setup frame with ``"consent": "replace"`` (the oldest live session of the account is
closed with 4002 and the new one takes its slot at once) or ``"consent": "add"`` (a further
session, allowed up to ``max_sessions_per_account``; it takes a slot like any other arrival and may
be queued). The ingress passes ``setup.consent`` as ``request["consent"]``.

Three layers live here:

* :class:`AdmissionState` — the pure-Python core (no Ray): slots, admitted sessions, the FIFO of
  reservations, held slots, per-account limits, consent and supersede bookkeeping, counters,
  ``mean_session_s``. It takes an injected clock and serialises to / from a dict.
* :class:`AdmissionServer` — the Serve deployment (exactly one replica) that every ingress
  replica calls through a handle; it reads capacity from ``serve.status()`` and persists the core.
* helpers for the ingress: :class:`ApiKeys` (REST and realtime auth), :func:`wait_until_running`
  and :func:`model_preparing_error` for REST requests under cold start (503 ``model_preparing``).

Persistence (why Ray's internal KV, plus ingress heartbeats)
------------------------------------------------------------
Queued clients hold no socket — they were closed with 4503 and come back later — so no ingress
replica knows their place: queue positions and reservations exist only in the admission service
and cannot be rebuilt from the ingress replicas. The state is therefore written through to Ray's
internal KV store (the GCS key-value store that Serve's own controller checkpoints into) after
every change and before the decision is returned, so a client is never told a position that a
restart could forget. A detached named actor would just move the single point of failure into
another process that needs persisting in turn; the GCS outlives any actor or replica, and with
GCS fault tolerance (KubeRay + Redis) it also outlives the head node.

Ingress heartbeats (:meth:`AdmissionServer.heartbeat`) complement it: every ingress replica
reports its live session ids every ``heartbeat_interval_s``. That reaps the sessions of an ingress
replica that died (no heartbeat for ``replica_timeout_s``) or that closed a socket without calling
``release``, re-adopts live sessions the store does not know (the KV was lost, e.g. a head restart
without GCS fault tolerance) and re-delivers 4002 closes that were not picked up.
After a restart every reservation, hold and ingress replica gets a fresh lease from the moment of
recovery (time the service was down does not count against clients that could not reach it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ray import serve

from deployments.errors import APIError
from deployments.metrics import Metrics
from deployments.protocol.realtime import (
    RealtimeServerEventSessionConsentRequired,
    RealtimeServerEventSessionCreated,
    RealtimeServerEventSessionError,
    RealtimeServerEventSessionSoldOut,
    RealtimeServerEventSessionWaiting,
    error_event,
)
from deployments.usage import UsageLedger

logger = logging.getLogger("ray.serve")

# ----------------------------------------------------------------------------------------------
# close codes (the gateway contract's WebSocket close codes, docs/admission.md)
# ----------------------------------------------------------------------------------------------

CLOSE_AUTH_FAILED = 4001
CLOSE_SUPERSEDED = 4002
CLOSE_INSUFFICIENT_CREDITS = 4003
CLOSE_CONSENT_REQUIRED = 4409
CLOSE_INTERNAL_ERROR = 4500
CLOSE_UNAVAILABLE = 4503

#: Outcome names (keys of the counters) in the order the admin view lists them.
OUTCOMES = (
    "created",
    "queued",
    "preparing",
    "sold_out",
    "consent_required",
    "session_error",
    "auth_failed",
    "quota_exceeded",
    "internal_error",
)

#: Bookkeeping counters besides the outcomes.
EVENTS = ("reattached", "superseded", "released", "reaped", "held", "lapsed", "readopted")

#: Replica states that count as "coming up" (Serve's ReplicaState values).
STARTING_STATES = ("STARTING", "UPDATING", "RECOVERING", "PENDING_MIGRATION")

KV_NAMESPACE = "omniserve"


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------


class ApiKey(BaseModel):
    """One API key with its owner: ``key_id`` is the non-secret name that quotas, usage, metrics
    and logs use (a team name; default ``key_`` + 12 hex of the key's SHA-256), ``role``
    ``admin`` may use ``/v1/admin/*`` and read any key's usage."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1)
    key_id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    role: Literal["user", "admin"] = "user"


class AdmissionConfig(BaseModel):
    """Admission of realtime sessions (``AppConfig.admission``). All durations in seconds.

    Capacity: each realtime session occupies one slot. Slots = ``sessions_per_replica[role]`` x
    RUNNING replicas, for each role the cascade uses; the tightest role decides. ``capacity``
    replaces that product with a fixed number (e.g. 1 in tests), but a role with no RUNNING
    replica still gives 0 slots. REST requests take no slot.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="off: the ingress admits every authenticated session without asking")
    capacity: int | None = Field(None, ge=0, description="fixed slot count instead of replicas x sessions_per_replica")
    sessions_per_replica: int | dict[str, int] = Field(
        4, description="realtime sessions one replica of a role carries; an int for every role or {role: n}"
    )
    sessions_per_account: int = Field(
        1, ge=0, description="live sessions an account holds before consent is asked (0: no limit)"
    )
    max_sessions_per_account: int = Field(2, ge=0, description="live sessions an account may hold with consent 'add'")
    max_queue: int = Field(100, ge=0, description="waiters beyond this get session.sold_out")
    reservation_ttl_s: float = Field(
        180.0,
        gt=0,
        description="a waiting reservation lapses this long after its owner was last seen (client backoff is 5..60 s)",
    )
    hold_grace_s: float = Field(
        90.0, gt=0, description="a slot freed for the head of the queue is held this long for its owner's reconnect"
    )
    preparing_retry_s: float = Field(
        10.0, gt=0, description="Retry-After of REST 503 model_preparing when no start time was observed"
    )
    cold_start_eta_s: float = Field(
        30.0, gt=0, description="eta_s of session.preparing before any start time was observed"
    )
    start_timeout_s: float = Field(
        900.0, gt=0, description="a role STARTING longer than this counts as unable to start (sold_out)"
    )
    sold_out_retry_after_s: float = Field(60.0, ge=0, description="retry_after_s of session.sold_out")
    tier_a_hint: str = Field(
        "naia-0.9-omni-24g runs locally on your own GPU: install Naia OS (offline tier)",
        description="tier_a_hint of session.sold_out: the local-model fallback",
    )
    provider: str = Field("local", description="provider of session.preparing")
    api_keys: list[str | ApiKey] = Field(
        default_factory=list,
        description="accepted API keys: a plain key (a user, key_id from its hash) or {key, key_id, role}; "
        "none anywhere = auth off",
    )
    api_keys_env: str | None = Field(
        "OMNISERVE_API_KEYS", description="environment variable with more keys (comma or whitespace separated)"
    )
    admin_keys_env: str | None = Field(
        "OMNISERVE_ADMIN_KEYS",
        description="environment variable with admin keys (comma or whitespace separated; role admin)",
    )
    api_keys_file: str | None = Field(
        None, description="secret file with more keys, one a line ('<key> [key_id [role]]'), '#' comments"
    )
    key_quotas: dict[str, int] = Field(
        default_factory=dict, description="max concurrent sessions per key (the key or its key_id); 4003 beyond"
    )
    default_key_quota: int | None = Field(None, ge=0, description="quota of keys not in key_quotas (None: unlimited)")
    rest_cold_start_wait_s: float = Field(
        30.0,
        ge=0,
        description="REST request for a model at zero replicas waits this long, then 503 model_preparing (0: at once)",
    )
    replica_timeout_s: float = Field(
        30.0, gt=0, description="an ingress replica silent this long is dead: its sessions are freed"
    )
    heartbeat_interval_s: float = Field(5.0, gt=0, description="how often each ingress replica should call heartbeat()")
    status_poll_s: float = Field(1.0, gt=0, description="how often the admission service reads serve.status()")
    persist: bool = Field(True, description="write the state through to Ray's internal KV (survives a restart)")
    state_key: str | None = Field(None, description="internal-KV key of the state (default admission/<app name>)")
    num_cpus: float = Field(0.0, ge=0, description="ray_actor_options.num_cpus of the AdmissionServer replica")
    max_ongoing_requests: int = Field(
        1000, ge=1, description="AdmissionServer.max_ongoing_requests (long polls hold one each)"
    )

    @model_validator(mode="after")
    def _check(self) -> AdmissionConfig:
        if self.sessions_per_account and self.max_sessions_per_account < self.sessions_per_account:
            raise ValueError("max_sessions_per_account must be >= sessions_per_account")
        spr = self.sessions_per_replica
        if isinstance(spr, int) and spr < 0 or isinstance(spr, dict) and any(v < 0 for v in spr.values()):
            raise ValueError("sessions_per_replica must be >= 0")
        return self

    def sessions_for(self, role: str) -> int:
        """Sessions one replica of ``role`` carries (default 4 for a role missing from the dict)."""
        spr = self.sessions_per_replica
        return spr if isinstance(spr, int) else spr.get(role, 4)

    def serve_options(self, name: str = "AdmissionServer") -> dict[str, Any]:
        """``Deployment.options(...)`` for :class:`AdmissionServer`: exactly one replica."""
        return {
            "name": name,
            "num_replicas": 1,
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus},
        }


# ----------------------------------------------------------------------------------------------
# API keys
# ----------------------------------------------------------------------------------------------


def key_id(key: str) -> str:
    """A key's public identifier (``key_`` + 12 hex of its SHA-256): logs, quotas, admin view."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class KeyCheck:
    """Result of :meth:`ApiKeys.check`. ``reason``: ``"missing"`` / ``"invalid"`` when not ok;
    ``role``: ``"user"`` or ``"admin"`` when ok (``"admin"`` for everyone with auth off)."""

    ok: bool
    key_id: str | None = None
    reason: str | None = None
    role: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.ok and self.role == "admin"


class ApiKeys:
    """The accepted API keys (optional: with none configured every request passes).

    Keys come from ``AdmissionConfig.api_keys``, the environment variables ``api_keys_env``
    (default ``OMNISERVE_API_KEYS``, comma or whitespace separated; users) and
    ``admin_keys_env`` (default ``OMNISERVE_ADMIN_KEYS``; admins), and ``api_keys_file``
    (one key a line, optionally followed by its ``key_id`` and role). Each key has a ``key_id``
    (its team's name, or one derived from its hash) and a role (``user`` or ``admin``). Only
    SHA-256 digests are kept; comparison is constant-time.

    Args:
        keys: the accepted keys, plain (a user) or :class:`ApiKey`.
        quotas: ``{key or key_id: max concurrent realtime sessions}``.
        default_quota: quota of keys absent from ``quotas`` (``None``: unlimited).
    """

    def __init__(
        self,
        keys: Iterable[str | ApiKey] = (),
        quotas: Mapping[str, int] | None = None,
        default_quota: int | None = None,
    ):
        entries = [k if isinstance(k, ApiKey) else ApiKey(key=k) for k in keys if k]
        self._digests = {hashlib.sha256(e.key.encode()).digest(): (e.key_id or key_id(e.key), e.role) for e in entries}
        named = {kid for kid, _ in self._digests.values()}
        self._quotas: dict[str, int] = {}
        for k, q in (quotas or {}).items():
            self._quotas[k if k in named or (k.startswith("key_") and len(k) == 16) else key_id(k)] = int(q)
        self.default_quota = default_quota

    @classmethod
    def from_config(cls, config: AdmissionConfig, environ: Mapping[str, str] | None = None) -> ApiKeys:
        """Collect keys from the configuration, its environment variable and its secret file.

        Raises:
            ValueError: ``api_keys_file`` is set but cannot be read.
        """
        environ = os.environ if environ is None else environ
        keys = list(config.api_keys)
        if config.api_keys_env and environ.get(config.api_keys_env):
            keys += environ[config.api_keys_env].replace(",", " ").split()
        if config.admin_keys_env and environ.get(config.admin_keys_env):
            keys += [ApiKey(key=k, role="admin") for k in environ[config.admin_keys_env].replace(",", " ").split()]
        if config.api_keys_file:
            try:
                text = Path(config.api_keys_file).read_text()
            except OSError as exc:
                raise ValueError(f"api_keys_file {config.api_keys_file!r}: {exc}") from exc
            for line in text.splitlines():
                fields = line.split()
                if not fields or fields[0].startswith("#"):
                    continue
                entry = {"key": fields[0], "key_id": fields[1] if len(fields) > 1 else None}
                if len(fields) > 2:
                    entry["role"] = fields[2]
                try:
                    keys.append(ApiKey(**entry))
                except ValidationError as exc:
                    raise ValueError(
                        f"api_keys_file {config.api_keys_file!r}: a bad line ({exc.errors()[0]['msg']})"
                    ) from None
        return cls(keys, config.key_quotas, config.default_key_quota)

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured (auth is required)."""
        return bool(self._digests)

    def check(self, key: str | None) -> KeyCheck:
        """Check a presented key (setup.apiKey, ``Authorization: Bearer``...).

        With auth off, a presented key is still identified (its key_id) so quotas can apply.
        """
        if not self.enabled:
            return KeyCheck(True, key_id(key) if key else None, role="admin")
        if not key:
            return KeyCheck(False, reason="missing")
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for d, owner in self._digests.items():  # no early exit: constant time in the key set
            if hmac.compare_digest(d, digest):
                found = owner
        return KeyCheck(True, found[0], role=found[1]) if found else KeyCheck(False, reason="invalid")

    def quota(self, kid: str | None) -> int | None:
        """Max concurrent realtime sessions of a key (``None``: unlimited)."""
        if kid is None:
            return None
        return self._quotas.get(kid, self.default_quota)


# ----------------------------------------------------------------------------------------------
# events
# ----------------------------------------------------------------------------------------------


def session_error_event(message: str, code: str = "no_endpoint") -> dict:
    """``session.error`` (close 4503): assigned, but the backend cannot be reached (docs/admission.md).
    The ingress sends it too when a role call fails right after admission (then it releases)."""
    return RealtimeServerEventSessionError(
        error={"message": message, "type": "backend_unreachable", "code": code}
    ).to_wire()


def internal_error_decision(message: str = "internal error in admission") -> dict:
    """The decision for an unexpected failure: ``error`` event + close 4500."""
    return _decision(
        "internal_error", error_event(message, type="server_error", code="internal_error"), CLOSE_INTERNAL_ERROR
    )


def _decision(outcome: str, event: dict, close_code: int | None, **extra: Any) -> dict:
    d = {
        "outcome": outcome,
        "event": event,
        "close_code": close_code,
        "session_id": None,
        "instance": None,
        "account": None,
        "key_id": None,
        "reservation_token": None,
        "supersede": [],
    }
    d.update(extra)
    return d


# ----------------------------------------------------------------------------------------------
# the core
# ----------------------------------------------------------------------------------------------


@dataclass
class Session:
    """An admitted realtime session: it occupies one slot until released."""

    session_id: str
    instance: str
    account: str | None
    key_id: str | None
    replica_id: str | None  # the ingress replica that holds the socket
    started_at: float


@dataclass
class Reservation:
    """A place in the FIFO. ``held_until`` is set once a slot is held for it (grace deadline)."""

    token: str
    instance: str
    account: str | None
    key_id: str | None
    enqueued_at: float
    last_seen: float
    ttl_s: float
    seq: int
    consent: str | None = None
    held_until: float | None = None

    @property
    def expires_at(self) -> float:
        return self.held_until if self.held_until is not None else self.last_seen + self.ttl_s


@dataclass
class BackendView:
    """What the model deployments allow right now (computed from ``serve.status()``).

    Attributes:
        capacity: slots (sessions the backends carry now).
        preparing: a role that decides capacity is starting or scaled to zero and can start.
        preparing_eta_s: estimated seconds until it runs (from observed start times).
        unavailable: why no replica can be started (-> ``session.sold_out``), or ``None``.
        unreachable: why a backend has no endpoint (-> ``session.error``), or ``None``.
        to_trigger: deployments at zero replicas that an arrival should wake (scale from zero).
        starting: deployments whose start decides when capacity grows (for ``eta_s``).
        roles: per-role detail for the admin view.
    """

    capacity: int = 0
    preparing: bool = False
    preparing_eta_s: float | None = None
    unavailable: str | None = None
    unreachable: str | None = None
    to_trigger: list[str] = field(default_factory=list)
    starting: list[str] = field(default_factory=list)
    roles: dict[str, dict] = field(default_factory=dict)


def _now_default() -> float:
    return time.time()


class AdmissionState:
    """The admission core: pure Python, no Ray, every time from the injected ``clock``.

    Slots: ``occupied = sessions + held slots``; ``free = capacity - occupied``. Whenever a slot
    is free and someone waits, the head of the FIFO gets a *held* slot for ``hold_grace_s``; its
    owner's next reconnect (same ``instance``) gets ``session.created``. Waiting reservations
    lapse ``reservation_ttl_s`` after their owner was last seen; held ones at their grace deadline.

    Clock: wall time (``time.time``) by default, because the state outlives the process (it is
    persisted and restored after a restart, possibly on another node).

    Args:
        config: the admission configuration.
        clock: returns the current time in seconds.
        keys: accepted API keys; default :meth:`ApiKeys.from_config` (reads env / file).
    """

    FORMAT = 1
    #: ended sessions are remembered this long (s) so a late heartbeat neither re-adopts them
    #: nor misses their 4002; bounded so the persisted blob stays small
    TOMBSTONE_S = 120.0
    MAX_TOMBSTONES = 2_000

    def __init__(
        self,
        config: AdmissionConfig | None = None,
        *,
        clock: Callable[[], float] = _now_default,
        keys: ApiKeys | None = None,
    ):
        self.config = config or AdmissionConfig()
        self.clock = clock
        self.keys = keys if keys is not None else ApiKeys.from_config(self.config)
        self.sessions: dict[str, Session] = {}
        self.queue: list[Reservation] = []  # FIFO by seq; held reservations stay in it
        self.replicas: dict[str, float] = {}  # ingress replica id -> last heartbeat
        self.pending_closes: dict[str, list[dict]] = {}  # ingress replica id -> closes to perform
        self.tombstones: dict[str, dict] = {}  # session id -> {"reason", "close_code", "until"}
        self.counters: dict[str, int] = {k: 0 for k in (*OUTCOMES, *EVENTS)}
        self.session_stats = {"n": 0, "mean_s": None}
        self.start_stats: dict[str, dict] = {}  # deployment -> {"n", "mean_s"}
        self.cold_since: dict[str, float] = {}  # deployment -> when it was seen not running with demand
        self.backend = BackendView(capacity=self.config.capacity or 0)
        self.seq = 0
        self.version = 0  # bumped on every change (persistence watermark)

    # ---------------------------------------------------------------- views

    @property
    def capacity(self) -> int:
        return self.backend.capacity

    def holds(self) -> list[Reservation]:
        return [r for r in self.queue if r.held_until is not None]

    def waiting(self) -> list[Reservation]:
        """Reservations waiting for a slot, FIFO order (position = index)."""
        return [r for r in self.queue if r.held_until is None]

    def occupied(self) -> int:
        return len(self.sessions) + len(self.holds())

    def free_slots(self) -> int:
        return max(0, self.capacity - self.occupied())

    @property
    def mean_session_s(self) -> float | None:
        """Mean admitted-session duration in seconds (running mean, then an EWMA over ~20)."""
        return self.session_stats["mean_s"]

    def position_of(self, instance: str) -> int | None:
        for i, r in enumerate(self.waiting()):
            if r.instance == instance:
                return i
        return None

    def eta_s(self, position: int) -> float | None:
        """Queue wait estimate: place x mean session seconds / slots, place = position + 1
        (as the gateway contract tells clients to estimate it: place x session seconds, place =
        position + 1; docs/admission.md). ``None`` without a finished session or without slots."""
        mean = self.mean_session_s
        if mean is None or self.capacity <= 0:
            return None
        return round((position + 1) * mean / self.capacity, 1)

    # ---------------------------------------------------------------- mutation helpers

    def _changed(self) -> None:
        self.version += 1

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1
        self._changed()

    def _record_session_end(self, s: Session, now: float) -> None:
        dur = max(0.0, now - s.started_at)
        n = self.session_stats["n"] + 1
        mean = self.session_stats["mean_s"]
        alpha = max(1.0 / n, 0.05)
        self.session_stats = {"n": n, "mean_s": dur if mean is None else mean + alpha * (dur - mean)}

    def _tombstone(self, session_id: str, reason: str, close_code: int | None, now: float) -> None:
        self.tombstones[session_id] = {"reason": reason, "close_code": close_code, "until": now + self.TOMBSTONE_S}
        if len(self.tombstones) > self.MAX_TOMBSTONES:
            for sid in sorted(self.tombstones, key=lambda k: self.tombstones[k]["until"])[
                : len(self.tombstones) - self.MAX_TOMBSTONES
            ]:
                del self.tombstones[sid]

    def _end_session(
        self, s: Session, reason: str, now: float, close_code: int | None = None, record: bool = True
    ) -> None:
        self.sessions.pop(s.session_id, None)
        if record:
            self._record_session_end(s, now)
        self._tombstone(s.session_id, reason, close_code, now)
        self._count(reason)

    def _supersede(self, s: Session, now: float, record: bool = True) -> dict:
        """End ``s`` as superseded and queue its 4002 close for the ingress replica holding it.
        ``record=False`` for a reconnect of the same instance (the conversation goes on)."""
        self._end_session(s, "superseded", now, CLOSE_SUPERSEDED, record)
        close = {
            "session_id": s.session_id,
            "replica_id": s.replica_id,
            "instance": s.instance,
            "close_code": CLOSE_SUPERSEDED,
            "reason": "superseded",
        }
        if s.replica_id is not None:
            self.pending_closes.setdefault(s.replica_id, []).append(close)
        return close

    def _new_session(
        self, instance: str, account: str | None, kid: str | None, replica_id: str | None, now: float
    ) -> Session:
        s = Session("sess_" + secrets.token_hex(12), instance, account, kid, replica_id, now)
        self.sessions[s.session_id] = s
        if replica_id is not None and replica_id not in self.replicas:
            self.replicas[replica_id] = now
        self._changed()
        return s

    def _promote(self, now: float) -> None:
        if self.backend.unavailable:
            return
        free = self.free_slots()
        for r in self.waiting():
            if free <= 0:
                break
            r.held_until = now + self.config.hold_grace_s
            free -= 1
            self._count("held")

    def tick(self, now: float | None = None) -> bool:
        """Expire lapsed reservations and holds, reap sessions of silent ingress replicas, drop
        old tombstones and hold freed slots for the head of the queue. Returns True on change."""
        now = self.clock() if now is None else now
        before = self.version
        for r in list(self.queue):
            if r.expires_at < now:
                self.queue.remove(r)
                self._count("lapsed")
        for rid, seen in list(self.replicas.items()):
            if now - seen > self.config.replica_timeout_s:
                for s in [s for s in self.sessions.values() if s.replica_id == rid]:
                    self._end_session(s, "reaped", now, CLOSE_UNAVAILABLE)
                del self.replicas[rid]
                self.pending_closes.pop(rid, None)
                self._changed()
        for sid in [k for k, t in self.tombstones.items() if t["until"] < now]:
            del self.tombstones[sid]
        self._promote(now)
        return self.version != before

    # ---------------------------------------------------------------- backend view

    def set_backend(self, view: BackendView) -> None:
        """Install a new :class:`BackendView` (capacity etc.) and hold slots that it frees."""
        if dataclasses.asdict(view) != dataclasses.asdict(self.backend):
            self.backend = view
            self._changed()
        self._promote(self.clock())

    def update_from_status(
        self,
        deployments: Mapping[str, Mapping],
        roles: Mapping[str, str],
        autoscaling: Mapping[str, Mapping | None] | None = None,
        triggered: Iterable[str] = (),
    ) -> BackendView:
        """Compute and install the :class:`BackendView` from Serve's deployment status.

        Args:
            deployments: ``{deployment name: {"status": str, "replica_states": {state: n}}}`` of
                this application (``serve.status().applications[app].deployments`` flattened;
                the shape :meth:`IngressState.deployment_states` returns).
            roles: ``{role: deployment name}`` of the roles the cascade uses.
            autoscaling: ``{deployment name: autoscaling_config dict, or None for a fixed
                num_replicas}``; a deployment absent here is assumed able to start.
            triggered: deployments a scale-up request was sent to (start of a cold start).
        """
        now = self.clock()
        autoscaling = autoscaling or {}
        triggered = set(triggered)
        view = BackendView()
        caps: dict[str, int] = {}
        growable: set[str] = set()
        for role, name in roles.items():
            st = deployments.get(name)
            detail: dict[str, Any] = {"deployment": name, "sessions_per_replica": self.config.sessions_for(role)}
            view.roles[role] = detail
            if st is None:
                detail["state"] = "missing"
                view.unreachable = view.unreachable or f"deployment {name} ({role}) has no endpoint in this application"
                caps[role] = 0
                continue
            rs = {str(k): int(v) for k, v in (st.get("replica_states") or {}).items()}
            running = rs.get("RUNNING", 0)
            starting = sum(rs.get(k, 0) for k in STARTING_STATES)
            status = str(st.get("status", ""))
            detail.update(running=running, starting=starting, status=status)
            caps[role] = running * self.config.sessions_for(role)
            has_auto = name in autoscaling
            auto = autoscaling.get(name)
            can_start = not (has_auto and (auto is None or int(auto.get("max_replicas", 1)) <= 0))
            if running > 0:
                detail["state"] = "running"
                if name in self.cold_since:
                    self._observe_start(name, now - self.cold_since.pop(name))
                if starting > 0:
                    growable.add(role)
                continue
            if status in ("DEPLOY_FAILED", "UNHEALTHY") and starting == 0:
                detail["state"] = "failed"
                view.unavailable = view.unavailable or f"{role} deployment {name} is {status}"
                continue
            if starting == 0 and not can_start:
                detail["state"] = "stopped"
                view.unavailable = (
                    view.unavailable or f"{role} deployment {name} has no replica and none can be started"
                )
                continue
            # cold: scaled to zero (an arrival starts it) or replicas STARTING
            if (starting > 0 or name in triggered) and name not in self.cold_since:
                self.cold_since[name] = now
                self._changed()
            since = self.cold_since.get(name)
            if since is not None and now - since > self.config.start_timeout_s:
                detail["state"] = "stuck"
                view.unavailable = view.unavailable or (
                    f"{role} deployment {name} has not started within {self.config.start_timeout_s:g} s"
                )
                continue
            detail["state"] = "starting" if starting else "scaled_to_zero"
            if starting == 0:
                view.to_trigger.append(name)
            growable.add(role)
            view.preparing = True
            view.starting.append(name)
            eta = self.start_eta_s(name, now)
            view.preparing_eta_s = eta if view.preparing_eta_s is None else max(view.preparing_eta_s, eta)
        if caps:
            capacity = min(caps.values())
            if self.config.capacity is not None:
                capacity = self.config.capacity if all(c > 0 for c in caps.values()) else 0
            tightest = {r for r, c in caps.items() if c == min(caps.values())}
            if growable & tightest and not view.preparing:
                # a scale-up of the tightest role is under way: waiters are "preparing" too
                view.preparing = True
                view.starting = sorted(roles[r] for r in growable & tightest)
                view.preparing_eta_s = max(self.start_eta_s(n, now) for n in view.starting)
        else:
            capacity = self.config.capacity or 0
        view.capacity = capacity
        if view.preparing_eta_s is not None:
            view.preparing_eta_s = round(view.preparing_eta_s, 1)
        self.set_backend(view)
        return view

    def _observe_start(self, deployment: str, seconds: float) -> None:
        st = self.start_stats.get(deployment, {"n": 0, "mean_s": None})
        n = st["n"] + 1
        mean = seconds if st["mean_s"] is None else st["mean_s"] + max(1.0 / n, 0.2) * (seconds - st["mean_s"])
        self.start_stats[deployment] = {"n": n, "mean_s": mean}
        self._changed()

    def start_eta_s(self, deployment: str, now: float | None = None) -> float:
        """Seconds until ``deployment`` likely runs: its mean observed start time (else
        ``cold_start_eta_s``) minus the time it has been starting; at least 1 s."""
        now = self.clock() if now is None else now
        st = self.start_stats.get(deployment)
        mean = st["mean_s"] if st and st["mean_s"] is not None else self.config.cold_start_eta_s
        since = self.cold_since.get(deployment)
        return max(1.0, mean - (now - since if since is not None else 0.0))

    # ---------------------------------------------------------------- decisions

    def _account_for(self, request: Mapping, instance: str | None, kid: str | None) -> str | None:
        if request.get("account"):
            return str(request["account"])
        user = instance.split(":", 1)[0] if instance and ":" in instance else None
        if kid and user:
            return f"{kid}/{user}"
        return user or kid

    def _units(
        self, account: str | None = None, kid: str | None = None, exclude: Reservation | None = None
    ) -> list[Session | Reservation]:
        """Live sessions and held slots of an account (or of a key), oldest first."""
        units: list[tuple[float, Session | Reservation]] = []
        for s in self.sessions.values():
            if (account is not None and s.account == account) or (kid is not None and s.key_id == kid):
                units.append((s.started_at, s))
        for r in self.holds():
            if r is exclude:
                continue
            if (account is not None and r.account == account) or (kid is not None and r.key_id == kid):
                units.append((r.enqueued_at, r))
        return [u for _, u in sorted(units, key=lambda x: x[0])]

    def _check_limits(
        self, account: str | None, kid: str | None, consent: str | None, exclude: Reservation | None, base: dict
    ) -> tuple[dict | None, Session | Reservation | None]:
        """Per-account limit with consent, then the key quota.
        Returns ``(decision, None)`` to refuse, or ``(None, victim)`` (victim for ``replace``)."""
        cfg = self.config
        victim = None
        if account is not None and cfg.sessions_per_account > 0:
            units = self._units(account=account, exclude=exclude)
            if len(units) >= cfg.sessions_per_account:
                can_add = len(units) < cfg.max_sessions_per_account
                if consent == "replace":
                    victim = units[0]
                elif not (consent == "add" and can_add):
                    self._count("consent_required")
                    branches = ["replace", "add"] if can_add else ["replace"]
                    ev = RealtimeServerEventSessionConsentRequired(
                        branches=branches,
                        live_sessions=len(units),
                        message="this account already has a live session; repeat the setup frame with "
                        "setup.consent set to one of branches",
                    ).to_wire()
                    return _decision("consent_required", ev, CLOSE_CONSENT_REQUIRED, **base), None
        quota = self.keys.quota(kid)
        if quota is not None:
            used = self._units(kid=kid, exclude=exclude)
            n = len(used) - (1 if victim is not None and any(u is victim for u in used) else 0)
            if n >= quota:
                self._count("quota_exceeded")
                ev = error_event(
                    f"API key {kid} is at its quota of {quota} concurrent realtime session(s)",
                    type="insufficient_quota",
                    code="insufficient_quota",
                )
                return _decision("quota_exceeded", ev, CLOSE_INSUFFICIENT_CREDITS, **base), None
        return None, victim

    def _created(self, s: Session, base: dict, supersede: list[dict], model: str | None) -> dict:
        self._count("created")
        session: dict[str, Any] = {"id": s.session_id, "object": "realtime.session"}
        if model:
            session["model"] = model
        ev = RealtimeServerEventSessionCreated(session=session).to_wire()
        return _decision("created", ev, None, **{**base, "session_id": s.session_id, "supersede": supersede})

    def _waiting_decision(self, r: Reservation, base: dict) -> dict:
        pos = self.position_of(r.instance) or 0
        queue_len = len(self.waiting())
        preparing = self.backend.preparing
        kind = "preparing" if preparing else "queued"
        self._count(kind)
        provider = None
        if preparing:
            if self.backend.starting:
                eta = max(self.start_eta_s(n) for n in self.backend.starting)
            else:
                eta = self.backend.preparing_eta_s or self.config.cold_start_eta_s
            queue_eta = self.eta_s(pos - 1) if pos > 0 else None  # waiters ahead once slots exist
            eta = round(eta + (queue_eta or 0.0), 1)
            provider = self.config.provider
        else:
            eta = self.eta_s(pos)
        ev = RealtimeServerEventSessionWaiting(
            type=f"session.{kind}",
            position=pos,
            queue_len=queue_len,
            reservation_token=r.token,
            instance=r.instance,
            eta_s=eta,
            provider=provider,
        ).to_wire()
        return _decision(kind, ev, CLOSE_UNAVAILABLE, **{**base, "reservation_token": r.token})

    def _sold_out(self, base: dict, reason: str) -> dict:
        self._count("sold_out")
        ev = RealtimeServerEventSessionSoldOut(
            retry_after_s=self.config.sold_out_retry_after_s,
            tier_a_hint=self.config.tier_a_hint,
            reason=reason,
        ).to_wire()
        return _decision("sold_out", ev, CLOSE_UNAVAILABLE, **base)

    def _session_error(self, base: dict) -> dict:
        self._count("session_error")
        return _decision(
            "session_error",
            session_error_event(self.backend.unreachable or "backend unreachable"),
            CLOSE_UNAVAILABLE,
            **base,
        )

    def decide(self, request: Mapping[str, Any]) -> dict:
        """Admit, queue or refuse one realtime connection (its setup frame).

        Args:
            request: ``{"instance": str | None`` (setup.instanceId / ``?instance=`` /
                X-Naia-OS-Instance), ``"api_key": str | None`` (setup.apiKey),
                ``"reservation_token": str | None`` (optional; the instance suffices),
                ``"consent": "replace" | "add" | None`` (setup.consent),
                ``"account": str | None`` (optional override; default ``<key_id>/<userId>`` from
                the instance ``<userId>:<random>``), ``"replica_id": str`` (the ingress replica
                that holds the socket), ``"model": str | None}``.

        Returns:
            ``{"outcome", "event", "close_code", "session_id", "instance", "account", "key_id",
            "reservation_token", "supersede"}``: send ``event``; then close with ``close_code``
            unless it is ``None`` (``outcome == "created"``). ``supersede`` lists sessions ended
            by this decision ``{"session_id", "replica_id", "instance", "close_code": 4002,
            "reason"}``; the replica holding each also receives it from :meth:`take_closes`.
        """
        now = self.clock()
        self.tick(now)
        cfg = self.config
        chk = self.keys.check(request.get("api_key"))
        if not chk.ok:
            self._count("auth_failed")
            msg = "missing API key: send it as setup.apiKey" if chk.reason == "missing" else "invalid API key"
            return _decision(
                "auth_failed",
                error_event(
                    msg,
                    type="authentication_error",
                    code="missing_api_key" if chk.reason == "missing" else "invalid_api_key",
                ),
                CLOSE_AUTH_FAILED,
            )
        kid = chk.key_id
        token = request.get("reservation_token") or None
        instance = request.get("instance") or None
        r = None
        if instance:
            r = next((x for x in self.queue if x.instance == instance), None)
        if r is None and token:
            r = next((x for x in self.queue if x.token == token), None)
            if r is not None:
                instance = r.instance
        account = self._account_for(request, instance, kid)  # from the client's instance only
        instance = instance or "anon." + secrets.token_hex(8)
        consent = request.get("consent") if request.get("consent") in ("replace", "add") else None
        replica_id = request.get("replica_id")
        base = {"instance": instance, "account": account, "key_id": kid}
        model = request.get("model")

        # 0. an instance (its session or reservation) belongs to the key that created it
        old = next((s for s in self.sessions.values() if s.instance == instance), None)
        owner = old if old is not None else r
        if owner is not None and owner.key_id != kid:
            self._count("auth_failed")
            return _decision(
                "auth_failed",
                error_event(
                    "this instance belongs to another API key",
                    type="authentication_error",
                    code="instance_key_mismatch",
                    param="instance",
                ),
                CLOSE_AUTH_FAILED,
            )

        # 1. the same instance already has a live session: the client reconnected; the new
        #    socket takes over the slot, the old one is closed as superseded
        if old is not None:
            if self.backend.unreachable:
                return self._session_error(base)
            close = self._supersede(old, now, record=False)
            self._count("reattached")
            s = self._new_session(instance, account, kid, replica_id, now)
            return self._created(s, base, [close], model)

        # 2. a held slot waits for this instance
        if r is not None and r.held_until is not None:
            refusal, victim = self._check_limits(account, kid, consent or r.consent, r, base)
            if refusal is not None:
                return refusal
            if self.backend.unreachable:
                return self._session_error(base)
            supersede = []
            if isinstance(victim, Session):
                supersede.append(self._supersede(victim, now))
            elif isinstance(victim, Reservation):
                self.queue.remove(victim)
                self._count("superseded")
            self.queue.remove(r)
            self._count("reattached")
            s = self._new_session(instance, account, kid, replica_id, now)
            self._promote(now)
            return self._created(s, base, supersede, model)

        # 3. still waiting: keep the place
        if r is not None:
            r.last_seen = now
            if consent:
                r.consent = consent
            self._changed()
            self._count("reattached")
            if self.backend.unavailable:
                return self._sold_out(base, self.backend.unavailable)
            return self._waiting_decision(r, base)

        # 4. a new arrival
        refusal, victim = self._check_limits(account, kid, consent, None, base)
        if refusal is not None:
            return refusal
        if victim is not None:
            # replace: the victim's slot passes to the new session at once (no queueing)
            if self.backend.unreachable:
                return self._session_error(base)
            if isinstance(victim, Session):
                supersede = [self._supersede(victim, now)]
            else:
                self.queue.remove(victim)
                self._count("superseded")
                supersede = []
            s = self._new_session(instance, account, kid, replica_id, now)
            return self._created(s, base, supersede, model)
        if self.free_slots() > 0 and not self.waiting() and not self.backend.unavailable:
            if self.backend.unreachable:
                return self._session_error(base)
            s = self._new_session(instance, account, kid, replica_id, now)
            return self._created(s, base, [], model)
        if self.backend.unavailable:
            return self._sold_out(base, self.backend.unavailable)
        if self.backend.unreachable:
            return self._session_error(base)
        if len(self.waiting()) >= cfg.max_queue:
            return self._sold_out(base, "queue_full")
        self.seq += 1
        r = Reservation(
            "rsv_" + secrets.token_urlsafe(18),
            instance,
            account,
            kid,
            now,
            now,
            cfg.reservation_ttl_s,
            self.seq,
            consent,
        )
        self.queue.append(r)
        self._changed()
        return self._waiting_decision(r, base)

    def release(self, session_id: str) -> bool:
        """The socket of an admitted session closed: free its slot at once (and hold it for the
        head of the queue). Unknown / already ended sessions are ignored. Returns True if freed."""
        s = self.sessions.get(session_id)
        if s is None:
            return False
        now = self.clock()
        self._end_session(s, "released", now)
        self._promote(now)
        return True

    def take_closes(self, replica_id: str) -> list[dict]:
        """Closes the ingress replica ``replica_id`` must perform (sessions superseded elsewhere):
        ``[{"session_id", "replica_id", "instance", "close_code": 4002, "reason": "superseded"}]``.
        Each is returned once."""
        closes = self.pending_closes.pop(replica_id, [])
        if closes:
            self._changed()
        return closes

    def heartbeat(self, replica_id: str, live: Iterable[str | Mapping[str, Any]]) -> dict:
        """An ingress replica reports the sessions whose sockets it holds.

        ``live`` items are session ids or dicts ``{"session_id", "instance", "account",
        "key_id", "started_at"}`` (dicts let the service re-adopt sessions it lost).

        Effects: refreshes the replica's lease; sessions of this replica it no longer reports
        (and older than ``replica_timeout_s``, to spare ones admitted in flight) are freed as
        reaped; reported sessions unknown here are re-adopted unless they were ended.

        Returns:
            ``{"close": [...]}``: pending closes (see :meth:`take_closes`), plus a close for
            each reported session that was ended here (4002 if superseded, else 4503).
        """
        now = self.clock()
        self.replicas[replica_id] = now  # the lease first: a late heartbeat still counts
        self.tick(now)
        reported: dict[str, Mapping[str, Any]] = {}
        for item in live:
            if isinstance(item, Mapping):
                reported[str(item["session_id"])] = item
            else:
                reported[str(item)] = {}
        closes = self.take_closes(replica_id)
        closing = {c["session_id"] for c in closes}
        for sid, meta in reported.items():
            if sid in self.sessions:
                s = self.sessions[sid]
                if s.replica_id != replica_id:  # moved / adopted by a replica after a restart
                    s.replica_id = replica_id
                    self._changed()
                continue
            tomb = self.tombstones.get(sid)
            if tomb is not None:
                if sid not in closing and tomb["close_code"] is not None:
                    closes.append(
                        {
                            "session_id": sid,
                            "replica_id": replica_id,
                            "instance": None,
                            "close_code": tomb["close_code"],
                            "reason": tomb["reason"],
                        }
                    )
                continue
            instance = meta.get("instance") or f"adopted:{sid}"
            if any(s.instance == instance for s in self.sessions.values()):
                closes.append(
                    {
                        "session_id": sid,
                        "replica_id": replica_id,
                        "instance": instance,
                        "close_code": CLOSE_SUPERSEDED,
                        "reason": "superseded",
                    }
                )
                continue
            self.sessions[sid] = Session(
                sid, instance, meta.get("account"), meta.get("key_id"), replica_id, float(meta.get("started_at") or now)
            )
            self._count("readopted")
        for s in [s for s in self.sessions.values() if s.replica_id == replica_id]:
            if s.session_id not in reported and now - s.started_at > self.config.replica_timeout_s:
                self._end_session(s, "reaped", now, None)
        self._promote(now)
        return {"close": closes}

    # ---------------------------------------------------------------- admin view

    def snapshot(self) -> dict:
        """The admin view: slots, sessions, queue, holds, ingress replicas, counters (times in s)."""
        now = self.clock()
        return {
            "capacity": self.capacity,
            "occupied": self.occupied(),
            "free": self.free_slots(),
            "backend": dataclasses.asdict(self.backend),
            "sessions": [
                {**dataclasses.asdict(s), "age_s": round(now - s.started_at, 3)}
                for s in sorted(self.sessions.values(), key=lambda s: s.started_at)
            ],
            "queue": [
                {
                    "position": i,
                    "instance": r.instance,
                    "account": r.account,
                    "key_id": r.key_id,
                    "reservation_token": r.token[:8] + "…",
                    "enqueued_at": r.enqueued_at,
                    "last_seen": r.last_seen,
                    "expires_in_s": round(r.expires_at - now, 3),
                }
                for i, r in enumerate(self.waiting())
            ],
            "holds": [
                {
                    "instance": r.instance,
                    "account": r.account,
                    "reservation_token": r.token[:8] + "…",
                    "held_until": r.held_until,
                    "expires_in_s": round(r.expires_at - now, 3),
                }
                for r in self.holds()
            ],
            "replicas": {
                rid: {"last_heartbeat": t, "sessions": sum(1 for s in self.sessions.values() if s.replica_id == rid)}
                for rid, t in self.replicas.items()
            },
            "counters": dict(self.counters),
            "mean_session_s": None if self.mean_session_s is None else round(self.mean_session_s, 3),
            "start_stats": {k: dict(v) for k, v in self.start_stats.items()},
            "version": self.version,
        }

    # ---------------------------------------------------------------- persistence

    def to_dict(self) -> dict:
        """JSON-safe state (no configuration, no backend view: those are recomputed)."""
        return {
            "format": self.FORMAT,
            "saved_at": self.clock(),
            "seq": self.seq,
            "version": self.version,
            "sessions": [dataclasses.asdict(s) for s in self.sessions.values()],
            "queue": [dataclasses.asdict(r) for r in self.queue],
            "replicas": dict(self.replicas),
            "pending_closes": {k: list(v) for k, v in self.pending_closes.items()},
            "tombstones": dict(self.tombstones),
            "counters": dict(self.counters),
            "session_stats": dict(self.session_stats),
            "start_stats": {k: dict(v) for k, v in self.start_stats.items()},
            "cold_since": dict(self.cold_since),
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        config: AdmissionConfig | None = None,
        *,
        clock: Callable[[], float] = _now_default,
        keys: ApiKeys | None = None,
        resume: bool = True,
    ) -> AdmissionState:
        """Restore a state written by :meth:`to_dict`.

        With ``resume`` (a restart), every waiting reservation gets a full ``reservation_ttl_s``,
        every hold a full ``hold_grace_s`` and every ingress replica a full
        ``replica_timeout_s`` from now: the downtime does not count against anyone.

        Raises:
            ValueError: unknown format.
        """
        if data.get("format") != cls.FORMAT:
            raise ValueError(f"unknown admission state format {data.get('format')!r}")
        st = cls(config, clock=clock, keys=keys)
        st.seq = int(data.get("seq", 0))
        st.version = int(data.get("version", 0))
        st.sessions = {d["session_id"]: Session(**d) for d in data.get("sessions", [])}
        st.queue = sorted((Reservation(**d) for d in data.get("queue", [])), key=lambda r: r.seq)
        st.replicas = {k: float(v) for k, v in data.get("replicas", {}).items()}
        st.pending_closes = {k: list(v) for k, v in data.get("pending_closes", {}).items()}
        st.tombstones = dict(data.get("tombstones", {}))
        st.counters.update(data.get("counters", {}))
        st.session_stats = dict(data.get("session_stats", st.session_stats))
        st.start_stats = {k: dict(v) for k, v in data.get("start_stats", {}).items()}
        st.cold_since = {k: float(v) for k, v in data.get("cold_since", {}).items()}
        if resume:
            now = st.clock()
            for r in st.queue:
                r.ttl_s = st.config.reservation_ttl_s
                if r.held_until is not None:
                    r.held_until = max(r.held_until, now + st.config.hold_grace_s)
                r.last_seen = max(r.last_seen, now)
            for rid in st.replicas:
                st.replicas[rid] = max(st.replicas[rid], now)
            for name in st.cold_since:  # a start observed across a restart is not a clean sample
                st.cold_since[name] = max(st.cold_since[name], now - st.config.cold_start_eta_s)
        return st


# ----------------------------------------------------------------------------------------------
# helpers for the ingress (REST under cold start)
# ----------------------------------------------------------------------------------------------


def read_deployment_states(app_name: str, status: Any | None = None) -> dict[str, dict]:
    """``{deployment: {"status": str, "replica_states": {state: n}}}`` of ``app_name`` from
    ``serve.status()`` (blocking: call it in a thread). ``{}`` when the app is absent."""
    status = serve.status() if status is None else status
    app = status.applications.get(app_name)
    out: dict[str, dict] = {}
    if app is not None:
        for name, d in app.deployments.items():
            out[name] = {
                "status": str(getattr(d.status, "value", d.status)),
                "replica_states": {str(getattr(k, "value", k)): int(v) for k, v in (d.replica_states or {}).items()},
            }
    return out


def live_replicas(app_name: str) -> dict[str, int]:
    """``{deployment: replica actors alive}`` of ``app_name`` (blocking: call it in a thread).

    Serve's status keeps counting a replica RUNNING for a while after its actor died (until its
    controller's next health check), while requests routed to it fail or wait for a
    replacement. Ray's registry of named actors drops a dead actor at once, and Serve names each
    replica actor ``SERVE_REPLICA::<app>#<deployment>#<replica id>``: fewer live actors than
    RUNNING replicas means one of them is dead.
    """
    prefix = f"SERVE_REPLICA::{app_name}#"
    counts: dict[str, int] = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        name = actor["name"] if isinstance(actor, dict) else actor
        if name.startswith(prefix):
            deployment = name[len(prefix) :].split("#", 1)[0]
            counts[deployment] = counts.get(deployment, 0) + 1
    return counts


async def wait_until_running(
    deployment_name: str,
    timeout_s: float,
    *,
    app_name: str | None = None,
    trigger: Any | None = None,
    poll_s: float = 0.5,
    states: Callable[[], Any] | None = None,
) -> bool:
    """Wait until ``deployment_name`` has a RUNNING replica (REST under cold start).

    Args:
        deployment_name: the Serve deployment (e.g. ``ModelConfig.deployment_name``).
        timeout_s: how long to wait in seconds (``AdmissionConfig.rest_cold_start_wait_s``);
            0 checks once.
        app_name: the application (default: this replica's, ``serve.get_replica_context()``).
        trigger: a ``DeploymentHandle`` of that deployment: when it is not running, its cheap
            ``info()`` is called once in the background, which makes Serve scale it up from zero.
        poll_s: seconds between status reads.
        states: async or sync callable returning ``{deployment: {"replica_states": ...}}``
            (e.g. ``IngressState.deployment_states``); default reads ``serve.status()``.

    Returns:
        True when it runs, False when ``timeout_s`` passed first (answer
        :func:`model_preparing_error`).
    """
    if app_name is None and states is None:
        app_name = serve.get_replica_context().app_name

    async def read() -> dict:
        if states is not None:
            got = states()
            return await got if asyncio.iscoroutine(got) else got
        return await asyncio.to_thread(read_deployment_states, app_name)

    deadline = time.monotonic() + timeout_s
    triggered = False
    while True:
        info = (await read()).get(deployment_name)
        if info is not None and int(info["replica_states"].get("RUNNING", 0)) > 0:
            return True
        if trigger is not None and not triggered:
            triggered = True
            _fire_and_forget(trigger, timeout_s=max(timeout_s, 600.0))
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


_BACKGROUND: set[asyncio.Task] = set()


def _fire_and_forget(handle: Any, timeout_s: float) -> asyncio.Task:
    """Call ``handle.info.remote()`` in the background (a request to a deployment at zero
    replicas is what makes Serve scale it up). Errors are logged, never raised."""

    async def call() -> None:
        try:
            await asyncio.wait_for(handle.info.remote(), timeout_s)
        except Exception as exc:  # noqa: BLE001 - best effort
            logger.info("scale-up trigger ended: %r", exc)

    task = asyncio.get_running_loop().create_task(call())
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return task


def model_preparing_error(model_id: str, retry_after_s: float):
    """The REST answer for a model still starting: 503, ``error.type`` ``model_preparing``,
    ``Retry-After`` (whole seconds)."""
    retry = max(1, int(round(retry_after_s)))
    return APIError(
        503,
        f"model '{model_id}' is starting; retry in about {retry} s",
        type="model_preparing",
        code="model_preparing",
        headers={"Retry-After": str(retry)},
    )


# ----------------------------------------------------------------------------------------------
# the Serve deployment
# ----------------------------------------------------------------------------------------------


def _kv():
    from ray.experimental import internal_kv

    return internal_kv if internal_kv._internal_kv_initialized() else None


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
        self._persist_lock = asyncio.Lock()
        self._refresh_lock = asyncio.Lock()
        self._status_at = 0.0
        self._triggers: dict[str, asyncio.Task] = {}
        self._close_events: dict[str, asyncio.Event] = {}
        self._loop_task: asyncio.Task | None = None
        self.started_at = time.time()

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
            self._triggers[name] = _fire_and_forget(handle, timeout_s=self.config.start_timeout_s)

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

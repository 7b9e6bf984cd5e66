"""The admission core: pure Python, no Ray. Slots, admitted sessions, the FIFO of reservations,
held slots, per-account limits, consent and supersede bookkeeping, counters and the serialised
state (see the package docstring for the contract it implements)."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deployments.admission.cluster import STARTING_STATES
from deployments.admission.config import AdmissionConfig
from deployments.admission.contract import (
    CLOSE_AUTH_FAILED,
    CLOSE_CONSENT_REQUIRED,
    CLOSE_INSUFFICIENT_CREDITS,
    CLOSE_SUPERSEDED,
    CLOSE_UNAVAILABLE,
    EVENTS,
    OUTCOMES,
    make_decision,
    session_error_event,
)
from deployments.admission.keys import ApiKeys
from deployments.protocol.realtime import (
    RealtimeServerEventSessionConsentRequired,
    RealtimeServerEventSessionCreated,
    RealtimeServerEventSessionSoldOut,
    RealtimeServerEventSessionWaiting,
    error_event,
)

logger = logging.getLogger("ray.serve")


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
        #: ``() -> (seconds until new capacity is up, its provider)``, e.g.
        #: :meth:`deployments.admission.pods.watcher.WorkerPods.eta` on Kubernetes; ``(None, None)``
        #: when nothing is starting. ``None`` off Kubernetes: the observed Serve start times alone.
        self.capacity_eta: Callable[[], tuple[float | None, str | None]] | None = None

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
                    return make_decision("consent_required", ev, CLOSE_CONSENT_REQUIRED, **base), None
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
                return make_decision("quota_exceeded", ev, CLOSE_INSUFFICIENT_CREDITS, **base), None
        return None, victim

    def _created(self, s: Session, base: dict, supersede: list[dict], model: str | None) -> dict:
        self._count("created")
        session: dict[str, Any] = {"id": s.session_id, "object": "realtime.session"}
        if model:
            session["model"] = model
        ev = RealtimeServerEventSessionCreated(session=session).to_wire()
        return make_decision("created", ev, None, **{**base, "session_id": s.session_id, "supersede": supersede})

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
            provider = self.config.provider
            if self.capacity_eta is not None:
                # a replica that needs a worker pod still Pending, pulling its image or starting
                # waits for it first: minutes on a real cluster, not the seconds of a Serve start
                pod_eta, group = self.capacity_eta()
                if pod_eta is not None:
                    eta, provider = max(eta, pod_eta), group or provider
            queue_eta = self.eta_s(pos - 1) if pos > 0 else None  # waiters ahead once slots exist
            eta = round(eta + (queue_eta or 0.0), 1)
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
        return make_decision(kind, ev, CLOSE_UNAVAILABLE, **{**base, "reservation_token": r.token})

    def _sold_out(self, base: dict, reason: str) -> dict:
        self._count("sold_out")
        ev = RealtimeServerEventSessionSoldOut(
            retry_after_s=self.config.sold_out_retry_after_s,
            tier_a_hint=self.config.tier_a_hint,
            reason=reason,
        ).to_wire()
        return make_decision("sold_out", ev, CLOSE_UNAVAILABLE, **base)

    def _session_error(self, base: dict) -> dict:
        self._count("session_error")
        return make_decision(
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
            return make_decision(
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
            return make_decision(
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

"""Admission's configuration (``AppConfig.admission``) and the API-key entries it lists."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
    scale_on_queue: bool = Field(
        True,
        description="waiting realtime sessions raise their roles' replica targets (deployments.scaling); "
        "off: only the sessions admitted and Serve's request load count",
    )
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

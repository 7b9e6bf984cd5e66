"""Probes: ``/livez`` (cheap), ``/readyz`` (every deployment runs its minimum of live replicas),
their ``/v1/live`` and ``/v1/ready`` aliases, and ``/health`` in the Naia clients' shape (docs/http.md):
``{"ready": bool, "services": {role: bool}, "vad": bool}``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from deployments.routes import get_state
from deployments.state import IngressState

router = APIRouter(tags=["health"])


@router.get("/livez")
@router.get("/v1/live")
async def livez(state: IngressState = Depends(get_state)) -> dict:
    """Liveness: the ingress replica answers. Touches nothing else."""
    return {"status": "alive", "uptime_s": round(time.time() - state.started_at, 3)}


def _deployment_ready(info: dict | None, min_replicas: int) -> tuple[bool, str]:
    """At least ``min_replicas`` (and at least one) RUNNING replicas whose actors are alive, or
    scaled to zero on purpose (``min_replicas`` 0 and no replica at all)."""
    if info is None:
        return False, "not deployed"
    states = info["replica_states"]
    running = states.get("RUNNING", 0)
    if min_replicas == 0 and not any(n for k, n in states.items() if k != "STOPPING"):
        # on purpose (a last replica may still be stopping): it starts on the first request
        return True, "scaled to zero"
    others = ", ".join(f"{k}={v}" for k, v in states.items() if k != "RUNNING" and v)
    # replica actors gone while Serve still lists them (a STOPPING one is on its way out anyway)
    total = sum(states.values())
    dead = min(running, max(0, total - info.get("alive", total) - states.get("STOPPING", 0)))
    if dead:
        # Serve has not noticed yet; requests would fail or wait for the replacement
        return False, f"{dead} of {running} RUNNING replica(s) dead, replacement pending"
    if running >= max(1, min_replicas):
        return True, f"{running} replica(s) RUNNING" + (f" ({others})" if others else "")
    if running == 0:
        return False, f"no RUNNING replica ({others or info['status']})"
    return False, f"{running} of at least {min_replicas} replica(s) RUNNING ({others or info['status']})"


def _min_replicas(model) -> int:
    auto = model.deployment.autoscaling_config or {}
    if model.deployment.num_replicas is not None:
        return int(model.deployment.num_replicas)
    return int(auto.get("min_replicas", 1))


async def readiness(state: IngressState) -> dict:
    """Named checks, one per deployment of the profile, plus the overall verdict: a deployment
    is ready while it runs at least its minimum of replicas (``num_replicas`` or
    ``autoscaling_config.min_replicas``; none while an admin has unloaded it) and none of them
    is dead. Serve's status alone still says RUNNING for a replica that was just killed, while
    the next request would wait for its replacement, so live replica actors are counted too
    (see :meth:`IngressState.deployment_states`)."""
    states = await state.deployment_states()
    checks: dict[str, dict] = {"lifecycle": {"ok": True, "detail": "ingress serving"}}
    roles: dict[str, bool] = {}
    for model in state.config.models:
        dep = model.deployment_name
        info = states.get(dep)
        # an unloaded model (POST /v1/admin/models/{id}/unload) is at zero replicas on purpose
        floor = 0 if info is not None and info.get("unloaded_at") is not None else _min_replicas(model)
        ok, detail = _deployment_ready(info, floor)
        checks[f"deployment:{dep}"] = {"ok": ok, "detail": detail, "model": model.id, "role": model.role}
        roles[model.role] = roles.get(model.role, True) and ok
    ready = all(c["ok"] for c in checks.values())
    return {"ready": ready, "status": "ready" if ready else "not_ready", "checks": checks, "roles": roles}


@router.get("/readyz")
@router.get("/v1/ready")
async def readyz(state: IngressState = Depends(get_state)):
    """Readiness: 200 while every deployment runs its minimum of replicas and none of them is dead
    (or it is scaled to zero on purpose), 503 otherwise (starting, restarting, replica lost), with
    each named check in the body."""
    body = await readiness(state)
    body.pop("roles")
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


@router.get("/health")
@router.get("/v1/health")
async def health(state: IngressState = Depends(get_state)) -> dict:
    """Naia's health shape: ``services`` has one flag per configured role except VAD, which is
    reported as the top-level ``vad`` flag."""
    body = await readiness(state)
    roles = body["roles"]
    services = {role: ok for role, ok in roles.items() if role != "vad"}
    return {"ready": body["ready"], "services": services, "vad": roles.get("vad", False), "checks": body["checks"]}

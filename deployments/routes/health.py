"""Probes: ``/livez`` (cheap), ``/readyz`` (every deployment has a RUNNING replica), their
``/v1/live`` and ``/v1/ready`` aliases, and ``/health`` in the Naia shape (spec 000 §2):
``{"ready": bool, "services": {role: bool}, "vad": bool}``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from deployments.state import IngressState
from deployments.routes import get_state

router = APIRouter(tags=["health"])


@router.get("/livez")
@router.get("/v1/live")
async def livez(state: IngressState = Depends(get_state)) -> dict:
    """Liveness: the ingress replica answers. Touches nothing else."""
    return {"status": "alive", "uptime_s": round(time.time() - state.started_at, 3)}


def _deployment_ready(info: dict | None, min_replicas: int) -> tuple[bool, str]:
    if info is None:
        return False, "not deployed"
    running = info["replica_states"].get("RUNNING", 0)
    if running > 0:
        return True, f"{running} replica(s) RUNNING"
    if min_replicas == 0 and not info["replica_states"]:
        # scaled to zero on purpose: it starts on the first request
        return True, "scaled to zero"
    states = ", ".join(f"{k}={v}" for k, v in info["replica_states"].items()) or info["status"]
    return False, f"no RUNNING replica ({states})"


async def readiness(state: IngressState) -> dict:
    """Named checks, one per deployment of the profile, plus the overall verdict."""
    states = await state.deployment_states()
    checks: dict[str, dict] = {"lifecycle": {"ok": True, "detail": "ingress serving"}}
    roles: dict[str, bool] = {}
    for model in state.config.models:
        dep = model.deployment_name
        auto = model.deployment.autoscaling_config or {}
        min_replicas = model.deployment.num_replicas if model.deployment.num_replicas is not None \
            else int(auto.get("min_replicas", 1))
        ok, detail = _deployment_ready(states.get(dep), min_replicas)
        checks[f"deployment:{dep}"] = {"ok": ok, "detail": detail, "model": model.id, "role": model.role}
        roles[model.role] = roles.get(model.role, True) and ok
    ready = all(c["ok"] for c in checks.values())
    return {"ready": ready, "status": "ready" if ready else "not_ready", "checks": checks, "roles": roles}


@router.get("/readyz")
@router.get("/v1/ready")
async def readyz(state: IngressState = Depends(get_state)):
    """Readiness: 200 once every deployment has a RUNNING replica (or is scaled to zero on
    purpose), 503 before, with each named check in the body."""
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
    return {"ready": body["ready"], "services": services, "vad": roles.get("vad", False),
            "checks": body["checks"]}

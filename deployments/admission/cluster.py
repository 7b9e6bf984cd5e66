"""What admission and the ingress read of the Serve application: deployment states from
``serve.status()``, the replica actors still alive, and a role's start under cold start (REST
waits, then 503 ``model_preparing``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import ray
from ray import serve

from deployments.errors import APIError

logger = logging.getLogger("ray.serve")


#: Replica states that count as "coming up" (Serve's ReplicaState values).
STARTING_STATES = ("STARTING", "UPDATING", "RECOVERING", "PENDING_MIGRATION")


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


def model_status(info: dict | None) -> str:
    """A deployment's state in the admin contract's words (``/v1/admin/models``), from
    :func:`read_deployment_states`'s entry: ``ready`` while a replica runs, ``loading`` while
    replicas start, ``error`` when Serve reports the deployment ``DEPLOY_FAILED`` or
    ``UNHEALTHY`` with none running or starting (or it is missing), ``downloaded`` at zero
    replicas (weights installed, nothing in memory)."""
    if info is None:
        return "error"
    states = info.get("replica_states") or {}
    if states.get("RUNNING", 0) > 0:
        return "ready"
    if any(states.get(k, 0) for k in STARTING_STATES):
        return "loading"
    if str(info.get("status")) in ("DEPLOY_FAILED", "UNHEALTHY"):
        return "error"
    return "downloaded"


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
            wake_up(trigger, timeout_s=max(timeout_s, 600.0))
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


_BACKGROUND: set[asyncio.Task] = set()


def wake_up(handle: Any, timeout_s: float) -> asyncio.Task:
    """Call ``handle.info.remote()`` in the background, for at most ``timeout_s`` seconds (a
    request to a deployment at zero replicas is what makes Serve scale it up). Errors are logged,
    never raised."""

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

"""The deployment-level custom autoscaling policy that lets waiting realtime sessions scale a
role (Ray Serve 2.60: ``autoscaling_config.policy`` naming a class; Serve's controller makes one
instance per deployment and calls it with an :class:`~ray.serve.config.AutoscalingContext` on
every control-loop tick).

Serve wraps what the policy returns with the deployment's own ``autoscaling_config``: upscaling /
downscaling factors, ``upscale_delay_s`` / ``downscale_delay_s``, and the bounds ``min_replicas``
/ ``max_replicas`` (``ray.serve.autoscaling_policy._apply_autoscaling_config`` and
``DeploymentAutoscalingState.apply_bounds``). The policy only says how many replicas the load
needs; when a role is already at ``max_replicas`` the bound holds it there and waiters stay
``session.queued``.

:mod:`.options` hands Serve ``min_replicas: 0`` and ``downscale_to_zero_delay_s: 0`` and gives the
configured floor and delay to the policy instead, so that an unloaded model can reach zero at
once while every other one keeps its configured floor and idle delay. The policy publishes the
bounds it applies (:func:`~.store.write_bounds`): the live ``max_replicas`` may differ from the
application's ``args`` after a ``serveConfigV2`` edit, and the admin model records show the live
one.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy
from ray.serve.config import AutoscalingContext

from deployments.scaling.store import BOUNDS_REFRESH_S, Demand, read_demand, unloaded_since, write_bounds

logger = logging.getLogger("ray.serve")


def target_replicas(
    request_target: float,
    demand: Demand | None,
    floor: int,
    count_waiting: bool = True,
) -> float:
    """The replicas one deployment needs, before Serve's delays, factors and bounds.

    Args:
        request_target: Serve's own request-based target (``replica_queue_length_autoscaling_policy``:
            ongoing requests ÷ ``target_ongoing_requests``); kept as a floor so REST load scales
            as without this policy.
        demand: the admission service's numbers for this deployment, or ``None`` (no realtime
            role, admission off, or its record is stale).
        floor: the lowest count allowed (the configured ``min_replicas``; 0 while unloaded).
        count_waiting: count queued sessions (the queue drives scale-up); ``False`` counts only
            the sessions held, which is admission's behaviour before this policy.

    Returns:
        ``max(request_target, ceil(held / per replica), ceil((held + waiting) / per replica),
        floor)`` where ``held`` are the sessions admitted or holding a slot: scale-down never goes
        below the replicas that carry live sessions.
    """
    need = float(floor)
    if demand is not None and demand.sessions_per_replica > 0:
        sessions = demand.sessions + (demand.waiting if count_waiting else 0)
        need = max(need, math.ceil(sessions / demand.sessions_per_replica))
    return max(request_target, need)


class SessionAutoscalingPolicy:
    """Serve's request-based target, raised to carry the realtime sessions admitted and waiting.

    Args (``autoscaling_config.policy.policy_kwargs``, set by :func:`.options.session_autoscaling`):
        min_replicas: the configured floor (Serve's own ``min_replicas`` is 0 so that an unloaded
            model can reach zero).
        to_zero_delay_s: seconds without requests or sessions before 1 -> 0 when ``min_replicas``
            is 0 (the configured ``downscale_to_zero_delay_s``, else ``downscale_delay_s``).
            An unloaded model goes to zero as soon as Serve's request count, averaged over
            ``look_back_period_s``, is zero; a request after the unload wakes it (cold start)
            and it leaves again once that window is empty.
        count_waiting: whether waiting sessions count (``admission.scale_on_queue``).
        cache_s: how long one read of the KV records is reused (s); the control loop ticks every
            0.1 s.
    """

    def __init__(
        self,
        min_replicas: int = 1,
        to_zero_delay_s: float = 600.0,
        count_waiting: bool = True,
        cache_s: float = 1.0,
    ):
        self.min_replicas = int(min_replicas)
        self.to_zero_delay_s = float(to_zero_delay_s)
        self.count_waiting = bool(count_waiting)
        self.cache_s = float(cache_s)
        self._read_at = -math.inf
        self._demand: Demand | None = None
        self._unloaded: float | None = None
        self._published: tuple[tuple[int, int], float] | None = None  # (bounds, when)

    def _refresh(self, app_name: str, deployment: str, now: float) -> None:
        if now - self._read_at < self.cache_s:
            return
        self._demand = read_demand(app_name, now).get(deployment)
        self._unloaded = unloaded_since(app_name, deployment)
        self._read_at = now

    def _publish(self, ctx: AutoscalingContext, now: float) -> None:
        """Write the bounds applied now (the configured floor, the live ``max_replicas``) to the
        store when they change and every ``BOUNDS_REFRESH_S``: the admin model records show them."""
        maximum = ctx.config.max_replicas if ctx.config is not None else ctx.capacity_adjusted_max_replicas
        bounds = (self.min_replicas, int(maximum))
        if self._published and self._published[0] == bounds and now - self._published[1] < BOUNDS_REFRESH_S:
            return
        try:
            write_bounds(ctx.app_name or "", ctx.deployment_name, *bounds, at=now)
        except Exception:  # noqa: BLE001 - a GCS hiccup must not stop the controller's loop
            logger.exception("could not publish the replica bounds of %s", ctx.deployment_name)
        self._published = (bounds, now)

    def __call__(self, ctx: AutoscalingContext) -> tuple[float, dict[str, Any]]:
        """One tick: ``(desired replicas, policy state)``; the state keeps ``busy_at``, the last
        time (Unix s) the deployment had requests or sessions."""
        now = time.time()
        state = dict(ctx.policy_state or {})
        self._refresh(ctx.app_name or "", ctx.deployment_name, now)
        self._publish(ctx, now)
        request_target, _ = replica_queue_length_autoscaling_policy(ctx)
        demand = self._demand
        floor = 0 if self._unloaded is not None else self.min_replicas
        desired = target_replicas(float(request_target), demand, floor, self.count_waiting)
        busy = ctx.total_num_requests > 0 or (demand is not None and demand.sessions + demand.waiting > 0)
        if busy or "busy_at" not in state:
            state["busy_at"] = now
        if desired <= 0 and ctx.current_num_replicas > 0 and self._unloaded is None:
            # scale to zero by configuration (min_replicas 0): only after to_zero_delay_s idle;
            # an unloaded model goes as soon as Serve's request window is empty
            if now - state["busy_at"] < self.to_zero_delay_s:
                desired = 1.0
        return desired, state

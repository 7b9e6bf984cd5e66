"""One ``kubernetes.client.V1Pod``: its start phase and its seconds until Ready (no client, no I/O).

:func:`classify_pod` maps one pod onto a :class:`~deployments.admission.pods.phases.StartPhase`
(unschedulable, scheduling, pulling_image, starting, ready, failed, terminating) from its
``status.phase``, its conditions (``PodScheduled``, ``Ready``) and its container states;
:func:`pod_start` adds the remaining-time estimate (:class:`PodStart`, seconds) from the
phase's default duration (:class:`~deployments.admission.pods.phases.StartEstimates`) minus the
time the pod has already spent in that phase.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

from deployments.admission.pods.kuberay import GROUP_LABEL
from deployments.admission.pods.phases import DEFAULT_ESTIMATES, StartEstimates, StartPhase


@dataclasses.dataclass(frozen=True)
class PodStart:
    """One pod's way to Ready.

    Attributes:
        name: ``metadata.name``.
        group: the ``ray.io/group`` label (worker group name), None if absent.
        phase: the :class:`StartPhase`.
        reason: Kubernetes' own word for what the pod waits on, when it gives one: the
            ``PodScheduled`` reason (``Unschedulable``, ``SchedulingGated``), a container's
            waiting reason (``ContainerCreating``, ``PodInitializing``, ``ErrImagePull``,
            ``ImagePullBackOff``, ``CrashLoopBackOff``...), the ``Ready`` reason
            (``ContainersNotReady``) or the pod's ``status.reason`` (``Evicted``).
        since: epoch seconds when the pod entered ``phase``, as far as the pod shows it (the
            matching condition's ``lastTransitionTime``, the container's ``startedAt``, else
            ``creationTimestamp``); None if the pod carries no time at all.
        eta_s: seconds until the pod is likely Ready (:meth:`StartEstimates.remaining_s`); None
            for ready, failed and terminating pods.
    """

    name: str
    group: str | None
    phase: StartPhase
    reason: str | None
    since: float | None
    eta_s: float | None


def _epoch(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:  # the API server writes UTC (RFC 3339 with Z)
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def _condition(status: Any, kind: str) -> Any:
    for cond in (status.conditions if status is not None else None) or []:
        if cond.type == kind:
            return cond
    return None


def _waiting_reason(statuses: list | None) -> str | None:
    for cs in statuses or []:
        waiting = cs.state.waiting if cs.state is not None else None
        if waiting is not None:
            return waiting.reason or "Waiting"
    return None


def _init_reason(status: Any) -> str | None:
    """The reason init containers hold the pod: an init container's waiting reason, or
    ``PodInitializing`` while one runs."""
    inits = status.init_container_statuses if status is not None else None
    reason = _waiting_reason(inits)
    if reason is not None:
        return reason
    for cs in inits or []:
        if cs.state is not None and cs.state.running is not None:
            return "PodInitializing"
    return None


def _scheduled(pod: Any) -> bool:
    cond = _condition(pod.status, "PodScheduled")
    if cond is not None:
        return cond.status == "True"
    return bool(pod.spec is not None and pod.spec.node_name)


def classify_pod(pod: Any) -> StartPhase:
    """The :class:`StartPhase` of a ``kubernetes.client.V1Pod``.

    Rules, first match wins: ``metadata.deletionTimestamp`` set: terminating; ``status.phase``
    ``Failed`` / ``Succeeded`` / ``Unknown``: failed; ``Running``: ready if the ``Ready``
    condition is True, else starting; otherwise (``Pending``, or no phase reported yet): bound to
    a node (``PodScheduled`` True, or ``spec.nodeName`` set): pulling_image; ``PodScheduled``
    False with reason ``Unschedulable``: unschedulable; else scheduling.
    """
    meta, status = pod.metadata, pod.status
    if meta is not None and meta.deletion_timestamp is not None:
        return StartPhase.TERMINATING
    phase = status.phase if status is not None else None
    if phase in ("Failed", "Succeeded", "Unknown"):
        return StartPhase.FAILED
    if phase == "Running":
        ready = _condition(status, "Ready")
        return StartPhase.READY if ready is not None and ready.status == "True" else StartPhase.STARTING
    if _scheduled(pod):
        return StartPhase.PULLING_IMAGE
    cond = _condition(status, "PodScheduled")
    if cond is not None and cond.status == "False" and cond.reason == "Unschedulable":
        return StartPhase.UNSCHEDULABLE
    return StartPhase.SCHEDULING


def _phase_detail(pod: Any, phase: StartPhase) -> tuple[str | None, float | None]:
    """(reason, since) of a pod in ``phase``."""
    meta, status = pod.metadata, pod.status
    created = _epoch(meta.creation_timestamp) if meta is not None else None
    started = _epoch(status.start_time) if status is not None else None
    scheduled = _condition(status, "PodScheduled")
    ready = _condition(status, "Ready")
    if phase is StartPhase.UNSCHEDULABLE:
        since = _epoch(scheduled.last_transition_time) if scheduled is not None else None
        return "Unschedulable", since or created
    if phase is StartPhase.SCHEDULING:
        return (scheduled.reason if scheduled is not None else None), created
    if phase is StartPhase.PULLING_IMAGE:
        since = _epoch(scheduled.last_transition_time) if scheduled is not None and scheduled.status == "True" else None
        reason = _init_reason(status) or _waiting_reason(status.container_statuses if status is not None else None)
        return reason, since or started or created
    if phase is StartPhase.STARTING:
        runs = [
            _epoch(cs.state.running.started_at)
            for cs in (status.container_statuses or [])
            if cs.state is not None and cs.state.running is not None and cs.state.running.started_at is not None
        ]
        reason = _waiting_reason(status.container_statuses) or (ready.reason if ready is not None else None)
        since = max(runs) if runs else (_epoch(ready.last_transition_time) if ready is not None else None)
        return reason, since or started or created
    if phase is StartPhase.FAILED:
        return status.reason or status.phase, None
    return None, None


def pod_start(pod: Any, now: float | None = None, estimates: StartEstimates = DEFAULT_ESTIMATES) -> PodStart:
    """Classify ``pod`` (a ``kubernetes.client.V1Pod``) and estimate its seconds until Ready at
    ``now`` (epoch seconds; default ``time.time()``): the phase's default minus the time since
    :attr:`PodStart.since` (a pod without timestamps counts as just entered)."""
    now = time.time() if now is None else now
    phase = classify_pod(pod)
    reason, since = _phase_detail(pod, phase)
    elapsed = now - since if since is not None else 0.0
    meta = pod.metadata
    labels = (meta.labels if meta is not None else None) or {}
    return PodStart(
        name=(meta.name if meta is not None else None) or "",
        group=labels.get(GROUP_LABEL),
        phase=phase,
        reason=reason,
        since=since,
        eta_s=estimates.remaining_s(phase, elapsed),
    )

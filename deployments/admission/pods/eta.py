"""The worker pods together: seconds until those now starting are Ready, and the worker group
of the slowest.

:func:`pod_starts` is the :func:`~deployments.admission.pods.classify.pod_start` of each worker
pod; :func:`pod_eta` combines them into one ``(eta_s, provider)``: the seconds until the worker
pods now starting are Ready, and the ``ray.io/group`` (worker group name) of the pod that takes
longest.

The pod ETA covers the pod only: once the pod is Ready, Ray still has to start the Serve replica
(model download and load), which Serve's observed start times measure. The caller combines the two
as ``max(observed Serve start ETA, pod ETA)``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from deployments.admission.pods.classify import PodStart, pod_start
from deployments.admission.pods.kuberay import NODE_TYPE_LABEL
from deployments.admission.pods.phases import DEFAULT_ESTIMATES, StartEstimates


def pod_starts(
    pods: Iterable[Any], now: float | None = None, estimates: StartEstimates = DEFAULT_ESTIMATES
) -> list[PodStart]:
    """:func:`pod_start` of every worker pod in ``pods`` (pods labelled ``ray.io/node-type``
    other than ``worker`` are left out), longest ETA first, ready/failed/terminating last."""
    now = time.time() if now is None else now
    out = []
    for pod in pods:
        labels = (pod.metadata.labels if pod.metadata is not None else None) or {}
        if labels.get(NODE_TYPE_LABEL, "worker") != "worker":
            continue
        out.append(pod_start(pod, now, estimates))
    return sorted(out, key=lambda s: (s.eta_s is None, -(s.eta_s or 0.0), s.name))


def pod_eta(
    pods: Iterable[Any],
    now: float | None = None,
    groups: Iterable[str] | None = None,
    estimates: StartEstimates = DEFAULT_ESTIMATES,
) -> tuple[float | None, str | None]:
    """``(eta_s, provider)`` of the worker pods now on their way to Ready.

    ``eta_s``: seconds until the last of them is likely Ready (a waiting session needs every
    role of the cascade, so it waits for every pod being started; a scale-up that adds several
    pods to one group is then estimated by its slowest pod). ``provider``: the ``ray.io/group``
    (worker group name) of that pod. ``(None, None)`` when no worker pod is starting: every pod is
    ready, failed or terminating, or there are none.

    Args:
        pods: ``kubernetes.client.V1Pod`` objects (e.g.
            :meth:`~deployments.admission.pods.watcher.WorkerPods.snapshot` values); pods labelled
            ``ray.io/node-type`` other than ``worker`` are ignored.
        now: epoch seconds (default ``time.time()``).
        groups: only pods of these worker groups (e.g. the groups that can hold the deployments
            now starting); None: every group.
        estimates: the phase durations (:data:`DEFAULT_ESTIMATES`).
    """
    wanted = None if groups is None else set(groups)
    for start in pod_starts(pods, now, estimates):  # longest ETA first
        if start.eta_s is None:
            break
        if wanted is None or start.group in wanted:
            return start.eta_s, start.group
    return None, None

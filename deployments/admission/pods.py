"""The RayCluster's worker pods, seen through the Kubernetes API: how long until those now starting are Ready.

On Kubernetes a cold start often waits for a worker pod before Serve can even place the replica:
the Ray autoscaler asks KubeRay for a pod, the pod waits for a node (the cluster autoscaler or
Karpenter provisions one: minutes for a GPU node), then pulls the image, then starts Ray. Serve's
own view (``replica_states`` ``{"STARTING": 1}``) cannot tell these apart; the pods can. This
module reads them and turns each into a remaining-time estimate, so that ``session.preparing``
can say "about 5 minutes" while a GPU node is being provisioned instead of repeating the mean of
earlier starts.

Three layers, each usable alone:

* :func:`classify_pod` maps one ``kubernetes.client.V1Pod`` onto a :class:`StartPhase`
  (unschedulable, scheduling, pulling_image, starting, ready, failed, terminating) from its
  ``status.phase``, its conditions (``PodScheduled``, ``Ready``) and its container states;
* :func:`pod_start` adds the remaining-time estimate (:class:`PodStart`, seconds) from the
  phase's default duration (:class:`StartEstimates`, module constants below) minus the time the
  pod has already spent in that phase; :func:`pod_eta` combines the worker pods into one
  ``(eta_s, provider)``: the seconds until the worker pods now starting are Ready, and the
  ``ray.io/group`` (worker group name) of the pod that takes longest;
* :class:`WorkerPods` keeps the pods of one RayCluster up to date: a list, then a watch
  (``CoreV1Api.list_namespaced_pod`` with ``watch=true``) in a daemon thread, re-listing after
  410 Gone or any error. :meth:`WorkerPods.from_environment` builds one on the head pod (the
  in-cluster service account, ``RAY_CLUSTER_NAME`` that KubeRay sets in every Ray container) and
  returns None anywhere else, without creating a client.

The pod ETA covers the pod only: once the pod is Ready, Ray still has to start the Serve replica
(model download and load), which Serve's observed start times measure. The caller combines the two
as ``max(observed Serve start ETA, pod ETA)``.

Only this RayCluster's worker pods matter; they are selected with KubeRay's own labels
(``ray-operator/controllers/ray/utils/constant.go``): ``ray.io/cluster=<RayCluster name>``,
``ray.io/node-type=worker``, and ``ray.io/group=<worker group>`` names the group. The head pod's
service account needs ``list`` and ``watch`` on ``pods`` in its namespace (the Helm chart's Role,
``rbac.create``).

Times: ``now`` and every returned time are wall-clock epoch seconds (``time.time()``), because the
API server's timestamps (``creationTimestamp``, ``lastTransitionTime``, ``startedAt``) are
wall-clock; all durations are seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import kubernetes

logger = logging.getLogger("ray.serve")

# ------------------------------------------------------------------------------------------
# KubeRay's labels and the in-cluster environment
# ------------------------------------------------------------------------------------------

CLUSTER_LABEL = "ray.io/cluster"
"""KubeRay's pod label holding the RayCluster's name (``RayClusterLabelKey``)."""
NODE_TYPE_LABEL = "ray.io/node-type"
"""KubeRay's pod label ``head`` or ``worker`` (``RayNodeTypeLabelKey``)."""
GROUP_LABEL = "ray.io/group"
"""KubeRay's pod label holding the worker group name (``headgroup`` on the head pod)."""
CLUSTER_NAME_ENV = "RAY_CLUSTER_NAME"
"""Environment variable KubeRay sets in the Ray container of head and worker pods: the RayCluster's
``metadata.name`` (KubeRay docs/guidance/environment-variables.md). Under a RayService it is the
generated ``<rayservice>-xxxxx``, so it cannot be known when the chart renders."""
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where Kubernetes mounts the pod's service-account ``token``, ``ca.crt`` and ``namespace``."""


def label_selector(cluster_name: str) -> str:
    """The label selector of one RayCluster's worker pods:
    ``ray.io/cluster=<cluster_name>,ray.io/node-type=worker``."""
    return f"{CLUSTER_LABEL}={cluster_name},{NODE_TYPE_LABEL}=worker"


# ------------------------------------------------------------------------------------------
# Start phases and their default durations
# ------------------------------------------------------------------------------------------


class StartPhase(str, enum.Enum):
    """Where a pod is on its way to Ready (``kubectl get pod`` shows them as STATUS ``Pending``,
    ``ContainerCreating`` / ``ErrImagePull`` / ``Init:0/1``, ``Running`` with READY 0/1 or 1/1,
    ``Error``, ``Terminating``)."""

    UNSCHEDULABLE = "unschedulable"
    """Pending, ``PodScheduled`` False with reason ``Unschedulable``: no node has room (e.g.
    ``Insufficient nvidia.com/gpu``); a new node must be provisioned."""
    SCHEDULING = "scheduling"
    """Pending and not yet bound to a node, and the scheduler has not (yet) called it
    unschedulable (also ``SchedulingGated``)."""
    PULLING_IMAGE = "pulling_image"
    """Pending on a node: the containers are being created. Mostly the image pull; also volume
    mounts and init containers (KubeRay's ``wait-gcs-ready``). Container waiting reasons
    ``ContainerCreating``, ``PodInitializing``, ``ErrImagePull``, ``ImagePullBackOff``..."""
    STARTING = "starting"
    """Running, but the ``Ready`` condition is not True: Ray is starting (or the container
    restarts, ``CrashLoopBackOff``) and KubeRay's readiness probe has not passed yet."""
    READY = "ready"
    """Running with ``Ready`` True: the Ray node has joined; Serve can place replicas on it."""
    FAILED = "failed"
    """Phase ``Failed``, ``Succeeded`` (a Ray pod never finishes on purpose) or ``Unknown`` (its
    node lost contact): it will not become Ready; KubeRay normally deletes it and creates a new
    pod, which the watcher sees as a new pod."""
    TERMINATING = "terminating"
    """``metadata.deletionTimestamp`` set: the pod is being deleted (scale-down, eviction)."""


NODE_PROVISIONING_S = 240.0
"""Default seconds to provision a node for an unschedulable pod: the cluster autoscaler (GKE's
cluster autoscaler / node auto-provisioning, EKS's Cluster Autoscaler or Karpenter) notices the
pod, the cloud boots an instance, the node registers and, on a GPU node, the NVIDIA driver and
device plugin come up before ``nvidia.com/gpu`` is allocatable. For GPU nodes this is usually a
matter of minutes (roughly 2-6; a CPU node under Karpenter about one); 4 minutes is a middle
value. A rough figure, not a measurement: no cluster was available to this project to time it,
so replace it (:class:`StartEstimates`) with what your node pools show."""

SCHEDULING_S = 5.0
"""Default seconds for the scheduler to bind a pod to a node that has room: normally well under a
second, a few seconds under load or behind a queueing layer (Kueue, scheduling gates)."""

IMAGE_PULL_S = 90.0
"""Default seconds from binding to the containers' start on a fresh node: mostly pulling and
unpacking the image (the GPU image, CUDA torch + Ray, is several GB: at 50-200 MB/s about 30 s to
2 minutes), plus volume mounts and KubeRay's ``wait-gcs-ready`` init container. A node that has
the image already (``imagePullPolicy: IfNotPresent``) is through in seconds, and the next pod
update moves the pod on. An estimate from image size and typical registry throughput."""

RAY_START_S = 20.0
"""Default seconds from the Ray container's start to the pod's ``Ready``: ``ray start`` joins the
GCS, and KubeRay's injected readiness probe passes at the earliest after its
``initialDelaySeconds`` 10 and then every ``periodSeconds`` 5 (KubeRay's defaults in
ray-operator/controllers/ray/utils/constant.go): 10-20 s."""

MIN_PHASE_REMAINING_S = 5.0
"""A phase that has already lasted longer than its default still counts this many seconds: the
pod is visibly not past it yet, so the estimate never reaches zero while it waits."""


@dataclasses.dataclass(frozen=True)
class StartEstimates:
    """The default duration of each start phase, in seconds (the module constants above, or
    measured values of your own cluster). The remaining time of a pod in a phase is
    ``max(min_remaining_s, own duration - time already in the phase)`` plus the full durations of
    the phases after it (:meth:`remaining_s`)."""

    node_provisioning_s: float = NODE_PROVISIONING_S
    scheduling_s: float = SCHEDULING_S
    image_pull_s: float = IMAGE_PULL_S
    ray_start_s: float = RAY_START_S
    min_remaining_s: float = MIN_PHASE_REMAINING_S

    def remaining_s(self, phase: StartPhase, elapsed_s: float = 0.0) -> float | None:
        """Seconds until Ready of a pod that entered ``phase`` ``elapsed_s`` seconds ago; None for
        ready, failed and terminating pods (they are not on their way to Ready)."""
        steps = {
            StartPhase.UNSCHEDULABLE: (self.node_provisioning_s, self.image_pull_s + self.ray_start_s),
            StartPhase.SCHEDULING: (self.scheduling_s, self.image_pull_s + self.ray_start_s),
            StartPhase.PULLING_IMAGE: (self.image_pull_s, self.ray_start_s),
            StartPhase.STARTING: (self.ray_start_s, 0.0),
        }.get(phase)
        if steps is None:
            return None
        own, after = steps
        return max(self.min_remaining_s, own - max(0.0, elapsed_s)) + after


DEFAULT_ESTIMATES = StartEstimates()
"""The estimates :func:`pod_start`, :func:`pod_eta` and :class:`WorkerPods` use by default."""

# ------------------------------------------------------------------------------------------
# One pod
# ------------------------------------------------------------------------------------------


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
        pods: ``kubernetes.client.V1Pod`` objects (e.g. :meth:`WorkerPods.snapshot` values);
            pods labelled ``ray.io/node-type`` other than ``worker`` are ignored.
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


# ------------------------------------------------------------------------------------------
# The watcher
# ------------------------------------------------------------------------------------------


def _shutdown(response: Any) -> None:
    """Shut down the socket of a watch response so that the read blocked on it returns.

    ``Watch.stop()`` shuts the socket through ``response.connection.sock``, which ``http.client``
    has already dropped when the server (or a proxy) answered ``Connection: close``; urllib3's
    ``HTTPResponse.shutdown()`` (urllib3 >= 2.3) keeps its own reference and works in both cases.
    """
    shutdown = getattr(response, "shutdown", None)
    if shutdown is not None:
        try:
            shutdown()
        except (OSError, RuntimeError, ValueError):  # already closed or released
            pass


class WorkerPods:
    """The worker pods of one RayCluster, kept current by a list + watch in a daemon thread.

    The thread lists the pods (``GET /api/v1/namespaces/<ns>/pods?labelSelector=...``), then
    watches from the list's ``resourceVersion`` (``watch=true``, ``timeoutSeconds`` =
    ``watch_timeout_s``, bookmarks allowed) and applies ADDED / MODIFIED / DELETED events to a
    ``{pod name: V1Pod}`` map. A watch that ends (its timeout) resumes from the last
    ``resourceVersion`` seen; a 410 Gone (that version was compacted away) re-lists at once; any
    other error re-lists after a backoff (doubling from ``backoff_s[0]`` to ``backoff_s[1]``
    seconds). Between an error and the next successful list the map is stale, and :meth:`eta`
    answers ``(None, None)`` rather than report pods that may have moved on.

    Needs ``list`` and ``watch`` on ``pods`` in ``namespace`` (the chart's Role).

    Args:
        api_client: a ``kubernetes.client.ApiClient`` (its configuration holds the API server's
            address and credentials). Closed by :meth:`close` only when
            :meth:`from_environment` created it.
        namespace: the RayCluster's namespace.
        cluster_name: the RayCluster's ``metadata.name`` (the ``ray.io/cluster`` label).
        watch_timeout_s: server-side timeout of one watch request, seconds; the client's read
            timeout is 30 s longer.
        backoff_s: (first, longest) wait after an error, seconds.
        estimates: the phase durations :meth:`eta` uses.
        start: start the thread now (else call :meth:`start`).
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespace: str,
        cluster_name: str,
        *,
        watch_timeout_s: int = 240,
        backoff_s: tuple[float, float] = (1.0, 30.0),
        estimates: StartEstimates = DEFAULT_ESTIMATES,
        start: bool = True,
    ):
        self.namespace = namespace
        self.cluster_name = cluster_name
        self.label_selector = label_selector(cluster_name)
        self.watch_timeout_s = int(watch_timeout_s)
        self.backoff_s = (float(backoff_s[0]), float(backoff_s[1]))
        self.estimates = estimates
        self._api_client = api_client
        self._api = kubernetes.client.CoreV1Api(api_client)
        self._owns_client = False
        self._started = False
        self._lock = threading.Lock()
        self._pods: dict[str, Any] = {}
        self._fresh = False
        self._listed = threading.Event()
        self._stop = threading.Event()
        self._watch: kubernetes.watch.Watch | None = None
        self._last_error: str | None = None
        self.lists = 0
        """Successful lists so far: the first one, then one after each 410 Gone or error."""
        self._thread = threading.Thread(target=self._run, name=f"worker-pods-{cluster_name}", daemon=True)
        if start:
            self.start()

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        service_account_dir: str | os.PathLike = SERVICE_ACCOUNT_DIR,
        **options: Any,
    ) -> WorkerPods | None:
        """A started watcher for the RayCluster this process runs in, or None off Kubernetes.

        On Kubernetes means: ``KUBERNETES_SERVICE_HOST`` / ``KUBERNETES_SERVICE_PORT`` set (the
        kubelet sets them in every container), the service-account ``token``, ``ca.crt`` and
        ``namespace`` files under ``service_account_dir`` (automounted unless the pod opts out),
        and ``RAY_CLUSTER_NAME`` (KubeRay sets it in the Ray container). If any is missing it
        returns None without creating a Kubernetes client. Otherwise the credentials are loaded
        the way ``kubernetes.config.load_incluster_config()`` loads them (its
        ``InClusterConfigLoader``, token refresh included) into a configuration of this watcher
        alone, and the namespace is the one in the ``namespace`` file.

        Args:
            environ: the environment (default ``os.environ``).
            service_account_dir: the service-account mount (default
                ``/var/run/secrets/kubernetes.io/serviceaccount``).
            options: keyword arguments of the constructor (``watch_timeout_s``...).
        """
        env = os.environ if environ is None else environ
        if not env.get("KUBERNETES_SERVICE_HOST") or not env.get("KUBERNETES_SERVICE_PORT"):
            return None
        sa = Path(service_account_dir)
        token, cert, ns_file = sa / "token", sa / "ca.crt", sa / "namespace"
        if not (token.is_file() and cert.is_file() and ns_file.is_file()):
            logger.info("worker pods: no service-account token under %s, pod-based ETAs are off", sa)
            return None
        cluster = (env.get(CLUSTER_NAME_ENV) or "").strip()
        namespace = ns_file.read_text().strip()
        if not cluster or not namespace:
            logger.warning("worker pods: %s or the namespace is not known, pod-based ETAs are off", CLUSTER_NAME_ENV)
            return None
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.incluster_config.InClusterConfigLoader(
                token_filename=str(token), cert_filename=str(cert), environ=env
            ).load_and_set(configuration)
        except kubernetes.config.ConfigException as exc:
            logger.warning("worker pods: in-cluster configuration failed (%s), pod-based ETAs are off", exc)
            return None
        watcher = cls(kubernetes.client.ApiClient(configuration), namespace, cluster, **options)
        watcher._owns_client = True
        return watcher

    # ---------------------------------------------------------------- reading

    def snapshot(self) -> dict[str, Any]:
        """``{pod name: kubernetes.client.V1Pod}`` as last seen (a copy; empty before the first
        list)."""
        with self._lock:
            return dict(self._pods)

    @property
    def synced(self) -> bool:
        """True while the map is current: the last list succeeded and no error came since."""
        with self._lock:
            return self._fresh

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until the first list succeeded; returns :attr:`synced`."""
        self._listed.wait(timeout)
        return self.synced

    @property
    def last_error(self) -> str | None:
        """The last list or watch error (``"410 Gone"``, ``"403 Forbidden"``...), None if none."""
        with self._lock:
            return self._last_error

    def starts(self, now: float | None = None) -> list[PodStart]:
        """:func:`pod_starts` of the current pods (empty while not :attr:`synced`)."""
        with self._lock:
            pods = list(self._pods.values()) if self._fresh else []
        return pod_starts(pods, now, self.estimates)

    def eta(self, now: float | None = None, groups: Iterable[str] | None = None) -> tuple[float | None, str | None]:
        """:func:`pod_eta` of the current pods: ``(seconds until the worker pods now starting
        are Ready, their worker group)``; ``(None, None)`` when none is starting or while not
        :attr:`synced`. ``now``: epoch seconds (default ``time.time()``)."""
        with self._lock:
            if not self._fresh:
                return None, None
            pods = list(self._pods.values())
        return pod_eta(pods, now, groups, self.estimates)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the list/watch thread (once; a no-op after :meth:`close`)."""
        if not self._started and not self._stop.is_set():
            self._started = True
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (an open watch is cut: its socket is shut down) and wait up to
        ``timeout`` seconds for it; close the API client if this watcher created it."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            w = self._watch
            if w is not None:  # repeated: a watch may connect after the first stop()
                w.stop()
                _shutdown(getattr(w, "_resp", None))
            self._thread.join(0.05)
        if self._owns_client:
            self._api_client.close()

    def __enter__(self) -> WorkerPods:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        delay = self.backoff_s[0]
        while not self._stop.is_set():
            try:
                version = self._list()
                delay = self.backoff_s[0]
                while not self._stop.is_set():
                    began = time.monotonic()
                    version = self._watch_once(version)
                    if time.monotonic() - began < 1.0:  # a watch cut at once (a proxy?): do not spin
                        self._stop.wait(self.backoff_s[0])
            except kubernetes.client.ApiException as exc:
                self._failed(f"{exc.status} {exc.reason}", gone=exc.status == 410)
                if exc.status == 410:  # the version is gone: re-list at once
                    continue
            except Exception as exc:  # connection refused, timeouts, bad responses
                if self._stop.is_set():
                    break
                self._failed(f"{type(exc).__name__}: {exc}")
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.backoff_s[1])

    def _failed(self, error: str, gone: bool = False) -> None:
        with self._lock:
            repeated = error == self._last_error
            self._fresh = False
            self._last_error = error
        if not self._stop.is_set():
            # 410 Gone is routine (etcd compaction); the same error again (no RBAC...) is logged once
            level = logging.INFO if gone else logging.DEBUG if repeated else logging.WARNING
            logger.log(level, "worker pods of %s/%s: %s; re-listing", self.namespace, self.cluster_name, error)

    def _list(self) -> str | None:
        result = self._api.list_namespaced_pod(
            self.namespace, label_selector=self.label_selector, _request_timeout=(10, 60)
        )
        pods = {p.metadata.name: p for p in result.items or [] if p.metadata is not None and p.metadata.name}
        with self._lock:
            self._pods = pods
            self._fresh = True
            self.lists += 1
        self._listed.set()
        return result.metadata.resource_version if result.metadata is not None else None

    def _watch_once(self, version: str | None) -> str | None:
        """One watch request from ``version``; returns the last version seen."""
        w = kubernetes.watch.Watch()
        self._watch = w
        try:
            if self._stop.is_set():
                return version
            for event in w.stream(
                self._api.list_namespaced_pod,
                self.namespace,
                label_selector=self.label_selector,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=self.watch_timeout_s,
                _request_timeout=(10, self.watch_timeout_s + 30),
            ):
                kind, pod = event.get("type"), event.get("object")
                if kind in ("ADDED", "MODIFIED", "DELETED") and pod is not None and pod.metadata is not None:
                    with self._lock:
                        if kind == "DELETED":
                            self._pods.pop(pod.metadata.name, None)
                        else:
                            self._pods[pod.metadata.name] = pod
                if self._stop.is_set():
                    break
            return w.resource_version or version
        finally:
            self._watch = None

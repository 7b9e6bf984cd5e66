"""The steps of a worker pod's way to Ready, and how long each takes by default.

:class:`StartPhase` names the steps (as ``kubectl get pod`` shows them); the module constants
are each step's default duration, and :class:`StartEstimates` turns a phase and the time
already spent in it into the seconds left until Ready. No Kubernetes object is read here
(:mod:`deployments.admission.pods.classify` maps a pod onto its phase).
"""

from __future__ import annotations

import dataclasses
import enum


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
"""The estimates :func:`~deployments.admission.pods.classify.pod_start`,
:func:`~deployments.admission.pods.eta.pod_eta` and
:class:`~deployments.admission.pods.watcher.WorkerPods` use by default."""

"""What KubeRay and Kubernetes put on a Ray pod: the labels that select one RayCluster's worker
pods, and the head pod's environment (``RAY_CLUSTER_NAME``, the service-account mount).

Only this RayCluster's worker pods matter; they are selected with KubeRay's own labels
(``ray-operator/controllers/ray/utils/constant.go``): ``ray.io/cluster=<RayCluster name>``,
``ray.io/node-type=worker``, and ``ray.io/group=<worker group>`` names the group.
"""

from __future__ import annotations

from pathlib import Path

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

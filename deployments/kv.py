"""Ray's internal KV store (the GCS key-value store that Serve's controller checkpoints into):
the one namespace omniserve writes and the client of this process.

Admission persists its state there (:mod:`deployments.admission.server`), and the records the
queue-driven autoscaling policy reads live there too (:mod:`deployments.scaling.store`): it is the
one store that the ingress replicas, the admission replica and Serve's controller all reach, and it
outlives each of them.
"""

from __future__ import annotations

from types import ModuleType

from ray.experimental import internal_kv

#: Namespace of every key omniserve writes.
KV_NAMESPACE = "omniserve"


def kv() -> ModuleType | None:
    """Ray's ``internal_kv`` module when this process is connected to a Ray cluster, else ``None``
    (calls are blocking gRPC round trips to the GCS: run them in a thread from async code)."""
    return internal_kv if internal_kv._internal_kv_initialized() else None

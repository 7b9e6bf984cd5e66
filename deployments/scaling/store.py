"""The records the queue-driven autoscaling policy reads, in Ray's internal KV
(:mod:`deployments.kv`, namespace ``omniserve``).

* ``scaling/<app>/demand`` — written by the admission service whenever its numbers change and at
  least every :data:`DEMAND_REFRESH_S`: ``{"at": Unix s, "deployments": {deployment name:
  {"sessions": int, "waiting": int, "sessions_per_replica": int}}}``. ``sessions`` counts the
  realtime sessions admitted plus the reservations whose slot is held for a returning client;
  ``waiting`` the reservations still queued. A record older than :data:`DEMAND_TTL_S` is ignored
  (the admission replica is gone or restarting): the policy then falls back to Serve's own target.
* ``scaling/<app>/unloaded/<deployment>`` — written by ``POST /v1/admin/models/{id}/unload``,
  deleted by ``…/load``: the Unix time of the unload, as text.
* ``scaling/<app>/bounds/<deployment>`` — written by the policy itself, in Serve's controller,
  when they change and at least every :data:`BOUNDS_REFRESH_S`: ``{"at": Unix s, "min_replicas":
  int, "max_replicas": int}``, the bounds it applies now. They come from the deployment's live
  ``autoscaling_config``, which a RayService's ``serveConfigV2`` entry (``kubectl``, Helm's
  ``serve.deploymentOverrides``) may have changed since the application's ``args`` were written,
  so the admin model records read them here. Older than :data:`BOUNDS_TTL_S`: the policy no
  longer runs for that deployment (it was given a fixed ``num_replicas`` or a policy of its own).

Every function is a blocking GCS round trip (about a millisecond): call it in a thread from async
code. Serve's controller calls the policy synchronously, so the policy calls them directly. Off a
Ray cluster the readers return nothing and the writers do nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from deployments.kv import KV_NAMESPACE, kv

logger = logging.getLogger("ray.serve")

#: A demand record older than this (s) is ignored, so that the queue of an admission replica that
#: died (it rewrites the record at least every DEMAND_REFRESH_S) stops driving replicas.
DEMAND_TTL_S = 30.0
#: The admission service rewrites an unchanged record this often (s), so that it stays fresh.
DEMAND_REFRESH_S = 5.0
#: The policy rewrites unchanged bounds this often (s); readers ignore a record older than BOUNDS_TTL_S.
BOUNDS_REFRESH_S = 10.0
BOUNDS_TTL_S = 30.0


@dataclass(frozen=True)
class Demand:
    """What realtime sessions ask of one deployment.

    Attributes:
        sessions: sessions admitted, plus reservations whose slot is held (they come back).
        waiting: reservations queued for a slot.
        sessions_per_replica: sessions one replica carries (``admission.sessions_per_replica``).
    """

    sessions: int = 0
    waiting: int = 0
    sessions_per_replica: int = 1


def demand_key(app_name: str) -> str:
    return f"scaling/{app_name}/demand"


def unload_key(app_name: str, deployment: str) -> str:
    return f"scaling/{app_name}/unloaded/{deployment}"


def bounds_key(app_name: str, deployment: str) -> str:
    return f"scaling/{app_name}/bounds/{deployment}"


def _put_record(key: str, record: dict, at: float) -> None:
    """Store ``record`` under ``key`` as JSON, stamped ``"at": at`` (Unix s)."""
    if (client := kv()) is not None:
        client._internal_kv_put(key, json.dumps({"at": at, **record}).encode(), True, namespace=KV_NAMESPACE)


def _fresh_record(key: str, now: float, ttl_s: float) -> dict | None:
    """The JSON record under ``key``, or ``None`` when there is none, it is older than ``ttl_s``
    seconds at ``now`` (Unix s), or it cannot be read (logged: a broken record must not stop the
    controller's loop or an admin route)."""
    if (client := kv()) is None:
        return None
    try:
        blob = client._internal_kv_get(key, namespace=KV_NAMESPACE)
        record = json.loads(blob) if blob else None
        return record if record is not None and now - float(record["at"]) <= ttl_s else None
    except Exception:  # noqa: BLE001
        logger.exception("unreadable scaling record %s", key)
        return None


def write_demand(app_name: str, demand: dict[str, Demand], at: float) -> None:
    """Store the admission service's demand (``{deployment name: Demand}``) as of ``at`` (Unix s)."""
    _put_record(demand_key(app_name), {"deployments": {name: asdict(d) for name, d in demand.items()}}, at)


def read_demand(app_name: str, now: float, ttl_s: float = DEMAND_TTL_S) -> dict[str, Demand]:
    """``{deployment name: Demand}`` of the latest record, ``{}`` when there is none, it is older
    than ``ttl_s`` seconds at ``now`` (Unix s), or it cannot be read."""
    record = _fresh_record(demand_key(app_name), now, ttl_s)
    if record is None:
        return {}
    try:
        return {name: Demand(**d) for name, d in record["deployments"].items()}
    except (KeyError, TypeError, AttributeError):
        logger.exception("malformed scaling demand record for %s", app_name)
        return {}


def mark_unloaded(app_name: str, deployment: str, at: float) -> None:
    """Mark ``deployment`` unloaded since ``at`` (Unix s): the policy drops its floor to zero."""
    if (client := kv()) is not None:
        client._internal_kv_put(unload_key(app_name, deployment), repr(at).encode(), True, namespace=KV_NAMESPACE)


def clear_unloaded(app_name: str, deployment: str) -> None:
    """Take the unload mark of ``deployment`` away: its floor is ``min_replicas`` again."""
    if (client := kv()) is not None:
        client._internal_kv_del(unload_key(app_name, deployment), namespace=KV_NAMESPACE)


def unloaded_since(app_name: str, deployment: str) -> float | None:
    """When ``deployment`` was unloaded (Unix s), or ``None`` when it is not."""
    if (client := kv()) is None:
        return None
    try:
        blob = client._internal_kv_get(unload_key(app_name, deployment), namespace=KV_NAMESPACE)
        return float(blob) if blob else None
    except Exception:  # noqa: BLE001
        logger.exception("unreadable unload mark of %s/%s", app_name, deployment)
        return None


def write_bounds(app_name: str, deployment: str, min_replicas: int, max_replicas: int, at: float) -> None:
    """Publish the replica bounds the policy applies to ``deployment`` as of ``at`` (Unix s)."""
    _put_record(bounds_key(app_name, deployment), {"min_replicas": min_replicas, "max_replicas": max_replicas}, at)


def read_bounds(app_name: str, deployment: str, now: float, ttl_s: float = BOUNDS_TTL_S) -> tuple[int, int] | None:
    """``(min_replicas, max_replicas)`` the policy last published for ``deployment``, or ``None``
    when there is no record, it is older than ``ttl_s`` seconds at ``now`` (Unix s), or it cannot be
    read (the admin records then show the configured bounds)."""
    record = _fresh_record(bounds_key(app_name, deployment), now, ttl_s)
    try:
        return None if record is None else (int(record["min_replicas"]), int(record["max_replicas"]))
    except (KeyError, TypeError, ValueError):
        logger.exception("malformed replica bounds of %s/%s", app_name, deployment)
        return None

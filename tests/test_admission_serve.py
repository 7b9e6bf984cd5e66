"""The admission service on a real local Ray cluster with Serve.

:class:`deployments.admission.server.AdmissionServer` is deployed alone with a tiny dummy role
deployment (it has the cheap ``info()`` every model server has): capacity is measured from its
RUNNING replicas, a role at zero replicas gives ``session.preparing`` and is woken by the arrival,
and killing the admission replica (Serve starts a new one) loses no admitted session and no queue
position (state written through to Ray's internal KV).
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402
from ray import serve  # noqa: E402

from deployments.admission.contract import CLOSE_UNAVAILABLE  # noqa: E402
from deployments.admission.server import AdmissionServer  # noqa: E402


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=8)
class AdmissionDummyRole:
    """Stands in for a model server: a constructor that takes a while, and ``info()``."""

    def __init__(self, delay_s: float = 0.0):
        time.sleep(delay_s)

    def info(self) -> dict:
        return {"id": "dummy", "role": "llm"}


def _wait(fn, timeout_s: float, what: str, interval_s: float = 0.5):
    """Call ``fn`` until it returns a truthy value (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - e.g. the replica is restarting
            last = exc
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def admission_serve_cluster():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200_000_000)
    # handles only: no HTTP proxy (port 8000 may be taken by another cluster on this machine)
    serve.start(proxy_location="Disabled")
    apps: list[str] = []
    yield apps
    for name in apps:
        try:
            serve.delete(name)
        except Exception:  # noqa: BLE001
            pass
    if started:
        serve.shutdown()
        ray.shutdown()


def _deploy(
    apps: list[str], name: str, admission_config: dict, roles: dict, role_app=None, autoscaling: dict | None = None
):
    config = {
        "api_keys_env": None,
        "status_poll_s": 0.5,
        "replica_timeout_s": 600,
        "state_key": f"test-admission/{name}/{uuid.uuid4().hex}",
        **admission_config,
    }
    handles = {"AdmissionDummyRole": role_app} if role_app is not None else {}
    app = AdmissionServer.options(health_check_period_s=1, health_check_timeout_s=5).bind(
        config, roles, handles, autoscaling
    )
    apps.append(name)
    return serve.run(app, name=name, route_prefix=None)


def _admit(handle, instance: str, **extra) -> dict:
    return handle.admit.remote({"instance": instance, "replica_id": "ingress-test", **extra}).result()


def test_capacity_from_running_replicas_and_restart_loses_nothing(admission_serve_cluster):
    role = AdmissionDummyRole.options(name="AdmissionDummyRole", num_replicas=2).bind()
    h = _deploy(
        admission_serve_cluster,
        "admission_cap",
        {"sessions_per_replica": 1},
        {"llm": "AdmissionDummyRole"},
        role,
        {"AdmissionDummyRole": None},
    )

    cap = _wait(lambda: (c := h.capacity.remote().result())["capacity"] == 2 and c, 30, "capacity 2")
    assert cap["roles"]["llm"]["running"] == 2 and cap["roles"]["llm"]["sessions_per_replica"] == 1

    a = _admit(h, "alice:1")
    b = _admit(h, "bob:1")
    assert a["outcome"] == b["outcome"] == "created" and a["close_code"] is None
    c = _admit(h, "carol:1")
    d = _admit(h, "dave:1")
    assert c["outcome"] == "queued" and c["close_code"] == CLOSE_UNAVAILABLE
    assert (c["event"]["position"], c["event"]["queue_len"]) == (0, 1)
    assert (d["event"]["position"], d["event"]["queue_len"]) == (1, 2)
    # a second instance of the same account (user "alice") needs consent
    consent = _admit(h, "alice:2")
    assert consent["outcome"] == "consent_required" and consent["close_code"] == 4409

    before = h.snapshot.remote().result()
    assert before["persisted"] and before["restored"] is False
    old_replica = before["admission_replica"]
    ray.kill(ray.get_actor(old_replica, namespace="serve"), no_restart=True)

    after = _wait(
        lambda: (s := h.snapshot.remote().result())["admission_replica"] != old_replica and s,
        90,
        "a new AdmissionServer replica",
    )
    assert after["restored"] is True
    assert {s["session_id"] for s in after["sessions"]} == {a["session_id"], b["session_id"]}
    assert [q["instance"] for q in after["queue"]] == ["carol:1", "dave:1"]
    assert after["counters"]["created"] == 2

    c2 = _admit(h, "carol:1")
    d2 = _admit(h, "dave:1")
    assert c2["reservation_token"] == c["reservation_token"] and c2["event"]["position"] == 0
    assert d2["reservation_token"] == d["reservation_token"] and d2["event"]["position"] == 1

    # A leaves: the slot is held for carol, whose reconnect is admitted
    assert h.release.remote(a["session_id"]).result() is True
    c3 = _admit(h, "carol:1")
    assert c3["outcome"] == "created"
    assert _admit(h, "dave:1")["event"]["position"] == 0
    hb = h.heartbeat.remote("ingress-test", [b["session_id"], c3["session_id"]]).result()
    assert hb == {"close": []}
    snap = h.snapshot.remote().result()
    assert snap["occupied"] == 2 and snap["capacity"] == 2


def test_role_at_zero_replicas_gives_preparing_and_the_arrival_starts_it(admission_serve_cluster):
    auto = {
        "min_replicas": 0,
        "max_replicas": 1,
        "initial_replicas": 0,
        "target_ongoing_requests": 1,
        "upscale_delay_s": 0,
        "downscale_delay_s": 600,
    }
    role = AdmissionDummyRole.options(name="AdmissionDummyRole", autoscaling_config=auto).bind(1.0)
    h = _deploy(
        admission_serve_cluster,
        "admission_cold",
        {"sessions_per_replica": 1, "cold_start_eta_s": 20, "provider": "local"},
        {"llm": "AdmissionDummyRole"},
        role,
        {"AdmissionDummyRole": auto},
    )

    cap = h.capacity.remote().result()
    assert cap["capacity"] == 0 and cap["preparing"] is True, cap
    d = _admit(h, "zed:1")
    assert d["outcome"] == "preparing" and d["close_code"] == CLOSE_UNAVAILABLE
    ev = d["event"]
    assert ev["type"] == "session.preparing" and ev["provider"] == "local"
    assert ev["position"] == 0 and ev["queue_len"] == 1 and ev["eta_s"] >= 1 and ev["reservation_token"]

    # nobody else calls the role: the arrival itself made Serve scale it up from zero
    _wait(lambda: h.capacity.remote().result()["capacity"] == 1, 120, "the role to scale up", 1.0)
    again = _admit(h, "zed:1")
    assert again["outcome"] == "created", again
    snap = h.snapshot.remote().result()
    assert snap["start_stats"]["AdmissionDummyRole"]["n"] == 1
    assert snap["counters"]["preparing"] == 1 and snap["counters"]["created"] == 1


def test_missing_role_deployment_gives_session_error_and_bad_key_4001(admission_serve_cluster):
    h = _deploy(
        admission_serve_cluster,
        "admission_nobackend",
        {"capacity": 1, "api_keys": ["sk-test"]},
        {"tts": "NoSuchDeployment"},
    )
    bad = _admit(h, "u:1", api_key="sk-wrong")
    assert bad["outcome"] == "auth_failed" and bad["close_code"] == 4001 and bad["event"]["type"] == "error"
    d = _admit(h, "u:1", api_key="sk-test")
    assert d["outcome"] == "session_error" and d["close_code"] == CLOSE_UNAVAILABLE
    assert d["event"]["type"] == "session.error"

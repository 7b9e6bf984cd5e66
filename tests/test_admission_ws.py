"""Admission across ingress replicas, through real WebSockets (spec 001 §2 and §5): two ingress
replicas share one queue; capacity 1; the client's setup frame carries its key and instance."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.realtime_client import RealtimeClient

KEYS = ["key-alpha", "key-bravo"]
TTL_S = 12.0


@pytest.fixture(scope="module")
def adm(ray_cluster):
    from ray import serve

    from deployments.app import build_app

    args = {
        "cascade": {"id": "adm-omni", "llm": "adm-chat"},
        "ingress": {
            "deployment": {"num_replicas": 2, "num_cpus": 0, "max_ongoing_requests": 32},
            "sessions_per_replica": 8,
        },
        "models": [
            {
                "id": "adm-chat",
                "role": "llm",
                "backend": "scripted",
                "options": {"default": "ok"},
                "deployment": {
                    "num_cpus": 0,
                    "autoscaling_config": {
                        "min_replicas": 0,
                        "initial_replicas": 0,
                        "max_replicas": 1,
                        "target_ongoing_requests": 1,
                        "upscale_delay_s": 0,
                        "downscale_delay_s": 600,
                    },
                },
            },
            {
                # not in the cascade: a REST-only model left at zero replicas for the cold-start test
                "id": "adm-cold",
                "role": "llm",
                "backend": "scripted",
                "options": {"default": "warm now"},
                "deployment": {
                    "name": "ColdLLMServer",
                    "num_cpus": 0,
                    "autoscaling_config": {
                        "min_replicas": 0,
                        "initial_replicas": 0,
                        "max_replicas": 1,
                        "target_ongoing_requests": 1,
                        "upscale_delay_s": 0,
                        "downscale_delay_s": 600,
                    },
                },
            },
        ],
        "admission": {
            "capacity": 1,
            "max_queue": 2,
            "reservation_ttl_s": TTL_S,
            "hold_grace_s": 30,
            # the first key is an admin (team-alpha); the second a plain key, a user
            "api_keys": [{"key": KEYS[0], "key_id": "team-alpha", "role": "admin"}, KEYS[1]],
            "sessions_per_account": 1,
            "max_sessions_per_account": 2,
            "heartbeat_interval_s": 1,
            "state_key": "admission/adm-ws-test",
            "rest_cold_start_wait_s": 0,
        },
    }
    serve.run(build_app(args), name="adm", route_prefix="/adm")
    base = ray_cluster["base_url"]
    yield {"ws": base.replace("http://", "ws://") + "/adm/v1/realtime?model=adm-omni", "http": base + "/adm"}
    serve.delete("adm")


def attempt(adm, key: str, instance: str, consent: str | None = None) -> tuple[dict, RealtimeClient]:
    """Connect like the Naia client in gateway mode: setup frame first, then read the outcome."""
    c = RealtimeClient(adm["ws"])
    setup = {"apiKey": key, "locale": "en", "instanceId": instance}
    if consent:
        setup["consent"] = consent
    c.send({"setup": setup})
    first = c.next_event(30)
    if first["type"] != "session.created":
        first["__close__"] = c.wait_closed(10)
    return first, c


def expect(adm, key, instance, type_, code, consent=None) -> dict:
    ev, c = attempt(adm, key, instance, consent)
    assert ev["type"] == type_, ev
    assert ev.get("__close__") == code, ev
    if type_ == "session.created":
        return {"event": ev, "client": c}
    return ev


def snapshot(adm) -> dict:
    r = httpx.get(adm["http"] + "/v1/admin/admission", headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def kill_admission_replica() -> None:
    import ray

    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if "adm" in a["name"] and "AdmissionServer" in a["name"]
    ]
    assert names, "no admission replica found"
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)


def test_wrong_or_missing_key_gets_4001(adm):
    ev, _ = attempt(adm, "not-a-key", "mallory:1")
    assert ev["type"] == "error" and ev["__close__"] == 4001
    assert ev["error"]["type"] == "authentication_error"
    assert httpx.get(adm["http"] + "/v1/models", timeout=30).status_code == 401


def test_admin_routes_answer_admin_keys_only(adm):
    """``/v1/admin/*`` shows every team's sessions and steers the models: 401 without a key, 403
    for a user's key (nothing is unloaded), the record for the admin key."""
    for method, path in (
        ("GET", "/v1/admin/admission"),
        ("GET", "/v1/admin/models"),
        ("GET", "/v1/admin/models/adm-chat"),
        ("POST", "/v1/admin/models/adm-chat/unload"),
        ("POST", "/v1/admin/models/adm-chat/load"),
    ):
        url = adm["http"] + path
        none = httpx.request(method, url, timeout=30)
        assert none.status_code == 401 and none.json()["error"]["code"] == "invalid_api_key", (path, none.text)
        user = httpx.request(method, url, headers={"Authorization": f"Bearer {KEYS[1]}"}, timeout=30)
        assert user.status_code == 403, (path, user.text)
        assert user.json()["error"]["type"] == "permission_error" and "sessions" not in user.text
    assert httpx.get(adm["http"] + "/v1/models", headers={"Authorization": f"Bearer {KEYS[1]}"}, timeout=30).is_success
    assert "sessions" in snapshot(adm)  # the admin key
    record = httpx.get(
        adm["http"] + "/v1/admin/models/adm-chat", headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=30
    )
    assert record.status_code == 200 and record.json()["unloaded"] is False, record.text


def test_rest_cold_start_answers_model_preparing(adm):
    """rest_cold_start_wait_s: 0 answers at once: 503 model_preparing with Retry-After; the
    request itself started the model, which then answers."""
    auth = {"Authorization": f"Bearer {KEYS[0]}"}
    body = {"model": "adm-cold", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(adm["http"] + "/v1/chat/completions", json=body, headers=auth, timeout=30)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["type"] == "model_preparing" and int(r.headers["retry-after"]) >= 1
    deadline = time.monotonic() + 120
    while r.status_code == 503 and time.monotonic() < deadline:
        time.sleep(2)
        r = httpx.post(adm["http"] + "/v1/chat/completions", json=body, headers=auth, timeout=30)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "warm now"


def test_admission_scenario(adm):
    # 1. the chat role is scaled to zero: the first arrival is told "preparing" and triggers the start
    prep = expect(adm, KEYS[0], "alice:1", "session.preparing", 4503)
    assert prep["provider"] == "local" and prep["position"] == 0 and prep["queue_len"] == 1
    assert prep["reservation_token"] and prep["eta_s"] > 0
    deadline = time.monotonic() + 120
    while True:  # the client reconnects with its instance (backoff shortened for the test)
        ev, a = attempt(adm, KEYS[0], "alice:1")
        if ev["type"] == "session.created":
            break
        assert ev["type"] == "session.preparing" and ev["reservation_token"] == prep["reservation_token"], ev
        assert time.monotonic() < deadline, "the chat deployment never started"
        time.sleep(2)

    # 2. capacity 1 is taken: B and C wait at positions 0 and 1
    b = expect(adm, KEYS[1], "bob:1", "session.queued", 4503)
    c = expect(adm, KEYS[0], "carol:1", "session.queued", 4503)
    assert (b["position"], b["queue_len"], c["position"], c["queue_len"]) == (0, 1, 1, 2)
    assert b["reservation_token"] != c["reservation_token"]
    # reconnecting keeps the place (whichever ingress replica answers)
    for _ in range(2):
        assert expect(adm, KEYS[1], "bob:1", "session.queued", 4503)["position"] == 0
        assert expect(adm, KEYS[0], "carol:1", "session.queued", 4503)["position"] == 1

    # 3. the queue is full: sold out
    sold = expect(adm, KEYS[1], "dave:1", "session.sold_out", 4503)
    assert sold["retry_after_s"] > 0 and sold["tier_a_hint"]

    # 4. the admission service restarts: no admitted session and no queue position is lost
    kill_admission_replica()
    deadline = time.monotonic() + 60
    while True:
        try:
            snap = snapshot(adm)
            break
        except (AssertionError, httpx.HTTPError):
            assert time.monotonic() < deadline
            time.sleep(1)
    assert len(snap["sessions"]) == 1
    assert expect(adm, KEYS[1], "bob:1", "session.queued", 4503)["position"] == 0
    assert expect(adm, KEYS[0], "carol:1", "session.queued", 4503)["position"] == 1

    # 5. A leaves: its slot is held for B, whose next reconnect is admitted; C moves to the head
    a.close()
    time.sleep(1.0)
    b_in = expect(adm, KEYS[1], "bob:1", "session.created", None)
    assert expect(adm, KEYS[0], "carol:1", "session.queued", 4503)["position"] == 0

    # 6. a second session of bob's account asks for consent; "replace" supersedes the first (4002)
    consent = expect(adm, KEYS[1], "bob:2", "session.consent_required", 4409)
    assert consent["branches"] == ["replace", "add"]
    replaced = expect(adm, KEYS[1], "bob:2", "session.created", None, consent="replace")
    old = b_in["client"]
    assert old.wait_closed(15) == 4002
    assert old.of_type("error")[-1]["error"]["code"] == "superseded"

    # 7. C stops reconnecting: its reservation lapses after the TTL and the queue moves on
    time.sleep(TTL_S + 3)
    snap = snapshot(adm)
    assert not any(r.get("instance") == "carol:1" for r in snap["queue"])
    again = expect(adm, KEYS[0], "carol:1", "session.queued", 4503)
    assert again["position"] == 0 and again["reservation_token"] != c["reservation_token"]
    counters = snapshot(adm)["counters"]
    assert counters.get("queued", 0) >= 5 and counters.get("sold_out", 0) >= 1 and counters.get("created", 0) >= 3
    replaced["client"].close()

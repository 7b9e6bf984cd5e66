"""Waiting sessions drive replicas (``deployments.scaling``), on real Serve replicas: Serve's
controller runs the session-aware policy, the admission service publishes its queue, and a second
replica of the chat role starts with no request traffic at all.

The app is the scripted chat model alone (``num_cpus: 0``, a replica starts in about a second) at
``sessions_per_replica: 1`` and ``max_replicas: 2``: the first session fills the only replica, the
second is queued, the queue raises the target to 2, the second session gets in on reconnect and
completes a text turn; both replicas stay while both sessions live (they hold them, with no
request in flight), and after both leave the role goes back to one replica once the idle delay
(``downscale_delay_s``) has passed. A second test unloads the role: REST gets the cold-start answer
and realtime ``session.preparing``."""

from __future__ import annotations

import time

import httpx
import pytest

from deployments.scaling.store import read_bounds
from tests.realtime_client import RealtimeClient

APP, PREFIX = "qscale", "/qscale"
IDLE_DELAY_S = 6.0


@pytest.fixture(scope="module")
def qscale(ray_cluster):
    from ray import serve

    from deployments.app import build_app

    args = {
        "cascade": {"id": "qscale-omni"},
        "ingress": {"deployment": {"num_replicas": 1, "num_cpus": 0}, "sessions_per_replica": 8},
        "models": [
            {
                "id": "qscale-chat",
                "role": "llm",
                "backend": "scripted",
                "options": {"default": "Second replica speaking."},
                "deployment": {
                    "num_cpus": 0,
                    "autoscaling_config": {
                        "min_replicas": 1,
                        "max_replicas": 2,
                        # REST load alone would never ask for a second replica here
                        "target_ongoing_requests": 100,
                        "upscale_delay_s": 0,
                        "downscale_delay_s": IDLE_DELAY_S,
                        # Serve averages request counts over this window (default 30 s)
                        "look_back_period_s": 2,
                    },
                },
            }
        ],
        "admission": {
            "sessions_per_replica": 1,
            "max_queue": 4,
            "reservation_ttl_s": 120,
            "status_poll_s": 0.5,
            "heartbeat_interval_s": 1,
            "rest_cold_start_wait_s": 0,
            "api_keys_env": None,
            "state_key": "admission/qscale-test",
        },
    }
    serve.run(build_app(args), name=APP, route_prefix=PREFIX)
    base = f"{ray_cluster['base_url']}{PREFIX}"
    yield {"http": base, "ws": base.replace("http://", "ws://") + "/v1/realtime?model=qscale-omni"}
    serve.delete(APP)


def _replicas(state: str = "RUNNING") -> int:
    from ray import serve

    app = serve.status().applications.get(APP)
    states = app.deployments["LLMServer"].replica_states if app else {}
    return int({str(getattr(k, "value", k)): v for k, v in (states or {}).items()}.get(state, 0))


def _wait(fn, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if got := fn():
            return got
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _admission_capacity(base: str) -> int:
    r = httpx.get(f"{base}/v1/admin/admission", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["capacity"]


def _admin_status(base: str, model_id: str) -> str:
    r = httpx.get(f"{base}/v1/admin/models/{model_id}", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["status"]


def _attempt(qscale, instance: str) -> tuple[dict, RealtimeClient]:
    # API keys are off, so no setup frame is awaited: the instance goes in the query
    c = RealtimeClient(f"{qscale['ws']}&instance={instance}")
    first = c.next_event(30)
    if first["type"] != "session.created":
        first["__close__"] = c.wait_closed(10)
    return first, c


def _text_turn(c: RealtimeClient, text: str) -> dict:
    c.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
        }
    )
    c.send({"type": "response.create", "response": {"modalities": ["text"]}})
    return c.wait_for("response.done", 60)[1]


def test_waiting_session_scales_the_role_up_and_idle_scales_it_down(qscale):
    _wait(lambda: _replicas() == 1, 60, "one RUNNING chat replica")
    # Serve's controller runs the policy, which publishes the bounds it applies; the admin record
    # shows them (they would differ from the args after a serveConfigV2 edit)
    published = _wait(lambda: read_bounds(APP, "LLMServer", time.time()), 30, "the policy's bounds")
    assert published == (1, 2)
    record = httpx.get(f"{qscale['http']}/v1/admin/models/qscale-chat", timeout=30).json()
    assert record["autoscaling"] == {"min_replicas": 1, "max_replicas": 2} and record["can_unload"] is True
    first, a = _attempt(qscale, "ann:1")
    assert first["type"] == "session.created", first
    clients = [a]
    try:
        waiting, _ = _attempt(qscale, "bob:1")
        assert waiting["type"] in ("session.queued", "session.preparing"), waiting
        assert waiting["__close__"] == 4503 and waiting["position"] == 0 and waiting["queue_len"] == 1
        # no request was sent: only the waiting session asks for the second replica
        _wait(lambda: _replicas() == 2, 60, "a second RUNNING chat replica")
        created = _wait(
            lambda: (ev := _attempt(qscale, "bob:1"))[0]["type"] == "session.created" and ev,
            30,
            "bob admitted",
        )
        b = created[1]
        clients.append(b)
        done = _text_turn(b, "hello from the queue")
        assert done["response"]["status"] == "completed", done
        text = "".join(e["delta"] for e in b.of_type("response.text.delta") + b.of_type("response.output_text.delta"))
        assert text == "Second replica speaking."
        # both sessions hold a replica each: no scale-down while they live, idle as they are
        time.sleep(IDLE_DELAY_S + 4)
        assert _replicas() == 2
    finally:
        for c in clients:
            c.close()
    left = time.monotonic()
    _wait(lambda: _replicas() == 1, 60, "back to one chat replica")
    assert time.monotonic() - left >= IDLE_DELAY_S - 1  # only after the idle delay


def test_unloaded_role_answers_cold_start_and_realtime_preparing(qscale):
    """Unloaded: REST gets 503 ``model_preparing`` (``rest_cold_start_wait_s: 0``) and wakes the
    role, which goes back to zero once idle for the idle delay; a realtime session then gets
    ``session.preparing``; load brings the role back at its floor."""
    base = qscale["http"]
    body = {"model": "qscale-chat", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(f"{base}/v1/admin/models/qscale-chat/unload", timeout=30)
    assert r.status_code == 200 and r.json()["unloaded"] is True, r.text
    _wait(lambda: _replicas() == 0 and _replicas("STARTING") == 0, 60, "zero chat replicas")
    # the ingress reads Serve's status at most every second (IngressState.STATUS_TTL_S): wait until
    # it sees zero too, as its admin record says
    _wait(lambda: _admin_status(base, "qscale-chat") == "downloaded", 30, "the ingress seeing zero replicas")
    r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["type"] == "model_preparing" and int(r.headers["retry-after"]) >= 1
    _wait(lambda: _replicas() == 1, 60, "the request waking the unloaded role")
    _wait(lambda: _replicas() == 0, IDLE_DELAY_S + 60, "the unloaded role idle at zero again")
    # the admission service reads Serve's status every status_poll_s: wait until it sees zero too
    _wait(lambda: _admission_capacity(base) == 0, 30, "admission seeing zero capacity")
    ev, _ = _attempt(qscale, "cyd:1")
    assert ev["type"] == "session.preparing" and ev["__close__"] == 4503, ev
    assert ev["provider"] == "local" and ev["eta_s"] > 0
    r = httpx.post(f"{base}/v1/admin/models/qscale-chat/load", timeout=30)
    assert r.status_code == 200 and r.json()["unloaded"] is False, r.text
    _wait(lambda: _replicas() >= 1, 60, "the chat role back")
    r = _wait(
        lambda: (x := httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30)).status_code == 200 and x,
        60,
        "chat answered",
    )
    assert r.json()["choices"][0]["message"]["content"] == "Second replica speaking."

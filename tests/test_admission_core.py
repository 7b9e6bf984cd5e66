"""Unit tests of the admission core (:class:`deployments.admission.core.AdmissionState`): no Ray
cluster, every time from an injected clock. The contract is spec 001 §5 (status events + close
codes)."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from pydantic import ValidationError

from deployments.admission.cluster import model_preparing_error, wait_until_running
from deployments.admission.config import AdmissionConfig
from deployments.admission.contract import (
    CLOSE_AUTH_FAILED,
    CLOSE_CONSENT_REQUIRED,
    CLOSE_INSUFFICIENT_CREDITS,
    CLOSE_SUPERSEDED,
    CLOSE_UNAVAILABLE,
)
from deployments.admission.core import AdmissionState, BackendView
from deployments.admission.keys import ApiKeys, key_id


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def make_state(clock: FakeClock | None = None, keys: ApiKeys | None = None, **cfg) -> AdmissionState:
    cfg.setdefault("capacity", 1)
    cfg.setdefault("api_keys_env", None)
    cfg.setdefault("reservation_ttl_s", 60.0)
    cfg.setdefault("hold_grace_s", 30.0)
    cfg.setdefault("replica_timeout_s", 1e9)  # heartbeats are tested on their own
    return AdmissionState(AdmissionConfig(**cfg), clock=clock or FakeClock(), keys=keys or ApiKeys())


def connect(st: AdmissionState, instance: str | None, replica: str = "ingress-1", **extra) -> dict:
    return st.decide({"instance": instance, "replica_id": replica, **extra})


def assert_created(d: dict) -> str:
    assert d["outcome"] == "created", d
    assert d["close_code"] is None
    assert d["event"]["type"] == "session.created"
    assert d["event"]["session"]["id"] == d["session_id"]
    return d["session_id"]


def assert_queued(d: dict, position: int, queue_len: int) -> str:
    assert d["outcome"] == "queued", d
    assert d["close_code"] == CLOSE_UNAVAILABLE
    ev = d["event"]
    assert ev["type"] == "session.queued"
    assert (ev["position"], ev["queue_len"]) == (position, queue_len), ev
    assert ev["reservation_token"] == d["reservation_token"]
    return ev["reservation_token"]


# ------------------------------------------------------------------------------------------------
# the whole story with one slot
# ------------------------------------------------------------------------------------------------


def test_capacity_one_scenario_queue_reattach_hold_and_lapse():
    clock = FakeClock()
    st = make_state(clock)

    a = assert_created(connect(st, "alice:1"))
    tok_b = assert_queued(connect(st, "bob:1"), 0, 1)
    tok_c = assert_queued(connect(st, "carol:1"), 1, 2)

    # both reconnect (client backoff) and keep their places and tokens
    clock.advance(10)
    assert assert_queued(connect(st, "bob:1"), 0, 2) == tok_b
    assert assert_queued(connect(st, "carol:1", reservation_token=tok_c), 1, 2) == tok_c
    clock.advance(10)
    assert assert_queued(connect(st, "carol:1"), 1, 2) == tok_c

    # A leaves: its slot is freed at once and held for B (the head)
    clock.advance(5)
    assert st.release(a) is True
    assert st.release(a) is False  # idempotent
    snap = st.snapshot()
    assert [h["instance"] for h in snap["holds"]] == ["bob:1"]
    assert snap["occupied"] == 1 and snap["free"] == 0 and snap["sessions"] == []

    # C is now at the head of the waiters; a newcomer lines up behind it (the slot is B's)
    assert assert_queued(connect(st, "carol:1"), 0, 1) == tok_c
    tok_d = assert_queued(connect(st, "dave:1"), 1, 2)

    # B's next reconnect is admitted into the held slot
    clock.advance(20)
    b = assert_created(connect(st, "bob:1"))
    assert st.snapshot()["holds"] == []
    assert st.mean_session_s == pytest.approx(25.0)

    # B leaves; the slot is held for C, who never comes back within the grace period
    clock.advance(5)
    st.release(b)
    assert [h["instance"] for h in st.snapshot()["holds"]] == ["carol:1"]
    assert assert_queued(connect(st, "dave:1"), 0, 1) == tok_d
    clock.advance(31)  # hold_grace_s = 30
    st.tick()
    assert [h["instance"] for h in st.snapshot()["holds"]] == ["dave:1"]
    assert st.counters["lapsed"] == 1
    assert_created(connect(st, "dave:1"))

    # C's reservation is gone: it lines up again at the back, with a new token
    tok_c2 = assert_queued(connect(st, "carol:1"), 0, 1)
    assert tok_c2 != tok_c

    # a waiting reservation whose owner does not return within its TTL lapses; the queue moves on
    assert_queued(connect(st, "erin:1"), 1, 2)
    clock.advance(45)
    assert_queued(connect(st, "erin:1"), 1, 2)  # seen: TTL counts from here
    clock.advance(30)  # carol last seen 75 s ago > 60 s TTL
    assert_queued(connect(st, "erin:1"), 0, 1)
    assert st.counters["lapsed"] == 2
    c = st.counters
    assert c["created"] == 3 and c["queued"] >= 10 and c["released"] == 2 and c["held"] == 3


def test_closing_an_admitted_session_frees_its_slot_at_once():
    st = make_state(capacity=2)
    s1 = assert_created(connect(st, "u1:a"))
    assert_created(connect(st, "u2:a"))
    assert_queued(connect(st, "u3:a"), 0, 1)
    st.release(s1)
    assert st.snapshot()["holds"][0]["instance"] == "u3:a"
    assert_created(connect(st, "u3:a"))


def test_queue_full_gives_sold_out():
    st = make_state(max_queue=2, sold_out_retry_after_s=45, tier_a_hint="use the local model")
    assert_created(connect(st, "u0:x"))
    assert_queued(connect(st, "u1:x"), 0, 1)
    assert_queued(connect(st, "u2:x"), 1, 2)
    d = connect(st, "u3:x")
    assert d["outcome"] == "sold_out" and d["close_code"] == CLOSE_UNAVAILABLE
    assert d["event"]["type"] == "session.sold_out"
    assert d["event"]["retry_after_s"] == 45 and d["event"]["tier_a_hint"] == "use the local model"
    assert d["reservation_token"] is None
    # a queued client reconnecting is not refused by the full queue
    assert_queued(connect(st, "u2:x"), 1, 2)
    assert st.counters["sold_out"] == 1


def test_no_replica_can_start_gives_sold_out_but_keeps_reservations():
    st = make_state(capacity=1)
    assert_created(connect(st, "u0:x"))
    tok = assert_queued(connect(st, "u1:x"), 0, 1)
    st.set_backend(BackendView(capacity=0, unavailable="llm deployment LLMServer is DEPLOY_FAILED"))
    d = connect(st, "u2:x")
    assert d["outcome"] == "sold_out" and d["event"]["retry_after_s"] == 60.0
    assert connect(st, "u1:x")["outcome"] == "sold_out"
    st.set_backend(BackendView(capacity=1))
    assert assert_queued(connect(st, "u1:x"), 0, 1) == tok


def test_instance_without_account_or_instance_id():
    st = make_state(capacity=1)
    d = connect(st, None)
    assert_created(d)
    assert d["instance"].startswith("anon.") and d["account"] is None
    q = connect(st, None)
    assert_queued(q, 0, 1)
    # the generated instance is told to the client so it can reattach
    assert q["event"]["instance"] == q["instance"]
    assert_queued(connect(st, q["instance"]), 0, 1)


# ------------------------------------------------------------------------------------------------
# accounts: consent, replace, add, reconnect of the same instance
# ------------------------------------------------------------------------------------------------


def test_second_session_of_an_account_needs_consent_and_replace_supersedes():
    clock = FakeClock()
    st = make_state(clock, capacity=2)
    first = connect(st, "user7:tabA", replica="ingress-1")
    s1 = assert_created(first)
    assert first["account"] == "user7"

    d = connect(st, "user7:tabB", replica="ingress-2")
    assert d["outcome"] == "consent_required" and d["close_code"] == CLOSE_CONSENT_REQUIRED
    assert d["event"]["type"] == "session.consent_required"
    assert d["event"]["branches"] == ["replace", "add"]
    assert st.snapshot()["occupied"] == 1  # nothing was taken

    clock.advance(3)
    d = connect(st, "user7:tabB", replica="ingress-2", consent="replace")
    s2 = assert_created(d)
    assert d["supersede"] == [
        {
            "session_id": s1,
            "replica_id": "ingress-1",
            "instance": "user7:tabA",
            "close_code": CLOSE_SUPERSEDED,
            "reason": "superseded",
        }
    ]
    # the replica that holds the old socket learns it (once)
    assert st.take_closes("ingress-1") == d["supersede"]
    assert st.take_closes("ingress-1") == []
    assert [s["session_id"] for s in st.snapshot()["sessions"]] == [s2]
    # the old socket's own close later is a no-op
    assert st.release(s1) is False
    assert st.counters["superseded"] == 1 and st.counters["consent_required"] == 1
    # replace took the old slot: the second slot is still free for someone else
    assert_created(connect(st, "other:1"))


def test_replace_bypasses_the_queue():
    st = make_state(capacity=1)
    s1 = assert_created(connect(st, "u:a"))
    assert_queued(connect(st, "v:a"), 0, 1)
    d = connect(st, "u:b", consent="replace")
    assert_created(d)
    assert d["supersede"][0]["session_id"] == s1
    assert_queued(connect(st, "v:a"), 0, 1)


def test_add_admits_a_second_session_where_allowed():
    st = make_state(capacity=2, sessions_per_account=1, max_sessions_per_account=2)
    assert_created(connect(st, "u:a"))
    d = connect(st, "u:b", consent="add")
    assert_created(d)
    assert d["supersede"] == []
    # a third: only replace is offered, and add is refused
    d = connect(st, "u:c", consent="add")
    assert d["outcome"] == "consent_required" and d["event"]["branches"] == ["replace"]
    # add does not jump the queue: with no free slot it waits like anyone
    st2 = make_state(capacity=1, max_sessions_per_account=2)
    assert_created(connect(st2, "w:a"))
    tok = assert_queued(connect(st2, "w:b", consent="add"), 0, 1)
    assert st2.snapshot()["queue"][0]["instance"] == "w:b"
    assert tok


def test_held_slot_rechecks_the_account_limit_with_the_stored_consent():
    st = make_state(capacity=1, max_sessions_per_account=2)
    s1 = assert_created(connect(st, "u:a"))
    assert_queued(connect(st, "u:b", consent="add"), 0, 1)
    # a second slot appears: u:b is held and admitted without being asked again
    st.set_backend(BackendView(capacity=2))
    d = connect(st, "u:b")
    assert_created(d)
    assert {s["session_id"] for s in st.snapshot()["sessions"]} >= {s1}


def test_same_instance_reconnect_takes_over_its_own_slot_without_consent():
    st = make_state(capacity=1)
    s1 = assert_created(connect(st, "u:a", replica="ingress-1"))
    d = connect(st, "u:a", replica="ingress-2")  # socket dropped, client reconnected elsewhere
    s2 = assert_created(d)
    assert s2 != s1 and d["supersede"][0]["session_id"] == s1
    assert st.snapshot()["occupied"] == 1
    assert st.mean_session_s is None  # a reconnect is not a finished session


# ------------------------------------------------------------------------------------------------
# auth and quotas
# ------------------------------------------------------------------------------------------------


def test_wrong_or_missing_key_is_refused_with_4001():
    st = make_state(keys=ApiKeys(["sk-good"]))
    for key, code in ((None, "missing_api_key"), ("sk-bad", "invalid_api_key")):
        d = st.decide({"instance": "u:a", "api_key": key, "replica_id": "r"})
        assert d["outcome"] == "auth_failed" and d["close_code"] == CLOSE_AUTH_FAILED
        assert d["event"]["type"] == "error"
        assert d["event"]["error"]["type"] == "authentication_error" and d["event"]["error"]["code"] == code
    d = st.decide({"instance": "u:a", "api_key": "sk-good", "replica_id": "r"})
    assert_created(d)
    assert d["key_id"] == key_id("sk-good") and d["account"] == f"{key_id('sk-good')}/u"
    assert st.counters["auth_failed"] == 2 and st.snapshot()["occupied"] == 1


def test_an_instance_can_only_be_reattached_with_its_own_key():
    st = make_state(keys=ApiKeys(["sk-1", "sk-2"]), capacity=1)
    assert_created(st.decide({"instance": "u:a", "api_key": "sk-1", "replica_id": "r"}))
    assert_queued(st.decide({"instance": "v:a", "api_key": "sk-1", "replica_id": "r"}), 0, 1)
    for inst in ("u:a", "v:a"):  # neither the live session nor the place can be taken over
        d = st.decide({"instance": inst, "api_key": "sk-2", "replica_id": "r"})
        assert d["outcome"] == "auth_failed" and d["close_code"] == CLOSE_AUTH_FAILED
        assert d["event"]["error"]["code"] == "instance_key_mismatch"
    assert st.snapshot()["occupied"] == 1 and len(st.snapshot()["queue"]) == 1


def test_key_over_its_quota_gets_4003():
    keys = ApiKeys(["sk-a", "sk-b"], quotas={"sk-a": 1})
    st = make_state(keys=keys, capacity=5)
    assert_created(st.decide({"instance": "u1:x", "api_key": "sk-a", "replica_id": "r"}))
    d = st.decide({"instance": "u2:x", "api_key": "sk-a", "replica_id": "r"})
    assert d["outcome"] == "quota_exceeded" and d["close_code"] == CLOSE_INSUFFICIENT_CREDITS
    assert d["event"]["type"] == "error" and d["event"]["error"]["type"] == "insufficient_quota"
    # other keys are unlimited; replace by the same key stays within the quota
    assert_created(st.decide({"instance": "u2:x", "api_key": "sk-b", "replica_id": "r"}))
    assert_created(st.decide({"instance": "u1:y", "api_key": "sk-a", "replica_id": "r", "consent": "replace"}))
    # quotas may name the key_id instead of the secret
    assert ApiKeys(["sk-a"], quotas={key_id("sk-a"): 3}).quota(key_id("sk-a")) == 3


def test_api_keys_from_config_env_and_file(tmp_path):
    f = tmp_path / "keys"
    f.write_text("# secrets\nsk-file\n\n")
    cfg = AdmissionConfig(api_keys=["sk-conf"], api_keys_env="MY_KEYS", api_keys_file=str(f))
    keys = ApiKeys.from_config(cfg, environ={"MY_KEYS": "sk-env1, sk-env2"})
    assert keys.enabled
    for k in ("sk-conf", "sk-file", "sk-env1", "sk-env2"):
        assert keys.check(k).ok and keys.check(k).key_id == key_id(k)
    assert keys.check("nope").reason == "invalid" and keys.check("").reason == "missing"
    open_keys = ApiKeys.from_config(AdmissionConfig(api_keys_env="MY_KEYS"), environ={})
    assert not open_keys.enabled and open_keys.check(None).ok
    with pytest.raises(ValueError, match="api_keys_file"):
        ApiKeys.from_config(AdmissionConfig(api_keys_file=str(tmp_path / "missing")), environ={})


def test_api_keys_carry_a_team_key_id_and_a_role(tmp_path):
    f = tmp_path / "keys"
    f.write_text("sk-ops ops admin\nsk-web web\nsk-plain\n")
    cfg = AdmissionConfig(
        api_keys=[{"key": "sk-root", "key_id": "platform", "role": "admin"}, "sk-old"],
        api_keys_file=str(f),
        api_keys_env=None,
        key_quotas={"web": 1},
    )
    keys = ApiKeys.from_config(cfg, environ={})
    got = {k: (keys.check(k).key_id, keys.check(k).role) for k in ("sk-root", "sk-old", "sk-ops", "sk-web", "sk-plain")}
    assert got == {
        "sk-root": ("platform", "admin"),
        "sk-old": (key_id("sk-old"), "user"),  # a plain key stays a user, named by its hash
        "sk-ops": ("ops", "admin"),
        "sk-web": ("web", "user"),
        "sk-plain": (key_id("sk-plain"), "user"),
    }
    assert keys.check("sk-root").is_admin and not keys.check("sk-web").is_admin
    assert not keys.check("nope").is_admin
    assert keys.quota("web") == 1  # a quota may name a team
    assert ApiKeys().check(None).is_admin  # auth off: a local install's only user is its operator
    env = ApiKeys.from_config(AdmissionConfig(api_keys_env="K", admin_keys_env="A"), environ={"K": "u1", "A": "a1,a2"})
    assert [env.check(k).role for k in ("u1", "a1", "a2")] == ["user", "admin", "admin"]
    f.write_text("sk-x team superuser\n")
    with pytest.raises(ValueError, match="bad line"):
        ApiKeys.from_config(AdmissionConfig(api_keys_file=str(f), api_keys_env=None), environ={})
    with pytest.raises(ValueError):
        AdmissionConfig(api_keys=[{"key": "sk", "role": "root"}])


# ------------------------------------------------------------------------------------------------
# persistence
# ------------------------------------------------------------------------------------------------


def test_serialise_restore_mid_scenario_loses_no_session_and_no_place():
    clock = FakeClock()
    st = make_state(clock, capacity=1)
    a = assert_created(connect(st, "alice:1"))
    tok_b = assert_queued(connect(st, "bob:1"), 0, 1)
    tok_c = assert_queued(connect(st, "carol:1"), 1, 2)
    clock.advance(50)  # near the TTL of 60 s: the restart gives everyone a fresh lease

    blob = json.dumps(st.to_dict())  # what the service writes to the KV
    clock.advance(30)  # down for 30 s
    st2 = AdmissionState.from_dict(json.loads(blob), st.config, clock=clock, keys=ApiKeys())
    assert [s["session_id"] for s in st2.snapshot()["sessions"]] == [a]
    assert [q["instance"] for q in st2.snapshot()["queue"]] == ["bob:1", "carol:1"]
    st2.tick()
    assert st2.counters["lapsed"] == 0
    assert assert_queued(connect(st2, "carol:1"), 1, 2) == tok_c
    assert assert_queued(connect(st2, "bob:1"), 0, 2) == tok_b
    st2.release(a)
    assert_created(connect(st2, "bob:1"))
    assert st2.counters["created"] == 2  # counters survive too

    # a held slot survives a restart as well
    st2.release(st2.snapshot()["sessions"][0]["session_id"])
    held = json.dumps(st2.to_dict())
    st3 = AdmissionState.from_dict(json.loads(held), st.config, clock=clock, keys=ApiKeys())
    assert [h["instance"] for h in st3.snapshot()["holds"]] == ["carol:1"]
    assert_created(connect(st3, "carol:1"))


def test_restore_rejects_unknown_format():
    with pytest.raises(ValueError):
        AdmissionState.from_dict({"format": 99}, AdmissionConfig(api_keys_env=None), keys=ApiKeys())


# ------------------------------------------------------------------------------------------------
# fairness
# ------------------------------------------------------------------------------------------------


def test_fifo_fairness_with_many_clients():
    rng = random.Random(7)
    clock = FakeClock()
    st = make_state(clock, capacity=3, max_queue=1000, reservation_ttl_s=1e6, hold_grace_s=1e6)
    clients = [f"user{i}:dev" for i in range(40)]
    admitted: list[str] = []
    sessions: dict[str, str] = {}
    for c in clients:
        clock.advance(rng.random())
        d = connect(st, c)
        if d["outcome"] == "created":
            admitted.append(c)
            sessions[c] = d["session_id"]
        else:
            assert d["event"]["position"] == clients.index(c) - 3
    assert admitted == clients[:3]
    waiting = clients[3:]
    while len(admitted) < len(clients):
        # everyone still waiting reconnects in random order; positions are always FIFO
        for c in rng.sample(waiting, len(waiting)):
            d = connect(st, c)
            if d["outcome"] == "created":
                admitted.append(c)
                sessions[c] = d["session_id"]
                waiting.remove(c)
            else:
                held = {h.instance for h in st.holds()}
                ahead = [w for w in waiting[: waiting.index(c)] if w not in held]
                assert d["event"]["position"] == len(ahead), d
        # one random live session ends
        live = [c for c in admitted if c in sessions]
        gone = rng.choice(live)
        st.release(sessions.pop(gone))
        clock.advance(rng.random() * 5)
    assert admitted == clients  # served strictly in arrival order


def test_eta_from_mean_session_seconds():
    clock = FakeClock()
    st = make_state(clock, capacity=2)
    s = assert_created(connect(st, "a:1"))
    clock.advance(100)
    st.release(s)
    assert st.mean_session_s == pytest.approx(100)
    assert_created(connect(st, "b:1"))
    assert_created(connect(st, "c:1"))
    d0 = connect(st, "d:1")
    d1 = connect(st, "e:1")
    # place x mean / slots, place = position + 1 (spec 001 §5)
    assert d0["event"]["eta_s"] == pytest.approx(50.0)
    assert d1["event"]["eta_s"] == pytest.approx(100.0)


# ------------------------------------------------------------------------------------------------
# heartbeats: dead ingress replicas, rebuild, re-delivered closes
# ------------------------------------------------------------------------------------------------


def test_dead_ingress_replica_sessions_are_reaped_and_slots_move_on():
    clock = FakeClock()
    st = make_state(clock, capacity=2, replica_timeout_s=30)
    assert_created(connect(st, "a:1", replica="ingress-1"))
    keep = assert_created(connect(st, "b:1", replica="ingress-2"))
    assert_queued(connect(st, "c:1", replica="ingress-2"), 0, 1)
    for _ in range(4):
        clock.advance(10)
        assert st.heartbeat("ingress-2", [keep])["close"] == []
    st.tick()
    snap = st.snapshot()
    assert "ingress-1" not in snap["replicas"]
    assert keep in {s["session_id"] for s in snap["sessions"]}
    assert [h["instance"] for h in snap["holds"]] == ["c:1"]
    assert st.counters["reaped"] == 1


def test_heartbeat_reaps_unreported_sessions_and_readopts_unknown_ones():
    clock = FakeClock()
    st = make_state(clock, capacity=3, replica_timeout_s=20)
    s1 = assert_created(connect(st, "a:1", replica="r1"))
    s2 = assert_created(connect(st, "b:1", replica="r1"))
    # just admitted sessions are spared (the ingress may not have registered them yet)
    st.heartbeat("r1", [s1])
    assert st.snapshot()["occupied"] == 2
    for step in (10, 10, 5):
        clock.advance(step)
        st.heartbeat("r1", [s1])
    assert {s["session_id"] for s in st.snapshot()["sessions"]} == {s1}

    # a fresh state (lost store) is rebuilt from the ingress's report
    fresh = make_state(clock, capacity=3)
    out = fresh.heartbeat("r1", [{"session_id": s1, "instance": "a:1", "account": "a", "started_at": clock() - 5}])
    assert out == {"close": []}
    snap = fresh.snapshot()
    assert snap["sessions"][0]["session_id"] == s1 and snap["sessions"][0]["instance"] == "a:1"
    assert fresh.counters["readopted"] == 1
    assert s2


def test_heartbeat_redelivers_supersede_closes():
    st = make_state(capacity=2)
    s1 = assert_created(connect(st, "u:a", replica="r1"))
    assert_created(connect(st, "u:b", replica="r2", consent="replace"))
    out = st.heartbeat("r1", [s1])  # pending close delivered here
    assert [(c["session_id"], c["close_code"]) for c in out["close"]] == [(s1, CLOSE_SUPERSEDED)]
    out = st.heartbeat("r1", [s1])  # still reported: told again from the tombstone
    assert [(c["session_id"], c["close_code"]) for c in out["close"]] == [(s1, CLOSE_SUPERSEDED)]
    assert st.snapshot()["occupied"] == 1  # never re-adopted


# ------------------------------------------------------------------------------------------------
# backend view: capacity from replicas, preparing, sold out, unreachable
# ------------------------------------------------------------------------------------------------

ROLES = {"llm": "LLMServer", "stt": "STTServer", "tts": "TTSServer"}


def _dep(status="HEALTHY", **states):
    return {"status": status, "replica_states": states}


def test_capacity_is_the_tightest_role():
    st = make_state(capacity=None, sessions_per_replica={"llm": 4, "stt": 8, "tts": 2})
    v = st.update_from_status(
        {"LLMServer": _dep(RUNNING=2), "STTServer": _dep(RUNNING=1), "TTSServer": _dep(RUNNING=3)}, ROLES
    )
    assert v.capacity == 6 and not v.preparing and v.unavailable is None
    assert v.roles["tts"]["running"] == 3
    # the override replaces the product, but a role without a RUNNING replica still means 0
    st = make_state(capacity=1)
    assert (
        st.update_from_status(
            {"LLMServer": _dep(RUNNING=2), "STTServer": _dep(RUNNING=1), "TTSServer": _dep(RUNNING=3)}, ROLES
        ).capacity
        == 1
    )
    assert (
        st.update_from_status(
            {"LLMServer": _dep(RUNNING=2), "STTServer": _dep(), "TTSServer": _dep(RUNNING=3)}, ROLES
        ).capacity
        == 0
    )


def test_scaled_to_zero_role_gives_preparing_then_created():
    clock = FakeClock()
    st = make_state(clock, capacity=None, sessions_per_replica=1, cold_start_eta_s=20, provider="local")
    auto = {"LLMServer": {"min_replicas": 0, "max_replicas": 1}}
    v = st.update_from_status({"LLMServer": _dep()}, {"llm": "LLMServer"}, auto)
    assert v.capacity == 0 and v.preparing and v.to_trigger == ["LLMServer"]
    d = connect(st, "u:a")
    assert d["outcome"] == "preparing" and d["close_code"] == CLOSE_UNAVAILABLE
    ev = d["event"]
    assert ev["type"] == "session.preparing" and ev["provider"] == "local"
    assert (ev["position"], ev["queue_len"]) == (0, 1) and ev["eta_s"] == 20 and ev["reservation_token"]
    # the arrival triggered a scale-up: the replica is STARTING, then RUNNING after 14 s
    st.update_from_status(
        {"LLMServer": _dep("UPSCALING", STARTING=1)}, {"llm": "LLMServer"}, auto, triggered=["LLMServer"]
    )
    clock.advance(14)
    assert connect(st, "u:a")["event"]["eta_s"] == pytest.approx(6.0)
    v = st.update_from_status({"LLMServer": _dep(RUNNING=1)}, {"llm": "LLMServer"}, auto)
    assert v.capacity == 1 and not v.preparing
    assert st.start_stats["LLMServer"]["mean_s"] == pytest.approx(14.0)
    assert [h["instance"] for h in st.snapshot()["holds"]] == ["u:a"]
    assert_created(connect(st, "u:a"))
    # the next cold start is estimated from the observed one
    st.update_from_status({"LLMServer": _dep()}, {"llm": "LLMServer"}, auto)
    assert st.backend.preparing_eta_s == pytest.approx(14.0)


def test_preparing_eta_waits_for_a_starting_worker_pod():
    """On Kubernetes the ETA is the longer of the Serve start estimate and the worker pod's
    (deployments.admission.pods.eta), and ``provider`` is the pod's worker group."""
    from kubernetes.client import V1ObjectMeta, V1Pod, V1PodCondition, V1PodStatus

    from deployments.admission.pods.eta import pod_eta

    now = 1_000_000.0
    pending = V1Pod(
        metadata=V1ObjectMeta(
            name="omni-gpu-worker-x",
            labels={"ray.io/node-type": "worker", "ray.io/group": "gpu-24g", "ray.io/cluster": "omni"},
        ),
        status=V1PodStatus(
            phase="Pending",
            conditions=[V1PodCondition(type="PodScheduled", status="False", reason="Unschedulable")],
        ),
    )
    st = make_state(capacity=None, sessions_per_replica=1, cold_start_eta_s=20, provider="local")
    st.capacity_eta = lambda: pod_eta([pending], now)
    auto = {"LLMServer": {"min_replicas": 0, "max_replicas": 1}}
    st.update_from_status({"LLMServer": _dep("UPSCALING", STARTING=1)}, {"llm": "LLMServer"}, auto)
    ev = connect(st, "u:a")["event"]
    assert ev["type"] == "session.preparing" and ev["provider"] == "gpu-24g"
    assert ev["eta_s"] == pytest.approx(pod_eta([pending], now)[0]) and ev["eta_s"] > 60  # minutes, not 20 s
    # nothing starting on the cluster: the Serve estimate and the configured provider
    st.capacity_eta = lambda: (None, None)
    ev = connect(st, "u:a")["event"]
    assert ev["provider"] == "local" and ev["eta_s"] <= 20


def test_tightest_role_scaling_up_makes_waiters_preparing():
    st = make_state(capacity=None, sessions_per_replica=1)
    st.update_from_status({"LLMServer": _dep("UPSCALING", RUNNING=1, STARTING=1)}, {"llm": "LLMServer"})
    assert_created(connect(st, "a:1"))
    d = connect(st, "b:1")
    assert d["outcome"] == "preparing" and d["event"]["eta_s"] >= 1


def test_failed_stopped_stuck_and_missing_roles():
    clock = FakeClock()
    st = make_state(clock, capacity=None, start_timeout_s=100)
    v = st.update_from_status({"LLMServer": _dep("DEPLOY_FAILED")}, {"llm": "LLMServer"})
    assert v.unavailable and "DEPLOY_FAILED" in v.unavailable
    assert connect(st, "a:1")["outcome"] == "sold_out"
    v = st.update_from_status({"LLMServer": _dep()}, {"llm": "LLMServer"}, {"LLMServer": None})
    assert v.unavailable and "none can be started" in v.unavailable
    v = st.update_from_status({"LLMServer": _dep(STARTING=1)}, {"llm": "LLMServer"})
    assert v.preparing and not v.unavailable
    clock.advance(101)
    v = st.update_from_status({"LLMServer": _dep(STARTING=1)}, {"llm": "LLMServer"})
    assert v.unavailable and "not started within" in v.unavailable
    # a role deployment absent from the application: assigned but no endpoint -> session.error
    st = make_state(capacity=1)
    st.update_from_status({}, {"llm": "LLMServer"})
    d = connect(st, "b:1")
    assert d["outcome"] == "session_error" and d["close_code"] == CLOSE_UNAVAILABLE
    assert d["event"]["type"] == "session.error" and d["event"]["error"]["code"] == "no_endpoint"


def test_capacity_drop_and_growth():
    st = make_state(capacity=2)
    assert_created(connect(st, "a:1"))
    assert_created(connect(st, "b:1"))
    st.set_backend(BackendView(capacity=1))  # a replica died: nobody is evicted
    assert st.snapshot()["occupied"] == 2 and st.free_slots() == 0
    assert_queued(connect(st, "c:1"), 0, 1)
    assert_queued(connect(st, "d:1"), 1, 2)
    st.set_backend(BackendView(capacity=4))  # scaled up: the two waiters get held slots
    assert [h["instance"] for h in st.snapshot()["holds"]] == ["c:1", "d:1"]


# ------------------------------------------------------------------------------------------------
# configuration and REST helpers
# ------------------------------------------------------------------------------------------------


def test_config_validation_and_serve_options():
    with pytest.raises(ValidationError):
        AdmissionConfig(unknown=1)
    with pytest.raises(ValidationError):
        AdmissionConfig(sessions_per_account=3, max_sessions_per_account=2)
    cfg = AdmissionConfig(sessions_per_replica={"llm": 6})
    assert cfg.sessions_for("llm") == 6 and cfg.sessions_for("tts") == 4
    opts = cfg.serve_options()
    assert opts["num_replicas"] == 1 and opts["ray_actor_options"] == {"num_cpus": 0.0}


def test_model_preparing_error_shape():
    err = model_preparing_error("whisper-tiny", 7.4)
    assert err.status == 503 and err.headers == {"Retry-After": "7"}
    assert err.body()["error"]["type"] == "model_preparing" and err.body()["error"]["code"] == "model_preparing"


def test_wait_until_running_polls_and_triggers_once():
    reads = {"n": 0}
    calls = []

    def states():
        reads["n"] += 1
        return {"STTServer": {"replica_states": {"RUNNING": 1} if reads["n"] >= 3 else {}}}

    class Method:
        async def remote(self):
            calls.append(1)
            return {}

    class Handle:
        info = Method()

    async def main():
        ok = await wait_until_running("STTServer", 5, states=states, trigger=Handle(), poll_s=0.01)
        late = await wait_until_running("Missing", 0.05, states=states, poll_s=0.01)
        await asyncio.sleep(0)
        return ok, late

    ok, late = asyncio.run(main())
    assert ok is True and late is False and calls == [1]

"""Failures that must not look like success: model replicas killed mid-request, readiness
during a restart, and bounded schema fuzzing of the REST surface.

One small application of its own, deployed once for the module: the scripted chat model (a
replacement replica starts in seconds; its reply is short unless asked for "a long story") with
the small real STT, TTS and embedding models, so the shared embedded app is not disturbed. The
kill tests find a replica's actor among Ray's named actors, kill it, and read on as a client
would.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from deployments.state import IngressState
from tests.conftest import profile_args, scripted_args

APP, PREFIX = "failures", "/failures"
STORY = " ".join(f"Sentence {i} of a story that goes on for a while." for i in range(200))


@pytest.fixture(scope="module")
def scripted_only(ray_cluster):
    """The embedded profile with the scripted chat model ("a long story": a long, slow reply;
    anything else: one short sentence) and the real STT, TTS and embedding models (no VAD)."""
    from ray import serve

    from deployments.app import build_app

    options = {
        "rules": [{"match": "long story", "reply": STORY}],
        "default": "Sure, here it is.",
        "token_delay_s": 0.05,
    }
    args = scripted_args(options, ("stt", "tts", "embeddings"))
    serve.run(build_app(args), name=APP, route_prefix=PREFIX)
    yield f"{ray_cluster['base_url']}{PREFIX}"
    serve.delete(APP)


def _kill_replica(deployment: str = "LLMServer", wait_dead: bool = False) -> None:
    """``ray.kill`` the app's one replica of ``deployment``, found among Ray's named actors
    (Serve names each replica ``SERVE_REPLICA::<app>#<deployment>#<id>``; the state API would
    need the dashboard, which the test cluster runs without). ``wait_dead``: return only once
    the actor no longer answers."""
    import ray

    replicas = [
        a
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{APP}#{deployment}#")
    ]
    assert len(replicas) == 1, replicas
    actor = ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"])
    ray.kill(actor, no_restart=True)
    if wait_dead:  # ray.kill is asynchronous: the actor may answer for a moment longer
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                ray.get(actor.__ray_ready__.remote(), timeout=2)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                return
            time.sleep(0.05)
        raise AssertionError(f"{replicas[0]['name']} still answers 10 s after ray.kill")


def test_llm_replica_killed_mid_stream_ends_with_an_error_event(scripted_only):
    frames: list[str] = []
    body = {
        "model": "scripted-chat",
        "stream": True,
        "max_tokens": 2000,
        "messages": [{"role": "user", "content": "Tell me a long story"}],
    }
    with httpx.Client(timeout=120) as http:
        with http.stream("POST", f"{scripted_only}/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                frames.append(line[5:].strip())
                if len(frames) == 20:
                    _kill_replica()
    assert len(frames) > 20, "nothing after the kill: the stream ended as if it were complete"
    assert "[DONE]" not in frames
    last = json.loads(frames[-1])
    assert last["error"]["code"] == "model_unavailable" and last["error"]["type"] == "server_error"
    contents = [json.loads(f) for f in frames[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in contents)
    assert all(c["choices"][0]["finish_reason"] is None for c in contents)  # no fake normal end

    # Serve replaces the replica; the endpoint answers again
    deadline = time.monotonic() + 120
    while True:
        r = httpx.post(
            f"{scripted_only}/v1/chat/completions",
            timeout=60,
            json={"model": "scripted-chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        )
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert r.status_code == 200, r.text


def test_stt_replica_killed_mid_request_is_retried_or_503(scripted_only):
    """Transcription is stateless: a request whose replica dies is sent once more (a retried
    200) or, if no replica answers in time, gets 503 ``model_unavailable`` with Retry-After;
    never a 500."""
    import threading

    from tests.conftest import SHARED

    stt = next(m["id"] for m in profile_args("embedded")["models"] if m["role"] == "stt")
    clip = (SHARED / "audio" / "basic_ref_en.wav").read_bytes()
    got: dict = {}

    def send() -> None:
        got["r"] = httpx.post(
            f"{scripted_only}/v1/audio/transcriptions",
            timeout=180,
            data={"model": stt},
            files={"file": ("a.wav", clip, "audio/wav")},
        )

    t = threading.Thread(target=send)
    t.start()
    time.sleep(0.3)  # the request is on its way or on the replica
    _kill_replica("STTServer")
    t.join()
    r = got["r"]
    if r.status_code == 200:
        assert "nature" in r.json()["text"].lower()
    else:
        assert r.status_code == 503 and r.headers.get("retry-after"), (r.status_code, r.text)
        assert r.json()["error"]["type"] == "model_unavailable"


def test_readyz_is_503_from_a_replica_kill_until_the_replacement_answers(scripted_only):
    """Serve's status still says RUNNING for a replica that was just killed; ``/readyz`` must not
    (it probes the replicas): 503 naming ``deployment:STTServer`` right after the kill, then 200
    once the replacement runs, and a transcription then succeeds at once."""
    from tests.conftest import SHARED

    stt = next(m["id"] for m in profile_args("embedded")["models"] if m["role"] == "stt")
    clip = (SHARED / "audio" / "basic_ref_en.wav").read_bytes()
    with httpx.Client(base_url=scripted_only, timeout=60) as http:
        deadline = time.monotonic() + 120  # the previous test's replacement may still be starting
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, http.get("/readyz").json()
            time.sleep(0.5)
        _kill_replica("STTServer", wait_dead=True)
        time.sleep(IngressState.STATUS_TTL_S + 0.2)  # /readyz answers from a view at most this old
        first = http.get("/readyz")
        assert first.status_code == 503, first.json()
        check = first.json()["checks"]["deployment:STTServer"]
        assert check["ok"] is False and check["role"] == "stt", check
        seen = [first.status_code]
        deadline = time.monotonic() + 120
        while seen[-1] != 200:
            assert time.monotonic() < deadline, f"no 200 within 120 s: {http.get('/readyz').json()}"
            time.sleep(0.3)
            seen.append(http.get("/readyz").status_code)
        assert set(seen) == {503, 200} and seen.index(200) == len(seen) - 1  # 503 throughout, then 200
        r = http.post(
            "/v1/audio/transcriptions", data={"model": stt}, files={"file": ("a.wav", clip, "audio/wav")}, timeout=30
        )
        assert r.status_code == 200 and "nature" in r.json()["text"].lower(), r.text


#: Bounded fuzzing in the suite: a few generated requests per operation. ``scripts/fuzz.sh``
#: runs a longer one outside CI (see the README's development section).
FUZZ_EXAMPLES = 5
FUZZ_CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance"


def test_schemathesis_finds_no_failure(scripted_only, tmp_path):
    """Schemathesis (``st run``) over every operation of ``/openapi.json``: no 5xx, and every
    status code and content type answered is one the document declares."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    st = Path(sys.executable).with_name("st")
    cmd = [
        str(st),
        "run",
        f"{scripted_only}/openapi.json",
        "--url",
        scripted_only,
        "--checks",
        FUZZ_CHECKS,
        "--max-examples",
        str(FUZZ_EXAMPLES),
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "1",
        "--request-timeout",
        "60",
        "--workers",
        "1",
        "--no-color",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path, env={**os.environ, "SCHEMATHESIS_HOOKS": ""}
    )
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, f"{proc.stdout[-8000:]}\n{proc.stderr[-2000:]}"

"""omniserve's own series reach a real Prometheus server through Ray's metrics export, and each
team reads its own totals from ``GET /v1/usage``.

The session's Ray cluster exports metrics on a port of its own (``metrics_port`` of the
``ray_cluster`` fixture), reported every second. This module starts Debian's ``prometheus``
(installed by ``scripts/setup.sh test``; the module skips, saying so, where it is missing),
scraping that port every second, deploys a small application of its own with two API keys (two
teams) and the fast backends (the scripted chat model, the real STT, TTS and VAD), sends a chat
completion, a transcription and one realtime turn with each key, and reads the counters back
through Prometheus' HTTP API: each must have risen for each team's ``key_id``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import httpx
import pytest
from openai import OpenAI

from tests.conftest import SHARED, scripted_args
from tests.realtime_client import RealtimeClient

APP, PREFIX = "metrics", "/metrics-app"
TEAMS = {"team-a": "sk-metrics-a", "team-b": "sk-metrics-b"}
ADMIN = "sk-metrics-ops"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prometheus(ray_cluster, tmp_path_factory):
    """A real Prometheus server scraping the cluster's metrics export every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (scripts/setup.sh test installs it as root)")
    work = tmp_path_factory.mktemp("prometheus")
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: ray\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{ray_cluster['metrics_port']}']}}]\n"
    )
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "prometheus.log", "wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (work / "prometheus.log").read_text()
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def teams_app(ray_cluster):
    """The embedded profile with the scripted chat model and the real STT, TTS and VAD, and an API
    key per team."""
    from ray import serve

    from deployments.app import build_app

    args = scripted_args({"default": "Paris is the capital."}, ("stt", "tts", "vad"))
    args["admission"].update(
        api_keys=[
            *({"key": key, "key_id": team} for team, key in TEAMS.items()),
            {"key": ADMIN, "key_id": "ops", "role": "admin"},
        ],
        api_keys_env=None,
        admin_keys_env=None,
        state_key="admission/metrics-test",
    )
    serve.run(build_app(args), name=APP, route_prefix=PREFIX)
    yield f"{ray_cluster['base_url']}{PREFIX}"
    serve.delete(APP)


def _query(prometheus: str, promql: str) -> dict[str, float]:
    """``{key_id: value}`` of an instant query grouped by ``key_id``."""
    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10)
    assert r.status_code == 200, r.text
    return {s["metric"].get("key_id", ""): float(s["value"][1]) for s in r.json()["data"]["result"]}


def _realtime_turn(base_url: str, key: str) -> dict:
    c = RealtimeClient(base_url.replace("http://", "ws://") + "/v1/realtime")
    try:
        c.send({"setup": {"apiKey": key, "locale": "en", "instanceId": f"{key}:1"}})
        c.wait_for("session.created", 60)
        c.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Capital?"}]},
            }
        )
        c.send({"type": "response.create"})
        return c.wait_for("response.done", 120)[1]
    finally:
        c.close()


def test_counters_rise_per_team_in_prometheus(prometheus, teams_app):
    clip = (SHARED / "audio" / "basic_ref_en.wav").read_bytes()
    for key in TEAMS.values():
        client = OpenAI(base_url=f"{teams_app}/v1", api_key=key, max_retries=0, timeout=120)
        reply = client.chat.completions.create(model="scripted-chat", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
        assert client.audio.transcriptions.create(model="whisper-1", file=("a.wav", clip)).text
        done = _realtime_turn(teams_app, key)
        assert done["response"]["status"] == "completed", done

    app = f'application="{APP}"'
    checks = {
        "requests": f'sum by (key_id) (ray_omniserve_requests_total{{{app}, status="200"}})',
        "prompt tokens": f'sum by (key_id) (ray_omniserve_tokens_total{{{app}, kind="prompt"}})',
        "completion tokens": f'sum by (key_id) (ray_omniserve_tokens_total{{{app}, kind="completion"}})',
        "audio in": f'sum by (key_id) (ray_omniserve_audio_seconds_total{{{app}, direction="in"}})',
        "audio out": f'sum by (key_id) (ray_omniserve_audio_seconds_total{{{app}, direction="out"}})',
        "turns": f'sum by (key_id) (ray_omniserve_realtime_turns_total{{{app}, outcome="completed"}})',
    }
    # admission decisions are counted by the admission server, another process reporting on its own
    totals = {
        "created": (f'sum(ray_omniserve_admission_decisions_total{{{app}, outcome="created"}})', len(TEAMS)),
        "durations": (f"sum(ray_omniserve_request_duration_seconds_count{{{app}}})", 2 * len(TEAMS)),
    }
    deadline = time.monotonic() + 90  # Ray reports every second, Prometheus scrapes every second
    while True:
        got = {name: _query(prometheus, q) for name, q in checks.items()}
        missing = {name: v for name, v in got.items() if not all(v.get(team, 0) > 0 for team in TEAMS)}
        summed = {name: _query(prometheus, q).get("", 0) for name, (q, _) in totals.items()}
        short = {name: v for name, v in summed.items() if v < totals[name][1]}
        if not (missing or short) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not missing, got
    assert not short, summed
    # chat and transcription per team (the realtime WebSocket is not an HTTP request)
    assert all(got["requests"][team] >= 2 for team in TEAMS), got
    # the clip is about 5.3 s of speech, heard once per team
    assert all(4.0 <= got["audio in"][team] for team in TEAMS), got


def test_usage_gives_each_team_its_own_totals(prometheus, teams_app):
    """After the traffic above (this module's first test): each team's own totals, another
    team's only with an admin key."""

    def usage(key: str, **params) -> httpx.Response:
        return httpx.get(f"{teams_app}/v1/usage", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    a = usage(TEAMS["team-a"])
    assert a.status_code == 200, a.text
    body = a.json()
    assert body["object"] == "usage" and body["key_id"] == "team-a"
    assert body["requests"] >= 2 and body["tokens"]["completion"] > 0
    assert body["tokens"]["total"] == body["tokens"]["prompt"] + body["tokens"]["completion"]
    assert body["audio_seconds"]["input"] >= 4.0  # the 5.3 s clip
    assert body["audio_seconds"]["output"] > 0  # the realtime turn's spoken answer
    assert body["realtime_session_seconds"] > 0
    # a team reads only its own figures: another team's needs an admin key
    denied = usage(TEAMS["team-a"], key_id="team-b")
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
    b = usage(ADMIN, key_id="team-b").json()
    assert b["key_id"] == "team-b" and b["requests"] >= 2
    assert usage(ADMIN).json()["key_id"] == "ops"
    assert httpx.get(f"{teams_app}/v1/usage", timeout=30).status_code == 401

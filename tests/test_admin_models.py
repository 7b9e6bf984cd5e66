"""Admin model management (the Izwi contract's "Admin Model Management", docs/http.md) on the
embedded default: the model records, and unload then load of the embeddings model through the
autoscaling policy (``deployments.scaling``). With API keys off every caller is an admin; the
401/403 answers for keys are tested in tests/test_admission_ws.py."""

from __future__ import annotations

import time

import httpx
import pytest

EMBEDDINGS = "all-minilm-l6-v2"


def _record(base: str, model_id: str) -> dict:
    r = httpx.get(f"{base}/v1/admin/models/{model_id}", timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _wait_status(base: str, model_id: str, status: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    record = _record(base, model_id)
    while record["status"] != status and time.monotonic() < deadline:
        time.sleep(0.5)
        record = _record(base, model_id)
    assert record["status"] == status, record
    return record


def test_admin_models_give_every_configured_model_with_its_state(omni):
    base = omni["base_url"]
    r = httpx.get(f"{base}/v1/admin/models", timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    records = {m["id"]: m for m in body["data"]}
    assert set(records) == {"smollm2-135m-instruct", EMBEDDINGS, "whisper-tiny.en", "piper-joe-medium", "silero-vad"}
    roles = {m["id"]: m["role"] for m in body["data"]}
    assert roles[EMBEDDINGS] == "embeddings" and roles["whisper-tiny.en"] == "stt"
    for m in body["data"]:
        assert m["variant"] == m["id"] and m["enabled"] is True and m["unloaded"] is False
        assert m["status"] == "ready" and m["replicas"]["running"] == 1 and m["can_unload"] is True
        assert m["autoscaling"] == {"min_replicas": 1, "max_replicas": 1} and m["num_replicas"] is None
    stt, tts, llm = records["whisper-tiny.en"], records["piper-joe-medium"], records["smollm2-135m-instruct"]
    assert stt["modalities"] == ["audio_input", "text_output"] and tts["modalities"] == ["text_input", "audio_output"]
    assert stt["route_capabilities"]["openai_audio_transcriptions"] is True
    assert stt["route_capabilities"]["voice_realtime_modular_asr"] is True
    assert stt["route_capabilities"]["openai_audio_speech"] is False
    assert tts["route_capabilities"]["voice_realtime_modular_tts"] is True
    assert llm["route_capabilities"]["openai_chat_completions"] is True
    assert records[EMBEDDINGS]["route_capabilities"]["openai_embeddings"] is True
    assert not any(records[EMBEDDINGS]["route_capabilities"][k] for k in ("voice_realtime_text_model",))
    speech = tts["speech_capabilities"]
    assert speech["supports_builtin_voices"] is True and speech["built_in_voice_count"] >= 1
    assert "speech_capabilities" not in stt
    # an alias finds its model; an unknown id is a 404 in the envelope
    assert _record(base, "text-embedding-3-small")["id"] == EMBEDDINGS
    missing = httpx.get(f"{base}/v1/admin/models/no-such-model", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    bad = httpx.post(f"{base}/v1/admin/models/no-such-model/unload", timeout=30)
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "model_not_found"


def test_unload_then_load_the_embeddings_model(omni, client):
    base = omni["base_url"]
    before = client.embeddings.create(model=EMBEDDINGS, input="a shared endpoint").data[0].embedding
    r = httpx.post(f"{base}/v1/admin/models/{EMBEDDINGS}/unload", timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["unloaded"] is True
    gone = _wait_status(base, EMBEDDINGS, "downloaded", timeout_s=60)
    assert gone["replicas"]["running"] == 0 and gone["unloaded"] is True
    # zero replicas on purpose: the endpoint stays ready, every other model still runs
    ready = httpx.get(f"{base}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["deployment:EmbeddingServer"]["detail"] == "scaled to zero"
    assert _record(base, "smollm2-135m-instruct")["status"] == "ready"

    r = httpx.post(f"{base}/v1/admin/models/{EMBEDDINGS}/load", timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["unloaded"] is False and r.json()["status"] in ("downloaded", "loading", "ready")
    back = _wait_status(base, EMBEDDINGS, "ready", timeout_s=180)
    assert back["replicas"]["running"] == 1
    after = client.embeddings.create(model=EMBEDDINGS, input="a shared endpoint").data[0].embedding
    assert after == pytest.approx(before, abs=1e-6)  # the same weights came back

"""The realtime WebSocket with real speech: the embedded default (real models) for a voice turn,
and a test application whose chat model is the scripted backend (deterministic replies for
emotion tags, tool calls and long replies to interrupt) with the same real STT, TTS and VAD."""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED, profile_args
from tests.realtime_client import RealtimeClient, load_pcm16, silence
from tests.test_audio_api import REF_TEXT, wer

LONG_STORY = " ".join(
    f"This is sentence number {i} of a long story about a lighthouse keeper and the sea." for i in range(1, 40)
)
SCRIPT = {
    "rules": [
        {"match": "weather", "tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"match": "story", "reply": LONG_STORY},
        {"match": "joke", "reply": "Oh [laughing] that is a good one. [deep breath] Anyway, I hope you smile today."},
    ],
    "default": "Hello there, it is nice to hear your voice.",
    "after_tool": "The weather tool says {output}.",
    "token_delay_s": 0.03,
}

NAIA_UPDATE = {
    "type": "session.update",
    "model": "naia-0.9-omni-24g",
    "session": {
        "modalities": ["text", "audio"],
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "instructions": "You are Naia, a friendly assistant.",
        # the reference clip pauses 0.8 s between its two phrases: one turn needs > 800 ms
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 1000},
        "input_audio_transcription": {"language": "en"},
    },
}


@pytest.fixture(scope="module")
def speech() -> bytes:
    return load_pcm16(SHARED / "audio" / "basic_ref_en.wav")


def ws_url(base_url: str, prefix: str = "") -> str:
    return base_url.replace("http://", "ws://") + prefix + "/v1/realtime?model=naia-0.9-omni-24g"


@pytest.fixture(scope="module")
def scripted(ray_cluster, omni):
    """A second application: the embedded default with the scripted chat model."""
    from ray import serve

    from deployments.app import build_app

    args = copy.deepcopy(profile_args("embedded"))
    for m in args["models"]:
        m["deployment"]["num_cpus"] = 0
        if m["role"] == "llm":
            m.update(id="scripted-chat", backend="scripted", options=SCRIPT, aliases=[])
            m.pop("source")
    args["ingress"]["deployment"]["num_cpus"] = 0
    serve.run(build_app(args), name="scripted", route_prefix="/scripted")
    yield {
        "url": ws_url(ray_cluster["base_url"], "/scripted"),
        "llm": serve.get_deployment_handle("LLMServer", "scripted"),
    }
    serve.delete("scripted")


def _connect(url: str) -> RealtimeClient:
    c = RealtimeClient(url)
    _, created = c.wait_for("session.created", 30)
    assert created["session"]["id"].startswith("sess_")
    return c


def _pcm(events: list[dict]) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events)


# ------------------------------------------------------------------------------ real models
def test_voice_turn_with_real_models(omni, speech):
    c = _connect(ws_url(omni["base_url"]))
    try:
        c.send(NAIA_UPDATE)
        c.wait_for("session.updated", 10)
        c.stream_audio(silence(0.5) + speech + silence(1.5))
        c.wait_for("input_audio_buffer.speech_started", 10)
        c.wait_for("input_audio_buffer.speech_stopped", 10)
        _, committed = c.wait_for("input_audio_buffer.committed", 10)
        _, tr = c.wait_for("conversation.item.input_audio_transcription.completed", 30)
        assert tr["item_id"] == committed["item_id"]
        assert wer(REF_TEXT, tr["transcript"]) <= 0.3, tr["transcript"]
        c.wait_for("response.created", 30)
        _, done = c.wait_for("response.done", 120)
        assert done["response"]["status"] == "completed", done
        audio = _pcm(c.of_type("response.audio.delta"))
        assert len(audio) % 2 == 0
        seconds = len(audio) / 2 / 24000
        assert 0.3 < seconds < 120
        assert np.abs(np.frombuffer(audio, dtype="<i2")).max() > 500
        transcript = c.of_type("response.audio_transcript.done")[-1]["transcript"]
        assert transcript.strip()
        meta = done["response"]["metadata"]
        labels = {k: meta.pop(k) for k in ("turn_detector", "speculation")}
        breakdown = {k: float(v) for k, v in meta.items()}
        assert {
            "turn_detector_wait_ms",
            "stt_ms",
            "stt_overlap_ms",
            "llm_first_token_ms",
            "first_clause_ms",
            "tts_first_chunk_ms",
            "voice_to_voice_ms",
            "speculative_stt_discarded",
            "speculative_llm_discarded",
        } <= set(breakdown)
        assert all(v >= 0 for v in breakdown.values())
        # an explicit silence_duration_ms: the silence window ends the turn, not the end-of-turn model
        assert labels["turn_detector"] == "silence" and 1000 <= breakdown["turn_detector_wait_ms"] < 1100
        # speculation miss: the 0.8 s pause between the clip's phrases started speculative work that
        # the second phrase threw away; still one turn, with the whole transcript (checked above),
        # and the speculation at the final pause was used (same audio, same transcript, same request)
        assert breakdown["speculative_stt_discarded"] >= 1
        assert len(c.of_type("input_audio_buffer.speech_started")) == 1
        assert len(c.of_type("input_audio_buffer.committed")) == 1
        assert labels["speculation"] == "hit" and breakdown["stt_overlap_ms"] > 0
        # the first audio left before the reply was complete: transcript deltas kept coming after it
        first_audio_t = next(t for t, e in c.events if e["type"] == "response.audio.delta")
        done_t = next(t for t, e in c.events if e["type"] == "response.audio_transcript.done")
        assert first_audio_t < done_t
    finally:
        c.close()


def test_text_turn_real_model(omni):
    c = _connect(ws_url(omni["base_url"]))
    try:
        c.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "What is the capital of France?"}],
                },
            }
        )
        c.wait_for("conversation.item.created", 10)
        c.send({"type": "response.create", "response": {"modalities": ["text"]}})
        _, done = c.wait_for("response.done", 60)
        assert done["response"]["status"] == "completed"
        text = "".join(e["delta"] for e in c.of_type("response.text.delta"))
        assert text.strip() and "[" not in text
        assert c.of_type("response.text.done")[-1]["text"] == text
    finally:
        c.close()


# ---------------------------------------------------------------------------- scripted LLM
def _text_turn(c: RealtimeClient, text: str, modalities=("text", "audio")) -> None:
    c.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
        }
    )
    c.send({"type": "response.create", "response": {"modalities": list(modalities)}})


def test_emotion_tags(scripted):
    c = _connect(scripted["url"])
    try:
        _text_turn(c, "Tell me a joke", modalities=["text", "audio"])
        c.wait_for("response.done", 60)
        emotions = c.of_type("emotion.updated")
        assert [(e["state"], e["tag"], e["known"]) for e in emotions] == [
            ("laughing", "[laughing]", True),
            ("deep breath", "[deep breath]", False),
        ]
        transcript = "".join(e["delta"] for e in c.of_type("response.audio_transcript.delta"))
        assert "[laughing]" in transcript and "[deep breath]" in transcript  # split across tokens, still found
        assert c.of_type("response.audio.delta")
        # text modality: clean text, same events
        t0 = time.monotonic()
        _text_turn(c, "Another joke please", modalities=["text"])
        c.wait_for("response.done", 60)
        text = "".join(e["delta"] for e in c.of_type("response.text.delta", after=t0))
        assert text.startswith("Oh that is a good one.") and "[" not in text
        assert len(c.of_type("emotion.updated", after=t0)) == 2
    finally:
        c.close()


def _wait_llm_idle(handle, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    active = handle.info.remote().result()["active_generations"]
    while active and time.monotonic() < deadline:
        time.sleep(0.2)
        active = handle.info.remote().result()["active_generations"]
    return active


def test_client_response_cancel_stops_generation(scripted):
    c = _connect(scripted["url"])
    try:
        _text_turn(c, "Tell me a long story")
        c.wait_for("response.audio.delta", 60)
        assert scripted["llm"].info.remote().result()["active_generations"] == 1
        c.send({"type": "response.cancel"})
        _, cancelled = c.wait_for("response.cancelled", 5)
        _, done = c.wait_for("response.done", 5)
        assert done["response"]["status"] == "cancelled"
        assert _wait_llm_idle(scripted["llm"]) == 0
        # a second cancel with nothing running is an error event, not a dropped session
        c.send({"type": "response.cancel"})
        _, err = c.wait_for("error", 5)
        assert err["error"]["code"] == "response_cancel_not_active"
    finally:
        c.close()


def test_barge_in_cancels_and_answers_new_turn(scripted, speech):
    c = _connect(scripted["url"])
    try:
        c.send(NAIA_UPDATE)
        c.wait_for("session.updated", 10)
        _text_turn(c, "Tell me a long story")
        c.wait_for("response.audio.delta", 60)
        t_stream = threading.Thread(target=c.stream_audio, args=(silence(0.3) + speech + silence(1.5),))
        t_stream.start()
        t_speech, _ = c.wait_for("input_audio_buffer.speech_started", 15)
        t_cancel, _ = c.wait_for("response.cancelled", 5)
        _, done = c.wait_for("response.done", 5, where=lambda e: e["response"]["status"] == "cancelled")
        assert (t_cancel - t_speech) * 1000 < 300, f"cancelled {1000 * (t_cancel - t_speech):.0f} ms after speech start"
        assert _wait_llm_idle(scripted["llm"]) == 0
        t_stream.join()
        _, tr = c.wait_for("conversation.item.input_audio_transcription.completed", 30)
        assert wer(REF_TEXT, tr["transcript"]) <= 0.3
        _, done2 = c.wait_for("response.done", 60)
        assert done2["response"]["status"] == "completed"
        assert c.of_type("response.audio_transcript.done")[-1]["transcript"].startswith("Hello there")
    finally:
        c.close()


def test_tool_call_round_trip_auto_resumes(scripted):
    c = _connect(scripted["url"])
    try:
        c.send(
            {
                "type": "session.update",
                "session": {
                    "tools": [
                        {
                            "type": "function",
                            "name": "get_weather",
                            "description": "Weather in a city",
                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                        }
                    ]
                },
            }
        )
        c.wait_for("session.updated", 10)
        _text_turn(c, "What is the weather in Paris?")
        _, call = c.wait_for("response.function_call_arguments.done", 30)
        assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
        _, done = c.wait_for("response.done", 10)
        assert done["response"]["requires_action"] is True
        assert any(o["type"] == "function_call" for o in done["response"]["output"])
        c.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny and 21 C"},
            }
        )
        c.wait_for("response.created", 10)  # no response.create sent: the server resumes by itself
        _, done2 = c.wait_for("response.done", 60)
        assert done2["response"]["status"] == "completed"
        assert "sunny and 21 C" in c.of_type("response.audio_transcript.done")[-1]["transcript"]
    finally:
        c.close()


@pytest.mark.parametrize(
    "frame, code",
    [
        ("{not json", "invalid_json"),
        (json.dumps({"type": "no.such.event"}), "unknown_event"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "%%%not-base64%%%"}), "invalid_audio"),
        (
            json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x01\x02\x03").decode()}),
            "invalid_audio",
        ),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 1_200_000}), "frame_too_large"),
        (
            json.dumps({"type": "session.update", "session": {"input_audio_format": "g711_ulaw"}}),
            "invalid_request_error",
        ),
        (
            json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "wizard"}}),
            "invalid_request_error",
        ),
        (b"\x00\x01binary", "unsupported_frame"),
    ],
)
def test_robustness_errors_keep_session(scripted, frame, code):
    c = _connect(scripted["url"])
    try:
        c.send_raw(frame)
        _, err = c.wait_for("error", 10)
        assert err["error"]["code"] == code and err["error"]["message"]
        c.send({"type": "session.update", "session": {"instructions": "still here"}})
        _, upd = c.wait_for("session.updated", 10)
        assert upd["session"]["instructions"] == "still here"
    finally:
        c.close()


@pytest.mark.parametrize(
    "field, value, param",
    [
        ("temperature", "hot", "session.temperature"),
        ("temperature", 7, "session.temperature"),
        ("voice", 5, "session.voice"),
        ("max_response_output_tokens", "abc", "session.max_response_output_tokens"),
        ("max_response_output_tokens", 0, "session.max_response_output_tokens"),
        ("turn_detection", 5, "session.turn_detection"),
        ("turn_detection", {"type": "server_vad", "threshold": "loud"}, "session.turn_detection"),
        ("tools", "get_weather", "session.tools"),
        ("tools", [{"type": "function"}], "session.tools"),
        ("modalities", "audio", "session.modalities"),
        ("modalities", ["smell"], "session.modalities"),
        ("tool_choice", 3, "session.tool_choice"),
    ],
)
def test_bad_session_update_keeps_session_and_settings(scripted, field, value, param):
    """One error event naming the field; no setting of the update is applied (the valid
    ``instructions`` beside the bad field included); the next text turn completes."""
    c = _connect(scripted["url"])
    try:
        c.send({"type": "session.update", "session": {"instructions": "first", "temperature": 0.7}})
        c.wait_for("session.updated", 10)
        c.send({"type": "session.update", "session": {"instructions": "second", field: value}})
        _, err = c.wait_for("error", 10)
        assert err["error"]["type"] == "invalid_request_error" and err["error"]["param"].startswith(param)
        assert "object has no attribute" not in err["error"]["message"]
        assert len(c.of_type("session.updated")) == 1  # the bad update was not applied
        c.send({"type": "session.update", "session": {"tool_choice": "auto"}})
        _, upd = c.wait_for("session.updated", 10, where=lambda e: e["session"]["tool_choice"] == "auto")
        assert upd["session"]["instructions"] == "first" and upd["session"]["temperature"] == 0.7
        _text_turn(c, "Hello", modalities=["text"])
        _, done = c.wait_for("response.done", 60)
        assert done["response"]["status"] == "completed"
        assert c.of_type("response.text.done")[-1]["text"]
    finally:
        c.close()


def test_unknown_session_fields_are_ignored(scripted):
    """Fields this server does not know (a newer client's, or another vendor's) are ignored, as
    OpenAI does: the update applies, with no error event."""
    c = _connect(scripted["url"])
    try:
        c.send(
            {
                "type": "session.update",
                "session": {
                    "instructions": "Be brief.",
                    "temperature": 0.6,
                    "future_field": {"nested": [1, 2]},
                    "x_vendor": "abc",
                },
            }
        )
        _, upd = c.wait_for("session.updated", 10)
        assert upd["session"]["instructions"] == "Be brief." and upd["session"]["temperature"] == 0.6
        assert "future_field" not in upd["session"] and not c.of_type("error")
    finally:
        c.close()


def test_disconnect_mid_response_frees_generation(scripted):
    c = _connect(scripted["url"])
    _text_turn(c, "Tell me a long story")
    c.wait_for("response.audio.delta", 60)
    c.close()
    assert _wait_llm_idle(scripted["llm"]) == 0


def test_ga_session_uses_ga_names(scripted):
    c = _connect(scripted["url"])
    try:
        c.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "output_modalities": ["audio"],
                    "instructions": "Be brief.",
                    "audio": {
                        "input": {
                            "format": {"type": "audio/pcm", "rate": 24000},
                            "turn_detection": {"type": "server_vad"},
                        },
                        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"},
                    },
                },
            }
        )
        _, upd = c.wait_for("session.updated", 10)
        assert upd["session"]["type"] == "realtime" and upd["session"]["audio"]["output"]["voice"] == "alloy"
        c.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            }
        )
        c.wait_for("conversation.item.added", 10)
        c.wait_for("conversation.item.done", 10)
        c.send({"type": "response.create"})
        c.wait_for("response.done", 60)
        types = {e["type"] for _, e in c.events}
        assert {
            "response.output_audio.delta",
            "response.output_audio_transcript.delta",
            "response.output_audio_transcript.done",
        } <= types
        assert not types & {"response.audio.delta", "response.audio_transcript.delta", "conversation.item.created"}
    finally:
        c.close()


def test_bare_root_and_setup_frame(omni):
    """The local-container client connects to the bare ws://host:port and sends a setup frame."""
    c = _connect(omni["base_url"].replace("http://", "ws://"))
    try:
        c.send({"setup": {"apiKey": "naia", "locale": "en", "instanceId": "user1:abc"}})
        c.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]},
            }
        )
        # the point is the setup frame, not reply length: a short budget keeps a slow CPU inside the wait
        c.send({"type": "response.create", "response": {"modalities": ["text"], "max_output_tokens": 16}})
        _, done = c.wait_for("response.done", 120)
        assert done["response"]["status"] == "completed"
        assert not c.of_type("error")
    finally:
        c.close()


def test_ref_audio_on_non_cloning_backend_gives_one_notice(scripted, speech):
    c = _connect(scripted["url"])
    try:
        ref = base64.b64encode((SHARED / "audio" / "basic_ref_en.wav").read_bytes()).decode()
        for _ in range(2):
            c.send({"type": "session.update", "session": {"ref_audio": ref}})
            c.wait_for("session.updated", 30)
        notices = c.of_type("session.notice")
        assert len(notices) == 1 and notices[0]["code"] == "voice_cloning_unsupported"
    finally:
        c.close()


def test_ref_audio_url_refuses_private_hosts():
    import asyncio

    from deployments.realtime.fetch import fetch_reference

    for url in (
        "http://127.0.0.1:9/x.wav",
        "http://169.254.169.254/latest",
        "http://10.0.0.1/a.wav",
        "file:///etc/passwd",
    ):
        with pytest.raises(ValueError):
            asyncio.run(fetch_reference(url, 1000, 2.0))


def test_official_openai_sdk_realtime_client(ray_cluster, scripted):
    """OpenAI's own realtime client (GA), pointed at the endpoint by base_url only."""
    from openai import OpenAI

    client = OpenAI(base_url=ray_cluster["base_url"] + "/scripted/v1", api_key="naia")
    with client.realtime.connect(model="naia-0.9-omni-24g") as conn:
        conn.session.update(session={"type": "realtime", "output_modalities": ["audio"], "instructions": "Be brief."})
        conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Tell me a joke"}]}
        )
        conn.response.create()
        seen, audio = [], b""
        for ev in conn:
            seen.append(ev.type)
            if ev.type == "response.output_audio.delta":
                audio += base64.b64decode(ev.delta)
            if ev.type == "response.done":
                assert ev.response.status == "completed"
                break
    assert seen[0] == "session.created" and "session.updated" in seen
    assert {"response.created", "response.output_audio_transcript.delta", "response.output_audio.delta"} <= set(seen)
    assert "emotion.updated" in seen and len(audio) > 24000


GA_SCHEMAS = {
    # sent before the client's GA-shaped session.update: still the default (beta) shape
    "session.created": "RealtimeBetaServerEventSessionCreated",
    "session.updated": "RealtimeServerEventSessionUpdated",
    "conversation.item.added": "RealtimeServerEventConversationItemAdded",
    "conversation.item.done": "RealtimeServerEventConversationItemDone",
    "response.created": "RealtimeServerEventResponseCreated",
    "response.output_item.added": "RealtimeServerEventResponseOutputItemAdded",
    "response.output_item.done": "RealtimeServerEventResponseOutputItemDone",
    "response.content_part.added": "RealtimeServerEventResponseContentPartAdded",
    "response.content_part.done": "RealtimeServerEventResponseContentPartDone",
    "response.output_audio.delta": "RealtimeServerEventResponseAudioDelta",
    "response.output_audio.done": "RealtimeServerEventResponseAudioDone",
    "response.output_audio_transcript.delta": "RealtimeServerEventResponseAudioTranscriptDelta",
    "response.output_audio_transcript.done": "RealtimeServerEventResponseAudioTranscriptDone",
    "response.done": "RealtimeServerEventResponseDone",
    "input_audio_buffer.speech_started": "RealtimeServerEventInputAudioBufferSpeechStarted",
    "input_audio_buffer.speech_stopped": "RealtimeServerEventInputAudioBufferSpeechStopped",
    "input_audio_buffer.committed": "RealtimeServerEventInputAudioBufferCommitted",
    "conversation.item.input_audio_transcription.completed": (
        "RealtimeServerEventConversationItemInputAudioTranscriptionCompleted"
    ),
    "response.function_call_arguments.done": "RealtimeServerEventResponseFunctionCallArgumentsDone",
    "error": "RealtimeServerEventError",
}


def test_ga_events_match_openai_schemas(scripted, speech):
    """Every GA-named event of a voice turn, a tool call and an error validates against OpenAI's
    published realtime event schema."""
    from tests.oai_schema import validate

    c = RealtimeClient(scripted["url"])
    try:
        c.wait_for("session.created", 30)
        c.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "output_modalities": ["audio"],
                    "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 1000}}},
                    "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
                },
            }
        )
        c.wait_for("session.updated", 10)
        c.stream_audio(silence(0.3) + speech + silence(1.5), realtime=False)
        c.wait_for("response.done", 90)
        _text_turn(c, "What is the weather?", modalities=["audio"])
        c.wait_for("response.function_call_arguments.done", 30)
        c.wait_for("response.done", 30)
        c.send_raw("{broken")
        c.wait_for("error", 10)
        import os

        if os.environ.get("DUMP_GA_EVENTS"):
            Path(os.environ["DUMP_GA_EVENTS"]).write_text(json.dumps([e for _, e in c.events]))
        checked = set()
        for _, ev in c.events:
            name = GA_SCHEMAS.get(ev["type"])
            if name:
                validate(ev, name)
                checked.add(ev["type"])
        assert {
            "response.output_audio.delta",
            "response.done",
            "session.updated",
            "error",
            "input_audio_buffer.speech_started",
            "response.function_call_arguments.done",
        } <= checked
    finally:
        c.close()


# ------------------------------------------------------------------------------ semantic turn detection
#: The clip's second phrase, "others call me mother nature.", starts after its 0.8 s pause.
PHRASE2_START_S = 2.82


@pytest.fixture(scope="module")
def phrase2(speech) -> bytes:
    """The second phrase, its trailing silence trimmed (the clip's last 20 ms frame whose RMS
    exceeds 1 % of full scale ends it), so the silence a test appends is all the silence sent."""
    pcm = np.frombuffer(speech[int(PHRASE2_START_S * 24000) * 2 :], dtype="<i2").astype(np.float32) / 32768
    frame = 480
    rms = np.sqrt(np.mean(pcm[: len(pcm) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    end = (int(np.nonzero(rms > 0.01)[0][-1]) + 1) * frame
    return (pcm[:end] * 32768).astype("<i2").tobytes()


def _semantic_session(url: str, eagerness: str) -> RealtimeClient:
    c = _connect(url)
    c.send({"type": "session.update", "session": {"turn_detection": {"type": "semantic_vad", "eagerness": eagerness}}})
    _, updated = c.wait_for("session.updated", 10)
    assert updated["session"]["turn_detection"]["type"] == "semantic_vad"
    assert updated["session"]["turn_detection"]["eagerness"] == eagerness
    return c


def test_semantic_vad_ends_a_complete_utterance_before_500_ms(scripted, phrase2):
    """A finished sentence and 400 ms of silence: the silence limit (8 s at eagerness low) cannot
    end it, and no more audio comes; the end-of-turn model's "complete" verdict does."""
    c = _semantic_session(scripted["url"], "low")
    try:
        c.stream_audio(silence(0.3) + phrase2 + silence(0.4), realtime=False)
        c.wait_for("input_audio_buffer.speech_stopped", 30)
        _, tr = c.wait_for("conversation.item.input_audio_transcription.completed", 30)
        assert wer("others call me mother nature", tr["transcript"]) <= 0.3, tr["transcript"]
        _, done = c.wait_for("response.done", 60)
        meta = done["response"]["metadata"]
        assert meta["turn_detector"] == "semantic" and float(meta["turn_detector_wait_ms"]) < 500
        assert not c.of_type("error")
    finally:
        c.close()


@pytest.fixture(scope="module")
def unfinished(omni) -> bytes:
    """ "What is the weather going to be like in", spoken by the endpoint's own TTS (PCM16 24 kHz):
    a sentence broken off, which the end-of-turn model calls incomplete."""
    import httpx

    tts = next(m["id"] for m in profile_args("embedded")["models"] if m["role"] == "tts")
    r = httpx.post(
        f"{omni['base_url']}/v1/audio/speech",
        timeout=120,
        json={"model": tts, "input": "What is the weather going to be like in", "response_format": "pcm"},
    )
    assert r.status_code == 200, r.text
    return r.content


def test_semantic_vad_does_not_cut_an_unfinished_utterance(scripted, unfinished):
    """A broken-off sentence and 1 s of silence: the model says incomplete, so the turn waits;
    it ends only at the eagerness limit (high: 2 s of silence) once more silence arrives."""
    c = _semantic_session(scripted["url"], "high")
    try:
        c.stream_audio(silence(0.3) + unfinished + silence(1.0), realtime=False)
        c.wait_for("input_audio_buffer.speech_started", 15)
        time.sleep(3.0)  # ample for the end-of-turn verdict (~0.1 s) to have come back
        assert not c.of_type("input_audio_buffer.speech_stopped")
        assert not c.of_type("input_audio_buffer.committed")
        c.stream_audio(silence(1.2), realtime=False)
        c.wait_for("input_audio_buffer.speech_stopped", 15)
        _, done = c.wait_for("response.done", 60)
        meta = done["response"]["metadata"]
        assert meta["turn_detector"] == "silence" and float(meta["turn_detector_wait_ms"]) >= 2000
    finally:
        c.close()


def test_semantic_vad_bad_eagerness_is_one_error(scripted):
    c = _connect(scripted["url"])
    try:
        c.send({"type": "session.update", "session": {"turn_detection": {"type": "semantic_vad", "eagerness": "max"}}})
        _, err = c.wait_for("error", 10)
        assert err["error"]["param"] == "session.turn_detection.eagerness" and "low" in err["error"]["message"]
        c.send({"type": "session.update", "session": {"instructions": "Be brief."}})
        _, updated = c.wait_for("session.updated", 10)
        assert updated["session"]["turn_detection"]["type"] == "server_vad"
    finally:
        c.close()

"""Audio routes on the embedded default (faster-whisper tiny.en, piper joe) through the OpenAI SDK."""

from __future__ import annotations

import base64
import io
import json
import re
import time
import wave

import jiwer
import numpy as np
import pytest

from tests.conftest import SHARED
from tests.oai_schema import validate

AUDIO = SHARED / "audio"
REF_TEXT = "Some call me nature, others call me mother nature."
ROUND_TRIP = "The weather is lovely today. Let us walk to the river after lunch."


def wer(reference: str, hypothesis: str) -> float:
    norm = lambda s: re.sub(r"[^a-z0-9' ]+", " ", s.lower()).split()  # noqa: E731
    return jiwer.wer(" ".join(norm(reference)), " ".join(norm(hypothesis)))


def _envelope(r, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    validate(body, "ErrorResponse")
    return body["error"]


# ------------------------------------------------------------------------------ transcription
@pytest.fixture(scope="module")
def ref_wav() -> bytes:
    return (AUDIO / "basic_ref_en.wav").read_bytes()


def test_transcribe_reference_clip(client, ref_wav):
    result = client.audio.transcriptions.create(model="whisper-1", file=("basic_ref_en.wav", ref_wav))
    assert wer(REF_TEXT, result.text) <= 0.15, result.text
    validate(result.model_dump(exclude_unset=True), "CreateTranscriptionResponseJson")


def test_transcription_text_and_verbose_json(client, ref_wav):
    text = client.audio.transcriptions.create(
        model="naia-0.9-omni-24g", file=("a.wav", ref_wav), response_format="text"
    )
    assert wer(REF_TEXT, text) <= 0.15
    verbose = client.audio.transcriptions.create(
        model="naia-0.9-omni-24g",
        file=("a.wav", ref_wav),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    body = verbose.model_dump(exclude_unset=True)
    validate(body, "CreateTranscriptionResponseVerboseJson")
    assert body["language"] == "english"
    assert 5.0 < body["duration"] < 5.7
    assert body["segments"] and body["words"]
    assert len(body["words"]) >= 8
    for w in body["words"]:
        assert 0 <= w["start"] <= w["end"] <= body["duration"] + 1e-6
    starts = [w["start"] for w in body["words"]]
    assert starts == sorted(starts)


def _cue_times(text: str, sep: str) -> list[tuple[float, float]]:
    pattern = rf"(\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d) --> (\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d)"
    out = []
    for m in re.finditer(pattern, text):
        g = [int(x) for x in m.groups()]
        out.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000))
    return out


def test_transcription_srt_and_vtt(client, ref_wav):
    srt = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", ref_wav), response_format="srt")
    vtt = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", ref_wav), response_format="vtt")
    assert vtt.startswith("WEBVTT")
    for cues in (_cue_times(srt, ","), _cue_times(vtt, ".")):
        assert cues
        flat = [t for cue in cues for t in cue]
        assert flat == sorted(flat) and all(a < b for a, b in cues)
    assert srt.lstrip().startswith("1\n")
    assert wer(REF_TEXT, " ".join(ln for ln in srt.splitlines() if ln and "-->" not in ln and not ln.isdigit())) <= 0.15


def test_transcription_stream_sse(client, ref_wav):
    events = list(client.audio.transcriptions.create(model="whisper-1", file=("a.wav", ref_wav), stream=True))
    types = [e.type for e in events]
    assert types[-1] == "transcript.text.done" and "transcript.text.delta" in types
    for e in events:
        validate(e.model_dump(exclude_unset=True), "CreateTranscriptionResponseStreamEvent")
    deltas = "".join(e.delta for e in events if e.type == "transcript.text.delta")
    assert wer(REF_TEXT, deltas) <= 0.15 and wer(REF_TEXT, events[-1].text) <= 0.15


def test_transcribe_flac_44k_and_json_base64(client, http):
    flac = (AUDIO / "story_main_44k.flac").read_bytes()
    text = client.audio.transcriptions.create(model="whisper-1", file=("story.flac", flac)).text
    assert len(text.split()) >= 5
    r = http.post("/v1/audio/transcriptions", json={"audio_base64": base64.b64encode(flac).decode()})
    assert r.status_code == 200 and r.json()["text"] == text


def _truncated_wav(ref: bytes) -> bytes:
    return ref[:30]


@pytest.mark.parametrize(
    "name, payload",
    [
        ("empty.wav", lambda ref: b""),
        ("notes.wav", lambda ref: b"These are my meeting notes, not audio at all.\n" * 20),
        ("cut.wav", _truncated_wav),
        ("noise.mp3", lambda ref: bytes(range(256)) * 8),
    ],
)
def test_bad_uploads_are_400_and_server_recovers(http, client, ref_wav, name, payload):
    r = http.post("/v1/audio/transcriptions", files={"file": (name, payload(ref_wav))}, data={"model": "whisper-1"})
    err = _envelope(r, 400)
    assert err["type"] == "invalid_request_error" and err["param"] == "file"
    good = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", ref_wav))
    assert wer(REF_TEXT, good.text) <= 0.15


@pytest.mark.parametrize(
    "data, param",
    [
        ({"model": "whisper-1", "response_format": "docx"}, "response_format"),
        ({"model": "whisper-1", "temperature": "hot"}, "temperature"),
        ({"model": "whisper-1", "timestamp_granularities[]": "word"}, "timestamp_granularities"),
        ({"model": "tts-1"}, "model"),
    ],
)
def test_bad_transcription_fields_are_400(http, ref_wav, data, param):
    r = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", ref_wav)}, data=data)
    assert _envelope(r, 400)["param"] == param


def test_transcription_missing_file_wrong_type_and_too_large(http):
    assert (
        _envelope(
            http.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"other": ("x.txt", b"x")}), 400
        )["param"]
        == "file"
    )
    _envelope(http.post("/v1/audio/transcriptions", content=b"RIFF", headers={"content-type": "audio/wav"}), 415)
    big = np.zeros(27_000_000, dtype=np.uint8).tobytes()
    assert (
        _envelope(http.post("/v1/audio/transcriptions", files={"file": ("big.wav", big)}), 413)["type"]
        == "request_too_large"
    )


def test_translation_unsupported_is_404(http, ref_wav):
    r = http.post("/v1/audio/translations", files={"file": ("a.wav", ref_wav)}, data={"model": "whisper-1"})
    assert _envelope(r, 404)["code"] == "translation_not_supported"


# ------------------------------------------------------------------------------------- speech
def test_speech_wav_round_trip(client):
    wav_bytes = client.audio.speech.create(model="tts-1", voice="alloy", input=ROUND_TRIP, response_format="wav").read()
    with wave.open(io.BytesIO(_fix_streaming_wav(wav_bytes))) as w:
        rate, frames, width, channels = w.getframerate(), w.getnframes(), w.getsampwidth(), w.getnchannels()
    assert (rate, width, channels) == (24000, 2, 1)
    duration = frames / rate
    assert 1.0 <= duration <= 12.0
    heard = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", wav_bytes)).text
    assert wer(ROUND_TRIP, heard) <= 0.2, heard


def _fix_streaming_wav(data: bytes) -> bytes:
    """A streamed WAV has 0xFFFFFFFF sizes (length unknown while streaming); write the real
    ones so the standard library's reader accepts it."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[36:40] == b"data"
    body = len(data) - 44
    return data[:4] + (36 + body).to_bytes(4, "little") + data[8:40] + body.to_bytes(4, "little") + data[44:]


def test_speech_pcm_byte_count_matches_24k_pcm16(client):
    """``pcm`` is headerless PCM16 mono little-endian at 24 kHz: read that way its length is
    plausible and it transcribes back to the text (a wrong rate or width would garble it)."""
    pcm = client.audio.speech.create(model="tts-1", voice="alloy", input=ROUND_TRIP, response_format="pcm").read()
    assert len(pcm) % 2 == 0
    samples = np.frombuffer(pcm, dtype="<i2")
    assert 1.0 <= len(samples) / 24000 <= 12.0 and np.abs(samples).max() > 1000
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(24000), w.writeframes(pcm)
    heard = client.audio.transcriptions.create(model="whisper-1", file=("pcm.wav", buf.getvalue())).text
    assert wer(ROUND_TRIP, heard) <= 0.2, heard


@pytest.mark.parametrize("fmt", ["mp3", "flac", "opus", "aac"])
def test_speech_compressed_formats_decode(client, fmt):
    from models.audio import decode_audio

    data = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there.", response_format=fmt).read()
    audio = decode_audio(data, f"speech.{fmt}")
    assert 0.3 < audio.duration_s < 5


def _audio_out_seconds(http) -> float:
    return http.get("/v1/usage").json()["audio_seconds"]["output"]


@pytest.mark.parametrize("fmt, stream_format", [("mp3", "audio"), ("opus", "sse")])
def test_compressed_speech_counts_its_audio_seconds(http, fmt, stream_format):
    """Usage (and ``omniserve_audio_seconds_total{direction="out"}``) counts compressed speech
    too: the replica reports the synthesised duration, which the client never sees."""
    from models.audio import decode_audio

    before = _audio_out_seconds(http)
    body = {"model": "tts-1", "input": "Hello there, counting seconds.", "voice": "alloy", "response_format": fmt}
    if stream_format == "sse":
        body["stream_format"] = "sse"
    r = http.post("/v1/audio/speech", json=body)
    assert r.status_code == 200
    if stream_format == "sse":
        events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
        assert [e["type"] for e in events][-1] == "speech.audio.done"
        assert all("audio_seconds" not in e for e in events)
        data = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    else:
        data = r.content
    heard = decode_audio(data, f"speech.{fmt}").duration_s
    counted = _audio_out_seconds(http) - before  # this test's request alone: tests run one at a time
    assert heard > 0.5 and abs(counted - heard) < 0.15, (counted, heard)


@pytest.mark.parametrize("stream_format", ["audio", "sse"])
def test_speech_cut_short_counts_the_pcm_seconds_sent(http, stream_format):
    """A client that leaves after the first piece of a long pcm speech stream: the seconds sent
    before the server saw it go are counted (the replica's closing duration record never comes),
    neither nothing nor the whole text (about 100 s of speech)."""
    text = " ".join(f"This is sentence number {i} of a long answer." for i in range(40))
    body = {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm"}
    if stream_format == "sse":
        body["stream_format"] = "sse"
    before = _audio_out_seconds(http)
    with http.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200
        assert next(r.iter_bytes())  # leaving the block closes the connection mid-stream
    deadline = time.monotonic() + 30
    while (counted := _audio_out_seconds(http) - before) <= 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert 0 < counted < 50, counted


def test_speech_sse_events(http):
    with http.stream(
        "POST",
        "/v1/audio/speech",
        json={
            "model": "tts-1",
            "input": "Streaming speech works.",
            "voice": "alloy",
            "response_format": "pcm",
            "stream_format": "sse",
        },
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"
    for e in events:
        validate(e, "CreateSpeechResponseStreamEvent")
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert len(audio) % 2 == 0 and len(audio) / 48000 > 0.5


def test_speech_errors(http):
    cases = [
        ({"model": "tts-1", "input": "hi", "voice": "alloy", "response_format": "ogg"}, 400, "response_format"),
        ({"model": "tts-1", "input": "", "voice": "alloy"}, 400, "input"),
        ({"model": "tts-1", "input": "\x00\x01 \x02", "voice": "alloy"}, 400, "input"),  # no speakable text
        ({"model": "tts-1", "input": "hi", "voice": "alloy", "speed": 9}, 400, "speed"),
        ({"model": "tts-1", "input": "hi", "voice": "no-such-voice"}, 400, "voice"),
        (
            {"model": "tts-1", "input": "hi", "voice": "alloy", "reference_audio": "UklGRg==", "reference_text": "hi"},
            400,
            "reference_audio",
        ),
        ({"model": "whisper-1", "input": "hi", "voice": "alloy"}, 400, "model"),
        ({"model": "no-such-tts", "input": "hi", "voice": "alloy"}, 404, "model"),
    ]
    for body, status, param in cases:
        assert _envelope(http.post("/v1/audio/speech", json=body), status)["param"] == param, body


def test_speech_with_control_characters_is_spoken(http):
    """A NUL inside the text (which espeak-ng refuses) was a 500: control characters are spoken
    as the space they stand for."""
    r = http.post(
        "/v1/audio/speech",
        json={"model": "tts-1", "input": "Hello\x00there\x0e.", "voice": "alloy", "response_format": "pcm"},
    )
    assert r.status_code == 200, r.text
    assert len(r.content) / 2 / 24000 > 0.3


def test_voices_listed(http):
    data = http.get("/v1/audio/voices").json()["data"]
    assert data[0]["model"] == "piper-joe-medium" and data[0]["voices"][0] == data[0]["default_voice"]
    assert data[0]["supports_voice_cloning"] is False


def test_health_reports_audio_roles(http):
    health = http.get("/health").json()
    assert health["services"]["stt"] is True and health["services"]["tts"] is True
    assert health["vad"] is True

"""Audio routes in OpenAI's shapes: ``POST /v1/audio/transcriptions``, ``POST
/v1/audio/translations``, ``POST /v1/audio/speech`` and ``GET /v1/audio/voices``.

Uploads are forwarded as bytes to the STT deployment, which decodes them; speech comes back
from the TTS deployment already encoded, so the ingress never touches codecs.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import ValidationError
from sse_starlette import EventSourceResponse

from deployments.errors import APIError, bad_request, stream_error
from deployments.protocol.audio import (
    SPEECH_SECONDS,
    CreateSpeechRequest,
    CreateTranscriptionRequest,
    CreateTranscriptionResponseJson,
    CreateTranscriptionResponseVerboseJson,
    ListVoicesResponse,
    SpeechAudioDeltaEvent,
    SpeechAudioDoneEvent,
    SpeechUsage,
    TranscriptionSegment,
    TranscriptionUsage,
    TranscriptionWord,
    TranscriptTextDeltaEvent,
    TranscriptTextDoneEvent,
    VoiceList,
)
from deployments.routes import get_state, metered, require_json
from deployments.state import IngressState, next_item
from models.audio import CONTENT_TYPES, OPENAI_PCM_RATE

logger = logging.getLogger("ray.serve")
router = APIRouter(tags=["audio"])

#: uncompressed speech formats (PCM16 mono at 24 kHz) -> bytes before the samples
PCM_HEADER_BYTES = {"pcm": 0, "wav": 44}


def sent_seconds(response_format: str, sent: int) -> float | None:
    """Seconds of speech in the first ``sent`` bytes of a ``response_format`` stream, where that
    is exact (PCM16 mono at ``OPENAI_PCM_RATE`` Hz, raw or WAV); ``None`` for compressed formats.
    Counts a speech stream the client cut short, before the replica's duration record came."""
    if response_format not in PCM_HEADER_BYTES:
        return None
    return max(0, sent - PCM_HEADER_BYTES[response_format]) / 2 / OPENAI_PCM_RATE


TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off", ""}


def _bool(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise bad_request(f"'{param}' must be a boolean", param=param)


async def _read_transcription_request(request: Request) -> tuple[CreateTranscriptionRequest, bytes, str | None]:
    """Parse multipart (``file`` or ``audio``, or ``audio_base64``) or JSON (``audio_base64``).

    Raises:
        APIError: 415 for other content types; 400 for a missing or empty file, bad base64 or
            bad field values.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: dict[str, Any] = {}
    data: bytes | None = None
    filename: str | None = None
    if ctype == "multipart/form-data":
        try:
            form = await request.form()
        except Exception as exc:  # malformed multipart body
            raise bad_request(f"malformed multipart body: {exc}") from exc
        upload = form.get("file") or form.get("audio")
        if upload is not None and not isinstance(upload, str):
            data = await upload.read()
            filename = upload.filename
        for key, value in form.multi_items():
            if isinstance(value, str):
                if key in ("timestamp_granularities[]", "timestamp_granularities"):
                    fields.setdefault("timestamp_granularities", []).append(value)
                else:
                    fields[key] = value
    elif ctype == "application/json":
        try:
            fields = json.loads(await request.body())
        except ValueError as exc:
            raise bad_request("the request body is not valid JSON") from exc
        if not isinstance(fields, dict):
            raise bad_request("the request body must be a JSON object")
    else:
        raise APIError(415, "expected multipart/form-data or application/json", code="unsupported_media_type")
    if data is None and fields.get("audio_base64") is not None:
        try:
            data = base64.b64decode(str(fields["audio_base64"]), validate=True)
        except ValueError as exc:
            raise bad_request("audio_base64 is not valid base64", param="audio_base64") from exc
    if data is None:
        raise bad_request("a 'file' upload (or 'audio_base64') is required", param="file")
    if not data:
        raise bad_request("the uploaded file is empty", param="file")
    if "stream" in fields:
        fields["stream"] = _bool(fields["stream"], "stream")
    try:
        form_model = CreateTranscriptionRequest.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise bad_request(f"invalid value for '{param}': {first['msg']}", param=param) from exc
    return form_model, data, filename


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: list[dict]) -> str:
    """SubRip cues (``HH:MM:SS,mmm --> HH:MM:SS,mmm``), one per segment, numbered from 1."""
    cues = [
        f"{i}\n{_timestamp(s['start'], ',')} --> {_timestamp(s['end'], ',')}\n{s['text'].strip()}\n"
        for i, s in enumerate(segments, 1)
    ]
    return "\n".join(cues)


def to_vtt(segments: list[dict]) -> str:
    """WebVTT (W3C): ``WEBVTT`` header then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues."""
    cues = [f"{_timestamp(s['start'], '.')} --> {_timestamp(s['end'], '.')}\n{s['text'].strip()}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def _verbose(t: dict, task: str, granularities: list[str]) -> CreateTranscriptionResponseVerboseJson:
    return CreateTranscriptionResponseVerboseJson(
        task=task,
        language=t.get("language_name") or t["language"],
        duration=t["duration"],
        text=t["text"],
        segments=[
            TranscriptionSegment(
                id=s["id"],
                start=s["start"],
                end=s["end"],
                text=s["text"],
                temperature=s.get("temperature", 0.0),
                avg_logprob=s.get("avg_logprob", 0.0),
                compression_ratio=s.get("compression_ratio", 0.0),
                no_speech_prob=s.get("no_speech_prob", 0.0),
            )
            for s in t["segments"]
        ]
        if "segment" in granularities
        else None,
        words=[TranscriptionWord(word=w["word"], start=w["start"], end=w["end"]) for w in t["words"]]
        if "word" in granularities
        else None,
        usage=TranscriptionUsage.of(t["duration"]),
    )


async def _transcribe(request: Request, state: IngressState, task: str):
    form, data, filename = await _read_transcription_request(request)
    model = state.catalog.resolve(form.model, "stt")
    key_id = metered(request, model.id)
    if task == "translate" and not (await state.model_info(model)).get("can_translate"):
        raise APIError(
            404,
            f"model '{model.id}' cannot translate; /v1/audio/translations needs a multilingual speech-to-text model",
            code="translation_not_supported",
            param="model",
        )
    granularities = form.timestamp_granularities or ["segment"]
    if "word" in granularities and form.response_format != "verbose_json":
        raise bad_request(
            "timestamp_granularities[] requires response_format=verbose_json", param="timestamp_granularities"
        )
    options = {
        "language": form.language,
        "prompt": form.prompt,
        "temperature": form.temperature,
        "word_timestamps": "word" in granularities,
        "task": task,
    }

    if form.stream:
        # a bad upload fails here, and a lost replica is retried, before the 200 starts
        first, stream = await state.start_stream(model, "transcribe_stream", data=data, filename=filename, **options)

        def heard(seconds: float) -> None:
            state.metrics.audio(model.id, key_id, "in", seconds)

        return EventSourceResponse(_transcript_events(first, stream, heard), ping=15, sep="\n")

    t = await state.call(model, "transcribe", data=data, filename=filename, **options)
    state.metrics.audio(model.id, key_id, "in", t["duration"])
    fmt = form.response_format
    if fmt == "text":
        return PlainTextResponse(t["text"] + "\n")
    if fmt == "srt":
        return PlainTextResponse(to_srt(t["segments"]), media_type="application/x-subrip")
    if fmt == "vtt":
        return PlainTextResponse(to_vtt(t["segments"]), media_type="text/vtt")
    if fmt == "verbose_json":
        return _verbose(t, task, granularities)
    return CreateTranscriptionResponseJson(text=t["text"], usage=TranscriptionUsage.of(t["duration"]))


async def _transcript_events(first: dict | None, stream, heard: Callable[[float], None]) -> AsyncIterator[str]:
    """OpenAI's ``transcript.text.delta`` events, one per decoded segment, then
    ``transcript.text.done`` with the full text; ``heard`` gets the audio's duration (s)."""
    item, sent_any = first, False
    try:
        while item is not None:
            if item["type"] == "segment" and item["text"].strip():
                delta = (" " if sent_any else "") + item["text"].strip()
                sent_any = True
                yield TranscriptTextDeltaEvent(delta=delta).model_dump_json()
            elif item["type"] == "done":
                t = item["transcription"]
                heard(t["duration"])
                yield TranscriptTextDoneEvent(
                    text=t["text"], language=t["language"], audio_duration_secs=t["duration"]
                ).model_dump_json()
            item = await next_item(stream)
    except Exception as exc:  # mid-stream failure: the status line is already sent; no *.done event
        logger.error("audio stream failed after it started: %r", exc)
        yield json.dumps({"type": "error", **stream_error(exc)})
    finally:
        stream.cancel()


@router.post("/v1/audio/transcriptions")
async def create_transcription(request: Request, state: IngressState = Depends(get_state)):
    """Speech-to-text: multipart ``file`` (or JSON ``audio_base64``) in, text out in
    ``response_format`` json|text|verbose_json|srt|vtt, or SSE with ``stream=true``."""
    return await _transcribe(request, state, "transcribe")


@router.post("/v1/audio/translations")
async def create_translation(request: Request, state: IngressState = Depends(get_state)):
    """Speech in any language to English text; 404 when the model cannot translate."""
    return await _transcribe(request, state, "translate")


# ------------------------------------------------------------------------------------ speech
@router.post("/v1/audio/speech", dependencies=[Depends(require_json)])
async def create_speech(req: CreateSpeechRequest, request: Request, state: IngressState = Depends(get_state)):
    """Text-to-speech. Audio bytes stream as they are synthesised (chunked transfer) in
    ``response_format`` at 24 kHz mono, or as SSE ``speech.audio.delta`` / ``speech.audio.done``
    events with ``stream_format: "sse"``."""
    model = state.catalog.resolve(req.model, "tts")
    key_id = metered(request, model.id)
    info = await state.model_info(model)
    fmt = req.response_format
    if fmt not in info.get("formats", ()):
        raise bad_request(
            f"response_format '{fmt}' has no encoder on this server; available: {', '.join(info.get('formats', ()))}",
            param="response_format",
        )
    if not req.input.strip():
        raise bad_request("input must contain text", param="input")
    reference = None
    if req.reference_audio is not None or req.reference_text is not None:
        reference = {"audio": req.reference_audio or "", "text": req.reference_text or ""}
    # unknown voice, bad reference: 400 before the 200 starts (and a lost replica is retried)
    first, stream = await state.start_stream(
        model,
        "speech",
        req.input,
        voice=req.voice_name(),
        speed=req.speed,
        response_format=fmt,
        sample_rate=OPENAI_PCM_RATE,
        reference=reference,
    )

    def spoken(seconds: float) -> None:
        state.metrics.audio(model.id, key_id, "out", seconds)

    if req.stream_format == "sse":
        return EventSourceResponse(_speech_events(first, stream, req.input, fmt, spoken), ping=15, sep="\n")

    async def body() -> AsyncIterator[bytes]:
        sent, seconds = 0, None
        try:
            piece = first
            while piece is not None:
                if isinstance(piece, dict):  # the replica's closing duration record
                    seconds = piece.get(SPEECH_SECONDS)
                else:
                    sent += len(piece)
                    yield piece
                piece = await next_item(stream)
        finally:
            stream.cancel()
            if seconds is None:  # cut short: what was sent, where that is exact
                seconds = sent_seconds(fmt, sent)
            if seconds is not None:
                spoken(seconds)

    headers = {"X-Requested-Response-Format": fmt, "X-Actual-Response-Format": fmt}
    return StreamingResponse(body(), media_type=CONTENT_TYPES[fmt], headers=headers)


async def _speech_events(
    first: bytes | dict | None, stream, text: str, fmt: str, spoken: Callable[[float], None]
) -> AsyncIterator[str]:
    """``speech.audio.delta`` per encoded piece, then ``speech.audio.done``; the replica's closing
    duration record goes to ``spoken`` (seconds) instead of the client. Cut short before that
    record (the client left), the seconds sent go there where they are exact (:func:`sent_seconds`)."""
    piece, out_bytes, counted = first, 0, False
    try:
        while piece is not None:
            if isinstance(piece, dict):
                spoken(float(piece.get(SPEECH_SECONDS) or 0.0))
                counted = True
            else:
                out_bytes += len(piece)
                yield SpeechAudioDeltaEvent(audio=base64.b64encode(piece).decode()).model_dump_json()
            piece = await next_item(stream)
        in_tokens = max(1, len(text.split()))
        out_tokens = max(1, out_bytes // 1024)
        usage = SpeechUsage(input_tokens=in_tokens, output_tokens=out_tokens, total_tokens=in_tokens + out_tokens)
        yield SpeechAudioDoneEvent(usage=usage).model_dump_json()
    except Exception as exc:  # mid-stream failure: the status line is already sent; no *.done event
        logger.error("audio stream failed after it started: %r", exc)
        yield json.dumps({"type": "error", **stream_error(exc)})
    finally:
        stream.cancel()
        if not counted and (seconds := sent_seconds(fmt, out_bytes)) is not None:
            spoken(seconds)


@router.get("/v1/audio/voices", response_model=ListVoicesResponse)
async def list_voices(state: IngressState = Depends(get_state)) -> ListVoicesResponse:
    """The voices of each text-to-speech model (the first is its default)."""
    data = []
    for model in state.config.models_of("tts"):
        info = await state.model_info(model)
        data.append(
            VoiceList(
                model=model.id,
                voices=info.get("voices", []),
                default_voice=info.get("default_voice"),
                supports_voice_cloning=info.get("supports_voice_cloning", False),
            )
        )
    return ListVoicesResponse(data=data)

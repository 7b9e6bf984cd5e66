"""Realtime wire events: names and constructors, for sessions and admission alike.

The default names are the OpenAI Realtime *beta* names that the Naia clients read
(``response.audio.delta``, ``response.text.delta``, ``conversation.item.created``...). A session
whose ``session.update`` is GA-shaped (``session.type: "realtime"``) gets OpenAI's GA names
instead (``response.output_audio.delta``, ``conversation.item.added`` / ``done``...). Naia's
extensions (``emotion.updated``, ``response.cancelled``, ``session.*`` admission events) are the
same in both.

Client events are parsed into typed pydantic models named after OpenAI's schemas (below):
a field of the wrong type or value becomes one :class:`ClientError` naming it, so the session
answers with one ``error`` event and keeps its state. (Over 300 lines because the wire schema
stays in one module, as the contract asks: one small model per OpenAI schema.)
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: beta/Naia name -> GA name, for the events whose name changed.
GA_NAMES = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "conversation.item.created": "conversation.item.added",
}

#: content part types: beta -> GA
GA_PART_TYPES = {"audio": "output_audio", "text": "output_text"}


class ClientError(Exception):
    """A client event that cannot be processed: answered with one ``error`` event
    (:func:`error_event`, ``type`` ``invalid_request_error``); the session stays open.

    Args:
        message: plain words for a person.
        code: the error's ``code`` (``invalid_audio``, ``item_not_found``...).
        param: the field at fault, or ``None``.
    """

    def __init__(self, message: str, code: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def new_id(prefix: str) -> str:
    """OpenAI-style ids: ``event_…``, ``item_…``, ``resp_…``, ``sess_…``, ``call_…``."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def event(type: str, **fields: Any) -> dict:
    """A server event with a fresh ``event_id``."""
    return {"type": type, "event_id": new_id("event"), **fields}


def error_event(
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    client_event_id: str | None = None,
) -> dict:
    """OpenAI's realtime ``error`` event (``RealtimeServerEventError``): the one constructor for
    every realtime error, in a session (which stays open) and in admission (before a close code).

    Args:
        message: plain words for a person.
        type: OpenAI's error type (``invalid_request_error``, ``authentication_error``,
            ``server_error``...).
        code: a machine-readable code (``invalid_json``, ``invalid_api_key``...), or ``None``.
        param: the field at fault (``session.temperature``), or ``None``.
        client_event_id: the ``event_id`` of the client event that caused it, or ``None``.
    """
    return event(
        "error", error={"type": type, "code": code, "message": message, "param": param, "event_id": client_event_id}
    )


# ----------------------------------------------------------------------------- client events
# Typed models of the client events, named after OpenAI's schemas (openapi.yaml,
# ``RealtimeClientEvent*``, ``RealtimeSessionCreateRequest[GA]``, ``RealtimeTurnDetection``).
# Unknown fields are ignored, as OpenAI does; types are strict (``"0.5"`` is not a number).


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


_M = TypeVar("_M", bound=_Wire)


class ServerVad(_Wire):
    """``turn_detection: {"type": "server_vad"}``: silence ends the turn. ``silence_duration_ms``
    stays ``None`` when the client does not set it (the default of 500 ms applies, and the
    operator's ``server_vad_semantic_end`` may end the turn earlier)."""

    type: Literal["server_vad"] = "server_vad"
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    prefix_padding_ms: int = Field(300, ge=0, le=10_000)
    silence_duration_ms: int | None = Field(None, ge=0, le=10_000)
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None


class SemanticVad(_Wire):
    """``turn_detection: {"type": "semantic_vad", "eagerness"}``: an end-of-turn model decides;
    ``eagerness`` bounds the wait for an unfinished utterance (:data:`EAGERNESS_MAX_WAIT_MS`)."""

    type: Literal["semantic_vad"]
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True


#: OpenAI's ``semantic_vad`` eagerness -> longest wait (ms) for an unfinished utterance: "low,
#: medium, and high have max timeouts of 8s, 4s, and 2s respectively"; auto is medium.
EAGERNESS_MAX_WAIT_MS = {"low": 8000, "medium": 4000, "high": 2000, "auto": 4000}

RealtimeTurnDetection = Annotated[ServerVad | SemanticVad, Field(discriminator="type")]


class RealtimeFunctionTool(_Wire):
    type: Literal["function"] = "function"
    name: str = Field(min_length=1)
    description: str = ""
    parameters: dict = Field(default_factory=lambda: {"type": "object"})


class ToolChoiceFunction(_Wire):
    type: Literal["function"]
    name: str


ToolChoice = Literal["auto", "none", "required"] | ToolChoiceFunction
MaxTokens = Annotated[int, Field(ge=1, le=4096)] | Literal["inf"]
Modalities = Annotated[list[Literal["text", "audio"]], Field(min_length=1)]


class Transcription(_Wire):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class VoiceId(_Wire):
    id: str = Field(min_length=1)


Voice = Annotated[str, Field(min_length=1)] | VoiceId


class RealtimeSessionCreateRequest(_Wire):
    """The beta ``session`` of ``session.update`` (with Naia's ``ref_audio`` / ``ref_audio_url``
    and omniserve's ``pipeline`` extension fields). ``None`` means "not given"."""

    model: str | None = None
    modalities: Modalities | None = None
    instructions: str | None = None
    voice: Voice | None = None
    input_audio_format: Literal["pcm16"] | None = None
    output_audio_format: Literal["pcm16"] | None = None
    input_audio_transcription: Transcription | None = None
    turn_detection: RealtimeTurnDetection | None = None
    tools: list[RealtimeFunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_response_output_tokens: MaxTokens | None = None
    ref_audio: str | None = None
    ref_audio_url: str | None = None
    pipeline: Literal["speculative", "sequential"] | None = None


class AudioFormat(_Wire):
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[24000] = 24000


class AudioInput(_Wire):
    format: AudioFormat | None = None
    transcription: Transcription | None = None
    turn_detection: RealtimeTurnDetection | None = None


class AudioOutput(_Wire):
    format: AudioFormat | None = None
    voice: Voice | None = None
    speed: float | None = Field(None, gt=0.0, le=4.0)


class Audio(_Wire):
    input: AudioInput | None = None
    output: AudioOutput | None = None


class RealtimeSessionCreateRequestGA(_Wire):
    """The GA ``session`` of ``session.update`` (``type: "realtime"``), with the same
    extension fields as the beta shape."""

    type: Literal["realtime"] = "realtime"
    model: str | None = None
    output_modalities: Modalities | None = None
    instructions: str | None = None
    audio: Audio | None = None
    tools: list[RealtimeFunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    max_output_tokens: MaxTokens | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)  # beta's, still honoured
    ref_audio: str | None = None
    ref_audio_url: str | None = None
    pipeline: Literal["speculative", "sequential"] | None = None


def is_ga_session(session: dict) -> bool:
    """Whether a ``session.update`` payload is GA-shaped (``type: "realtime"``, ``audio`` or
    ``output_modalities``), which switches the session to OpenAI's GA event names."""
    return session.get("type") == "realtime" or isinstance(session.get("audio"), dict) or "output_modalities" in session


def parse_session(session: Any) -> RealtimeSessionCreateRequest | RealtimeSessionCreateRequestGA:
    """Validate the ``session`` object of a ``session.update`` as a whole.

    Raises:
        ClientError: not an object, or a field of the wrong type or value (``param`` names
            the first field at fault, e.g. ``session.turn_detection.threshold``).
    """
    if not isinstance(session, dict):
        raise ClientError("session.update needs a 'session' object", param="session")
    model = RealtimeSessionCreateRequestGA if is_ga_session(session) else RealtimeSessionCreateRequest
    return validate(model, session, "session")


def validate(model: type[_M], data: Any, prefix: str) -> _M:
    """``model.model_validate(data)``, with a validation error turned into one
    :class:`ClientError` naming the first field at fault (``prefix.field...``) in plain words.

    Raises:
        ClientError: ``data`` does not fit ``model``.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and (p in _UNION_TAGS or "[" in p or "-" in p))]
        param = ".".join(p for p in [prefix, *loc] if p) or None
        raise ClientError(f"{param or 'the event'}: {_plain(err)}", param=param) from None


#: union branch names pydantic puts into error locations (not field names)
_UNION_TAGS = {
    "server_vad",
    "semantic_vad",
    "function",
    "str",
    "int",
    "literal",
    "list",
    "VoiceId",
    "ToolChoiceFunction",
}


def _plain(err: dict) -> str:
    kind, msg = err.get("type", ""), err.get("msg", "invalid value")
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return "unknown or missing 'type' (expected one of: server_vad, semantic_vad)"
    if kind == "model_type" or kind == "dict_type":
        return "must be an object"
    return msg[0].lower() + msg[1:] if msg else "invalid value"


class ContentPart(_Wire):
    """A content part of a conversation item: ``input_text`` / ``text`` / ``output_text``
    carry ``text``; ``input_audio`` / ``audio`` carry base64 PCM16 ``audio`` (24 kHz)."""

    type: Literal["input_text", "text", "output_text", "input_audio", "audio", "output_audio"]
    text: str | None = None
    audio: str | None = None
    transcript: str | None = None


class RealtimeConversationItem(_Wire):
    """An item of ``conversation.item.create``: a ``message``, a ``function_call`` or its
    ``function_call_output``."""

    id: str | None = None
    type: Literal["message", "function_call", "function_call_output"] = "message"
    role: Literal["user", "assistant", "system"] = "user"
    content: list[ContentPart] = Field(default_factory=list)
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None


class RealtimeClientEventConversationItemCreate(_Wire):
    type: Literal["conversation.item.create"]
    previous_item_id: str | None = None
    item: RealtimeConversationItem


class RealtimeClientEventConversationItemTruncate(_Wire):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: int = Field(0, ge=0)
    audio_end_ms: int = Field(ge=0)


class RealtimeClientEventConversationItemDelete(_Wire):
    type: Literal["conversation.item.delete"]
    item_id: str


class RealtimeClientEventConversationItemRetrieve(_Wire):
    type: Literal["conversation.item.retrieve"]
    item_id: str


class RealtimeClientEventInputAudioBufferAppend(_Wire):
    type: Literal["input_audio_buffer.append"]
    audio: str


class RealtimeResponseCreateParams(_Wire):
    """The optional ``response`` of ``response.create`` (per-response overrides)."""

    modalities: Modalities | None = None
    output_modalities: Modalities | None = None
    instructions: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_output_tokens: MaxTokens | None = None
    max_response_output_tokens: MaxTokens | None = None


class RealtimeClientEventResponseCreate(_Wire):
    type: Literal["response.create"]
    response: RealtimeResponseCreateParams | None = None


#: client event type -> its typed model (events without fields are dispatched by name alone:
#: ``input_audio_buffer.commit`` / ``clear``, ``response.cancel``, ``output_audio_buffer.clear``)
CLIENT_EVENTS: dict[str, type[_Wire]] = {
    "conversation.item.create": RealtimeClientEventConversationItemCreate,
    "conversation.item.truncate": RealtimeClientEventConversationItemTruncate,
    "conversation.item.delete": RealtimeClientEventConversationItemDelete,
    "conversation.item.retrieve": RealtimeClientEventConversationItemRetrieve,
    "input_audio_buffer.append": RealtimeClientEventInputAudioBufferAppend,
    "response.create": RealtimeClientEventResponseCreate,
}


def parse_client_event(message: dict) -> Any:
    """The typed model of a client event (``message`` itself for events without fields).

    Raises:
        ClientError: a field of the wrong type or value (``param`` names it).
    """
    model = CLIENT_EVENTS.get(message.get("type"))
    return message if model is None else validate(model, message, "")

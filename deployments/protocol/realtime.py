"""Realtime wire events: names and constructors, for sessions and admission alike.

The default names are the OpenAI Realtime *beta* names that the Naia clients read
(``response.audio.delta``, ``response.text.delta``, ``conversation.item.created``...). A session
whose ``session.update`` is GA-shaped (``session.type: "realtime"``) gets OpenAI's GA names
instead (``response.output_audio.delta``, ``conversation.item.added`` / ``done``...). Naia's
extensions (``emotion.updated``, ``response.cancelled``, ``session.*`` admission events) are the
same in both.

Client events are parsed into typed pydantic models named after OpenAI's schemas: a field of
the wrong type or value becomes one :class:`ClientError` naming it, so the session answers with
one ``error`` event and keeps its state. Server events are typed models too
(:class:`RealtimeServerEvent` and its subclasses), sent with :meth:`RealtimeServerEvent.to_wire`,
which applies the GA renaming. :func:`error_event` is the one constructor of ``error`` events.
(Over 300 lines because the realtime wire schema stays in one module: one small model per
OpenAI schema, client and server events side by side.)
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployments.protocol.fields import omitted_when_none

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
    detail = RealtimeErrorDetail(type=type, code=code, message=message, param=param, event_id=client_event_id)
    return RealtimeServerEventError(error=detail).to_wire()


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


# ----------------------------------------------------------------------------- server events
# Typed models of every event the server sends, named after OpenAI's schemas
# (``RealtimeServerEvent*``, beta names) and, for Naia's extensions, after the same pattern.
# ``type`` holds the beta/Naia name; :meth:`RealtimeServerEvent.to_wire` renames it for a GA
# session (:data:`GA_NAMES`). Items, responses, sessions and content parts stay plain objects
# here: their shapes are built by the conversation and response modules, and tests check them
# against OpenAI's schemas.


class RealtimeServerEvent(BaseModel):
    """Base of every server event: ``type`` and a fresh ``event_id``. Construction validates the
    fields (a wrong one is a bug here, not a client error)."""

    model_config = ConfigDict(extra="forbid")

    type: str
    event_id: str = Field(default_factory=lambda: new_id("event"))

    def to_wire(self, ga: bool = False) -> dict:
        """The event as sent: a JSON-ready dict, with the GA name when ``ga``."""
        wire = self.model_dump(mode="json")
        if ga:
            wire["type"] = GA_NAMES.get(wire["type"], wire["type"])
        return wire


Object = dict[str, Any]


# -- session and errors
class RealtimeServerEventSessionCreated(RealtimeServerEvent):
    type: Literal["session.created"] = "session.created"
    session: Object = Field(default_factory=dict)


class RealtimeServerEventSessionUpdated(RealtimeServerEvent):
    type: Literal["session.updated"] = "session.updated"
    session: Object


class RealtimeServerEventSessionNotice(RealtimeServerEvent):
    """omniserve: a setting was accepted but cannot take effect (e.g. ``voice_cloning_unsupported``)."""

    type: Literal["session.notice"] = "session.notice"
    code: str
    message: str


class RealtimeErrorDetail(BaseModel):
    """``event_id``: the client event at fault, or ``None``."""

    type: str
    code: str | None = None
    message: str
    param: str | None = None
    event_id: str | None = None


class RealtimeServerEventError(RealtimeServerEvent):
    type: Literal["error"] = "error"
    error: RealtimeErrorDetail


# -- admission (docs/admission.md): status events before a close code
class RealtimeServerEventSessionWaiting(RealtimeServerEvent):
    """``session.queued`` / ``session.preparing``: ``position`` 0-based, ``queue_len`` every waiter
    (this one included), ``eta_s`` seconds and ``provider`` when known (left out otherwise)."""

    type: Literal["session.queued", "session.preparing"]
    position: int = Field(ge=0)
    queue_len: int = Field(ge=0)
    reservation_token: str
    instance: str | None = None
    eta_s: int | float | None = omitted_when_none()
    provider: str | None = omitted_when_none()


class RealtimeServerEventSessionSoldOut(RealtimeServerEvent):
    type: Literal["session.sold_out"] = "session.sold_out"
    retry_after_s: int | float
    tier_a_hint: str | None = None
    reason: str


class RealtimeServerEventSessionConsentRequired(RealtimeServerEvent):
    type: Literal["session.consent_required"] = "session.consent_required"
    branches: list[Literal["replace", "add"]]
    live_sessions: int
    message: str


class RealtimeServerEventSessionError(RealtimeServerEvent):
    """Admitted, but the backend cannot be reached (close 4503)."""

    type: Literal["session.error"] = "session.error"
    error: Object


# -- input audio buffer
class RealtimeServerEventInputAudioBufferSpeechStarted(RealtimeServerEvent):
    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class RealtimeServerEventInputAudioBufferSpeechStopped(RealtimeServerEvent):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class RealtimeServerEventInputAudioBufferCommitted(RealtimeServerEvent):
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    previous_item_id: str | None = None
    item_id: str


class RealtimeServerEventInputAudioBufferCleared(RealtimeServerEvent):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class RealtimeServerEventOutputAudioBufferCleared(RealtimeServerEvent):
    type: Literal["output_audio_buffer.cleared"] = "output_audio_buffer.cleared"
    response_id: str | None = None


# -- conversation
class RealtimeServerEventConversationItemCreated(RealtimeServerEvent):
    """``conversation.item.created`` (GA: ``conversation.item.added``), or GA's
    ``conversation.item.done`` with the same fields."""

    type: Literal["conversation.item.created", "conversation.item.done"] = "conversation.item.created"
    previous_item_id: str | None = None
    item: Object


class RealtimeServerEventConversationItemRetrieved(RealtimeServerEvent):
    type: Literal["conversation.item.retrieved"] = "conversation.item.retrieved"
    item: Object


class RealtimeServerEventConversationItemTruncated(RealtimeServerEvent):
    type: Literal["conversation.item.truncated"] = "conversation.item.truncated"
    item_id: str
    content_index: int
    audio_end_ms: int


class RealtimeServerEventConversationItemDeleted(RealtimeServerEvent):
    type: Literal["conversation.item.deleted"] = "conversation.item.deleted"
    item_id: str


class RealtimeServerEventConversationItemInputAudioTranscriptionCompleted(RealtimeServerEvent):
    """``usage``: OpenAI's duration usage (``{"type": "duration", "seconds"}``)."""

    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed"
    )
    item_id: str
    content_index: int = 0
    transcript: str
    usage: Object | None = omitted_when_none()


class RealtimeServerEventConversationItemInputAudioTranscriptionFailed(RealtimeServerEvent):
    type: Literal["conversation.item.input_audio_transcription.failed"] = (
        "conversation.item.input_audio_transcription.failed"
    )
    item_id: str
    content_index: int = 0
    error: Object


# -- responses
class RealtimeServerEventResponseCreated(RealtimeServerEvent):
    type: Literal["response.created"] = "response.created"
    response: Object


class RealtimeServerEventResponseDone(RealtimeServerEvent):
    """The end of a response (``status`` completed, cancelled, incomplete or failed), with
    omniserve's per-turn latency breakdown in ``response.metadata``."""

    type: Literal["response.done"] = "response.done"
    response: Object


class RealtimeServerEventResponseCancelled(RealtimeServerEvent):
    """Naia: the response was stopped (barge-in, ``response.cancel``); ``response.done`` follows."""

    type: Literal["response.cancelled"] = "response.cancelled"
    response_id: str
    reason: str


class RealtimeServerEventResponseOutputItem(RealtimeServerEvent):
    """``response.output_item.added`` / ``response.output_item.done``."""

    type: Literal["response.output_item.added", "response.output_item.done"]
    response_id: str
    output_index: int
    item: Object


class RealtimeServerEventResponseContentPart(RealtimeServerEvent):
    """``response.content_part.added`` / ``response.content_part.done``."""

    type: Literal["response.content_part.added", "response.content_part.done"]
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    part: Object


class _ContentEvent(RealtimeServerEvent):
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0


class RealtimeServerEventResponseDelta(_ContentEvent):
    """A streamed piece of a response's content: ``response.text.delta``,
    ``response.audio_transcript.delta``, or ``response.audio.delta`` (``delta`` base64 PCM16
    mono 24 kHz)."""

    type: Literal["response.text.delta", "response.audio_transcript.delta", "response.audio.delta"]
    delta: str


class RealtimeServerEventResponseTextDone(_ContentEvent):
    type: Literal["response.text.done"] = "response.text.done"
    text: str


class RealtimeServerEventResponseAudioTranscriptDone(_ContentEvent):
    type: Literal["response.audio_transcript.done"] = "response.audio_transcript.done"
    transcript: str


class RealtimeServerEventResponseAudioDone(_ContentEvent):
    type: Literal["response.audio.done"] = "response.audio.done"


class RealtimeServerEventResponseFunctionCallArgumentsDelta(RealtimeServerEvent):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    delta: str


class RealtimeServerEventResponseFunctionCallArgumentsDone(RealtimeServerEvent):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    name: str
    arguments: str


class RealtimeServerEventEmotionUpdated(RealtimeServerEvent):
    """Naia: one per emotion / prosody tag in the answer (docs/realtime.md): ``state`` the tag's
    name in lowercase, ``tag`` as written, ``known`` whether it is in the vocabulary."""

    type: Literal["emotion.updated"] = "emotion.updated"
    state: str
    tag: str
    known: bool

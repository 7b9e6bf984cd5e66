"""``/v1/audio/*``: OpenAI's ``CreateTranscriptionRequest`` (the fields besides the file),
``CreateTranscriptionResponseJson`` / ``…VerboseJson`` and the ``transcript.text.*`` stream events;
``CreateSpeechRequest`` and the ``speech.audio.*`` stream events; the voice list.

Audio itself is never typed here: uploads are bytes, and speech is encoded by the TTS deployment
(24 kHz mono, ``models.audio.OPENAI_PCM_RATE``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from deployments.protocol.fields import omitted_when_none

TranscriptionFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
#: Key of the last item of the TTS deployment's ``speech`` stream, ``{SPEECH_SECONDS: s}``: the
#: seconds of audio synthesised (exact for every format, counted before encoding). Between the
#: replica and the ingress only; never sent to a client.
SPEECH_SECONDS = "audio_seconds"


# ---------------------------------------------------------------------------- transcriptions
class CreateTranscriptionRequest(BaseModel):
    """The fields of a transcription or translation request besides its audio (a multipart form
    with ``file``, or JSON with ``audio_base64``: the route reads the body itself)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    language: str | None = Field(None, max_length=32)
    prompt: str | None = None
    temperature: float = Field(0.0, ge=0, le=1)
    response_format: TranscriptionFormat = "json"
    timestamp_granularities: list[Literal["word", "segment"]] = Field(default_factory=lambda: ["segment"])
    stream: bool = False


class TranscriptionUsage(BaseModel):
    """Billed by audio duration: ``seconds`` rounded, at least 1 (OpenAI's ``duration`` usage)."""

    type: Literal["duration"] = "duration"
    seconds: int

    @classmethod
    def of(cls, duration_s: float) -> TranscriptionUsage:
        return cls(seconds=max(1, round(duration_s)))


class CreateTranscriptionResponseJson(BaseModel):
    text: str
    usage: TranscriptionUsage


class TranscriptionSegment(BaseModel):
    """One decoded segment; ``start`` / ``end`` in seconds."""

    id: int
    seek: int = 0
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0


class TranscriptionWord(BaseModel):
    """One word; ``start`` / ``end`` in seconds."""

    word: str
    start: float
    end: float


class CreateTranscriptionResponseVerboseJson(BaseModel):
    """``segments`` and ``words`` are there only when ``timestamp_granularities[]`` asked for
    them; ``duration`` in seconds."""

    task: Literal["transcribe", "translate"]
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = omitted_when_none()
    words: list[TranscriptionWord] | None = omitted_when_none()
    usage: TranscriptionUsage


class TranscriptTextDeltaEvent(BaseModel):
    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TranscriptTextDoneEvent(BaseModel):
    """OpenAI's fields plus Izwi's ``language`` and ``audio_duration_secs`` (seconds)."""

    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str
    language: str
    audio_duration_secs: float


# ------------------------------------------------------------------------------------ speech
class CreateSpeechRequest(BaseModel):
    """OpenAI's ``CreateSpeechRequest`` plus Izwi's voice-cloning fields
    (``reference_audio`` base64 + ``reference_text``); ``speed`` 0.25–4 as OpenAI bounds it."""

    model_config = ConfigDict(extra="allow")

    model: str
    input: str = Field(..., min_length=1, max_length=4096)
    voice: str | dict[str, Any] | None = None
    instructions: str | None = None
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["sse", "audio"] = "audio"
    reference_audio: str | None = None
    reference_text: str | None = None

    def voice_name(self) -> str | None:
        """The voice id, from a name or OpenAI's ``{"id": ...}`` object."""
        if isinstance(self.voice, dict):
            return self.voice.get("id")
        return self.voice


class SpeechAudioDeltaEvent(BaseModel):
    """``audio``: base64 of one chunk in the requested ``response_format``."""

    type: Literal["speech.audio.delta"] = "speech.audio.delta"
    audio: str


class SpeechUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class SpeechAudioDoneEvent(BaseModel):
    type: Literal["speech.audio.done"] = "speech.audio.done"
    usage: SpeechUsage


class VoiceList(BaseModel):
    """The voices of one text-to-speech model; the first is its default."""

    object: Literal["voice_list"] = "voice_list"
    model: str
    voices: list[Any]
    default_voice: str | None
    supports_voice_cloning: bool = False


class ListVoicesResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoiceList]

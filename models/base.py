"""Role interfaces shared by every model backend.

A *role* is what a model does for the stack: ``llm`` (chat), ``embeddings``, ``stt``
(speech-to-text), ``tts`` (text-to-speech) and ``vad`` (voice activity detection). Each role has
one small protocol here and one module (package) under ``models/`` with one class per backend.

Conventions every backend follows:

- Backends are plain Python objects: no Ray, no HTTP. They are constructed with keyword
  arguments (``source`` first, see :mod:`models.sources`) and their methods are *blocking*; the
  Ray Serve deployments run them in worker threads so the event loop stays free.
- Audio crossing a role boundary is ``numpy.float32`` mono PCM in ``[-1, 1]`` with its sample
  rate in Hz stated next to it (:class:`Audio`). Resampling and codecs live in
  :mod:`models.audio`.
- Long-running methods take a :class:`threading.Event` ``cancel``; when it is set the backend
  stops at its next step (one decoded token, one synthesised sentence) and returns.
- Bad input raises :class:`InvalidInput` (a client mistake, mapped to HTTP 400); anything else a
  backend raises is a server fault.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

ROLES = ("llm", "embeddings", "stt", "tts", "vad")


class InvalidInput(ValueError):
    """The caller's input cannot be processed (bad audio, empty text, unsupported option).

    ``param`` names the offending request field when there is one, as OpenAI's error envelope
    does (``error.param``).
    """

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class Unsupported(InvalidInput):
    """The request asks for a capability this backend does not have (e.g. voice cloning)."""


@dataclass
class Audio:
    """Mono PCM audio.

    Attributes:
        samples: ``float32`` array of shape ``(n,)`` with values in ``[-1, 1]``.
        sample_rate: samples per second (Hz).
    """

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / float(self.sample_rate) if self.sample_rate else 0.0


# --------------------------------------------------------------------------------------------
# llm
# --------------------------------------------------------------------------------------------


@dataclass
class GenerationParams:
    """Sampling settings for one chat generation (OpenAI chat-completions semantics).

    Attributes:
        max_tokens: upper bound on generated tokens.
        temperature: ``0`` means greedy decoding; OpenAI's range is ``[0, 2]``; ``None`` (the
            request left it unset): the model's own generation config decides (greedy when it
            does not sample).
        top_p: nucleus sampling mass in ``(0, 1]``; ``None``: the model's generation config.
        stop: strings that end generation; the stop string itself is not returned.
        seed: makes sampling reproducible for the same prompt and settings.
        max_tokens_param: the request field that asked for ``max_tokens`` (``"max_tokens"`` or
            ``"max_completion_tokens"``), or ``None`` when the caller left the bound to the server.
            A bound the caller asked for that cannot fit the context window is refused
            (:class:`InvalidInput` naming this field, as OpenAI answers); one the server chose is
            shortened to fit.
    """

    max_tokens: int = 256
    temperature: float | None = 1.0
    top_p: float | None = 1.0
    stop: Sequence[str] = ()
    seed: int | None = None
    max_tokens_param: str | None = None


@dataclass
class GenerationChunk:
    """One streamed piece of a generation.

    ``text`` is the newly decoded text (may be empty on the final chunk). The final chunk has
    ``finish_reason`` set (``"stop"``, ``"length"`` or ``"tool_calls"``) and the token counts of
    the whole generation.
    """

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@runtime_checkable
class ChatBackend(Protocol):
    """A chat LLM: OpenAI-style messages in, streamed text out."""

    def generate(
        self,
        messages: list[dict],
        params: GenerationParams,
        tools: list[dict] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[GenerationChunk]:
        """Stream a reply to ``messages`` (OpenAI chat message dicts).

        Yields text chunks as tokens are decoded, then one final chunk with ``finish_reason``
        and usage. Stops early (``finish_reason="stop"``) when ``cancel`` is set.
        """
        ...


# --------------------------------------------------------------------------------------------
# embeddings
# --------------------------------------------------------------------------------------------


@dataclass
class EmbeddingResult:
    """Embeddings of a batch of inputs.

    Attributes:
        vectors: ``float32`` array of shape ``(n_inputs, dimensions)``, L2-normalised.
        prompt_tokens: tokens consumed by all inputs together (OpenAI ``usage.prompt_tokens``).
    """

    vectors: np.ndarray
    prompt_tokens: int


@runtime_checkable
class EmbeddingBackend(Protocol):
    """A text embedding model."""

    dimensions: int

    def embed(self, texts: list[str]) -> EmbeddingResult:
        """Embed ``texts`` (non-empty list of strings) into L2-normalised vectors."""
        ...


# --------------------------------------------------------------------------------------------
# stt
# --------------------------------------------------------------------------------------------


@dataclass
class Word:
    """One recognised word with its time span in seconds from the start of the audio."""

    word: str
    start: float
    end: float


@dataclass
class Segment:
    """One recognised segment (OpenAI ``TranscriptionSegment`` fields we can fill)."""

    id: int
    start: float
    end: float
    text: str
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    temperature: float = 0.0
    compression_ratio: float = 0.0


@dataclass
class Transcription:
    """The result of speech-to-text on one clip.

    Attributes:
        text: full transcript.
        language: ISO-639-1 code detected or given.
        duration: clip length in seconds.
        segments: time-aligned segments.
        words: time-aligned words (empty unless word timestamps were requested and supported).
    """

    text: str
    language: str
    duration: float
    segments: list[Segment] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)


def collect_transcription(items: Iterable[Segment | Transcription]) -> Transcription:
    """The final :class:`Transcription` of a ``transcribe_stream`` (segments, then the result):
    how backends with a streaming decoder implement ``transcribe``.

    Raises:
        RuntimeError: the stream ended without a :class:`Transcription`.
    """
    result = None
    for item in items:
        if isinstance(item, Transcription):
            result = item
    if result is None:
        raise RuntimeError("transcription stream ended without a result")
    return result


@runtime_checkable
class STTBackend(Protocol):
    """A speech-to-text model."""

    #: Sample rate (Hz) the model expects; callers resample to it.
    sample_rate: int
    #: Whether ``transcribe(task="translate")`` is available (Whisper multilingual).
    can_translate: bool

    def transcribe(
        self,
        audio: np.ndarray,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
        word_timestamps: bool = False,
        task: str = "transcribe",
    ) -> Transcription:
        """Transcribe ``audio`` (float32 mono at :attr:`sample_rate`)."""
        ...


# --------------------------------------------------------------------------------------------
# tts
# --------------------------------------------------------------------------------------------


@dataclass
class VoiceReference:
    """A reference clip for voice cloning, with its transcript (``reference_text``)."""

    audio: Audio
    text: str


@runtime_checkable
class TTSBackend(Protocol):
    """A text-to-speech model."""

    #: Sample rate (Hz) of the audio this backend produces.
    sample_rate: int
    #: Whether ``reference`` is honoured (voice cloning).
    supports_voice_cloning: bool

    def voices(self) -> list[str]:
        """Names accepted as ``voice`` (the first is the default)."""
        ...

    def synthesize(
        self,
        text: str,
        voice: str | None = None,
        speed: float = 1.0,
        reference: VoiceReference | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[np.ndarray]:
        """Stream float32 mono chunks at :attr:`sample_rate` for ``text``.

        Raises :class:`InvalidInput` for an unknown voice and :class:`Unsupported` for a
        ``reference`` when voice cloning is not supported.
        """
        ...


# --------------------------------------------------------------------------------------------
# vad
# --------------------------------------------------------------------------------------------


@runtime_checkable
class VADBackend(Protocol):
    """Frame-level voice activity detection with one recurrent state per audio stream."""

    #: Sample rate (Hz) frames must have.
    sample_rate: int
    #: Samples per frame.
    frame_size: int

    def new_state(self) -> object:
        """A fresh recurrent state for one stream."""
        ...

    def speech_probs(self, frames: np.ndarray, states: list[object]) -> tuple[np.ndarray, list[object]]:
        """Score one frame for each of ``len(states)`` streams at once.

        Args:
            frames: float32 array of shape ``(n_streams, frame_size)``.
            states: one state per stream, from :meth:`new_state` or a previous call.

        Returns:
            ``(probs, new_states)``: speech probabilities of shape ``(n_streams,)`` in
            ``[0, 1]`` and the updated states.
        """
        ...

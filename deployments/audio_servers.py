"""Serve deployments for the audio roles: speech-to-text, text-to-speech, voice activity.

Decoding uploads, resampling and encoding speech happen here, next to the model, so the ingress
stays light: it forwards bytes and gets bytes (or PCM arrays, for the realtime engine) back.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import threading
import unicodedata
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
from ray import serve

from deployments.protocol.audio import SPEECH_SECONDS
from deployments.servers import _ModelServer, iterate_in_thread
from deployments.tracing import replica
from models.audio import StreamEncoder, StreamResampler, available_formats, decode_audio, resample
from models.base import Audio, InvalidInput, Transcription, Unsupported, VoiceReference
from models.vad.smart_turn import SmartTurn


def _transcription_dict(t: Transcription) -> dict:
    """The transcription as a dict, with ``language_name`` (Whisper's English name of the
    language, e.g. ``"english"``), which OpenAI's ``verbose_json`` reports as ``language``."""
    out = dataclasses.asdict(t)
    out["language_name"] = _language_name(t.language)
    return out


def _language_name(code: str) -> str:
    try:
        from transformers.models.whisper.tokenization_whisper import LANGUAGES
    except ImportError:  # pragma: no cover - transformers is a dependency
        return code
    return LANGUAGES.get(code, code)


@serve.deployment
class STTServer(_ModelServer):
    """Speech-to-text. Input is an encoded upload (``data`` + ``filename``) or PCM
    (``samples`` float32 at ``sample_rate`` Hz); either is resampled to the model's rate."""

    role = "stt"

    def _audio(
        self, data: bytes | None, filename: str | None, samples: np.ndarray | None, sample_rate: int | None
    ) -> np.ndarray:

        if data is not None:
            audio = decode_audio(data, filename)
        elif samples is not None and sample_rate:
            audio = Audio(np.asarray(samples, dtype=np.float32).reshape(-1), int(sample_rate))
        else:
            raise InvalidInput("no audio given", param="file")
        if audio.samples.size == 0:
            raise InvalidInput("the audio is empty", param="file")
        return resample(audio.samples, audio.sample_rate, self.backend.sample_rate)

    @replica.traced
    async def transcribe(
        self,
        data: bytes | None = None,
        filename: str | None = None,
        samples: np.ndarray | None = None,
        sample_rate: int | None = None,
        **options: Any,
    ) -> dict:
        """Whole-clip transcription → :class:`models.base.Transcription` as a dict.
        ``options``: ``language``, ``prompt``, ``temperature``, ``word_timestamps``, ``task``."""

        def run() -> Transcription:
            return self.backend.transcribe(self._audio(data, filename, samples, sample_rate), **options)

        return _transcription_dict(await asyncio.to_thread(run))

    @replica.traced
    async def transcribe_stream(
        self, data: bytes | None = None, filename: str | None = None, **options: Any
    ) -> AsyncIterator[dict]:
        """Streams ``{"type": "segment", "text", "start", "end"}`` as segments decode, then
        ``{"type": "done", "transcription": {...}}``. Backends without ``transcribe_stream``
        produce one segment per whole-clip result."""

        def run(cancel: threading.Event) -> Iterator[dict]:
            audio = self._audio(data, filename, None, None)
            stream = getattr(self.backend, "transcribe_stream", None)
            if stream is None:
                result = self.backend.transcribe(audio, **options)
                items: Iterator = iter([*result.segments, result])
            else:
                items = stream(audio, cancel=cancel, **options)
            for item in items:
                if isinstance(item, Transcription):
                    yield {"type": "done", "transcription": _transcription_dict(item)}
                else:
                    yield {"type": "segment", "text": item.text, "start": item.start, "end": item.end}

        async for item in iterate_in_thread(run):
            yield item

    def info(self) -> dict:
        return {
            **super().info(),
            "sample_rate": self.backend.sample_rate,
            "can_translate": bool(getattr(self.backend, "can_translate", False)),
            "languages": list(getattr(self.backend, "languages", []) or []),
        }


@serve.deployment
class TTSServer(_ModelServer):
    """Text-to-speech. ``speech`` streams encoded bytes of a ``response_format``; ``pcm``
    streams float32 chunks at ``sample_rate`` Hz for the realtime engine."""

    role = "tts"

    def _reference(self, reference: dict | None) -> VoiceReference | None:
        """``{"audio": base64 or bytes, "text": str}`` → :class:`VoiceReference`."""
        if not reference:
            return None

        raw = reference.get("audio")
        if isinstance(raw, str):
            try:
                raw = base64.b64decode(raw, validate=True)
            except ValueError as exc:
                raise InvalidInput("reference_audio is not valid base64", param="reference_audio") from exc
        if not raw:
            raise InvalidInput("reference_audio is empty", param="reference_audio")
        text = (reference.get("text") or "").strip()
        if not text:
            raise InvalidInput(
                "reference_text is required with reference_audio (the transcript of the clip)", param="reference_text"
            )
        try:
            audio = decode_audio(raw, reference.get("filename"))
        except InvalidInput as exc:
            raise InvalidInput(f"reference_audio: {exc.message}", param="reference_audio") from exc
        return VoiceReference(audio=audio, text=text)

    def _check_cloning(self, reference: dict | None) -> None:
        if reference and not getattr(self.backend, "supports_voice_cloning", False):
            raise Unsupported(
                f"model '{self.model_id}' cannot clone voices; omit reference_audio", param="reference_audio"
            )

    @replica.traced
    async def speech(
        self,
        text: str,
        voice: str | None = None,
        speed: float = 1.0,
        response_format: str = "mp3",
        sample_rate: int = 24000,
        reference: dict | None = None,
    ) -> AsyncIterator[bytes]:
        """Encoded audio of ``text`` in ``response_format`` at ``sample_rate`` Hz (the encoder
        may pick the next rate it supports), streamed as it is synthesised.

        Yields:
            ``bytes`` pieces whose concatenation is the file, then one last item
            ``{SPEECH_SECONDS: s}``: the duration of the synthesised audio in seconds, exact for
            every format (counted in samples before encoding), for usage and metrics. The
            ingress reads it and never sends it to the client.

        Raises:
            InvalidInput: no speakable text (see :func:`speakable_text`), or a bad reference.
        """
        text = speakable_text(text)
        self._check_cloning(reference)
        rate = self.backend.sample_rate

        def run(cancel: threading.Event) -> Iterator[bytes | dict[str, float]]:
            ref = self._reference(reference)
            encoder = StreamEncoder(response_format, rate, out_rate=sample_rate)
            samples = 0
            for chunk in self.backend.synthesize(text, voice=voice, speed=speed, reference=ref, cancel=cancel):
                samples += len(chunk)
                out = encoder.encode(chunk)
                if out:
                    yield out
            yield encoder.finish()
            yield {SPEECH_SECONDS: samples / rate}

        async for piece in iterate_in_thread(run):
            if piece:
                yield piece

    @replica.traced
    async def pcm(
        self,
        text: str,
        voice: str | None = None,
        speed: float = 1.0,
        sample_rate: int = 24000,
        reference: dict | None = None,
    ) -> AsyncIterator[np.ndarray]:
        """float32 mono chunks of ``text`` at ``sample_rate`` Hz, one per synthesised piece."""

        text = speakable_text(text)
        self._check_cloning(reference)

        def run(cancel: threading.Event) -> Iterator[np.ndarray]:
            ref = self._reference(reference)
            resampler = StreamResampler(self.backend.sample_rate, sample_rate)
            for chunk in self.backend.synthesize(text, voice=voice, speed=speed, reference=ref, cancel=cancel):
                yield resampler.process(chunk)
            yield resampler.flush()

        async for chunk in iterate_in_thread(run):
            if chunk.size:
                yield chunk

    def info(self) -> dict:

        voices = self.backend.voices()
        return {
            **super().info(),
            "sample_rate": self.backend.sample_rate,
            "voices": voices,
            "default_voice": voices[0] if voices else None,
            "supports_voice_cloning": bool(getattr(self.backend, "supports_voice_cloning", False)),
            "formats": sorted(available_formats()),
        }


@serve.deployment
class VADServer(_ModelServer):
    """Voice activity detection, batched across streams.

    ``score(frames, state)`` runs one stream's frames (shape ``(k, frame_size)`` at
    ``sample_rate`` Hz); concurrent calls from many sessions are gathered by ``@serve.batch`` and
    stepped together so each model call scores one frame of every waiting stream.
    """

    role = "vad"

    def __init__(self, model: dict):
        # ``options.end_of_turn`` is the server's, not the VAD backend's: ``true`` (the Smart Turn
        # file in the pipecat-ai wheel), a source string, or ``false`` / absent (no semantic VAD)
        model = {**model, "options": dict(model.get("options") or {})}
        end_of_turn = model["options"].pop("end_of_turn", False)
        super().__init__(model)
        self.end_of_turn_model = None
        if end_of_turn:
            self.end_of_turn_model = SmartTurn(source=end_of_turn if isinstance(end_of_turn, str) else None)

    def new_state(self) -> Any:
        return self.backend.new_state()

    @replica.traced
    async def score(self, frames: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """Speech probabilities ``(k,)`` for one stream's ``k`` frames and its next state."""
        return await self._score_batch((np.asarray(frames, dtype=np.float32), state))

    @serve.batch(max_batch_size=256, batch_wait_timeout_s=0.002)
    async def _score_batch(self, items: list[tuple[np.ndarray, Any]]) -> list[tuple[np.ndarray, Any]]:
        return await asyncio.to_thread(self._step_all, items)

    def _step_all(self, items: list[tuple[np.ndarray, Any]]) -> list[tuple[np.ndarray, Any]]:
        states = [state if state is not None else self.backend.new_state() for _, state in items]
        probs: list[list[float]] = [[] for _ in items]
        longest = max((len(f) for f, _ in items), default=0)
        for step in range(longest):
            active = [i for i, (f, _) in enumerate(items) if step < len(f)]
            frames = np.stack([items[i][0][step] for i in active])
            p, new = self.backend.speech_probs(frames, [states[i] for i in active])
            for j, i in enumerate(active):
                probs[i].append(float(p[j]))
                states[i] = new[j]
        return [(np.asarray(probs[i], dtype=np.float32), states[i]) for i in range(len(items))]

    @replica.traced
    async def end_of_turn(self, samples: np.ndarray, sample_rate: int | None = None) -> float:
        """Probability (0–1) that the speaker finished their turn, for one stream's utterance so
        far: float32 ``(n,)`` at ``sample_rate`` Hz (default: the VAD's own rate), ending in the
        pause. Concurrent calls from many sessions are batched into one model call.

        Raises:
            InvalidInput: this VAD deployment has no end-of-turn model (``options.end_of_turn``).
        """
        if self.end_of_turn_model is None:
            raise InvalidInput("this VAD deployment has no end-of-turn model (options.end_of_turn)")
        audio = np.asarray(samples, dtype=np.float32)
        rate = int(sample_rate or self.backend.sample_rate)
        if rate != self.end_of_turn_model.sample_rate:
            audio = resample(audio, rate, self.end_of_turn_model.sample_rate)
        return await self._end_of_turn_batch(audio)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _end_of_turn_batch(self, clips: list[np.ndarray]) -> list[float]:
        probs = await asyncio.to_thread(self.end_of_turn_model.complete_probs, clips)
        return [float(p) for p in probs]

    @replica.traced
    async def speech_timestamps(self, samples: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
        """Speech spans ``[(start_s, end_s)]`` of a whole clip."""
        audio = resample(np.asarray(samples, dtype=np.float32), int(sample_rate), self.backend.sample_rate)
        return await asyncio.to_thread(self.backend.speech_timestamps, audio)

    def info(self) -> dict:
        return {
            **super().info(),
            "sample_rate": self.backend.sample_rate,
            "frame_size": self.backend.frame_size,
            "end_of_turn": self.end_of_turn_model is not None,
            "end_of_turn_rate": self.end_of_turn_model.sample_rate if self.end_of_turn_model else None,
        }


def speakable_text(text: str) -> str:
    """``text`` without what a synthesiser cannot take: control characters (Unicode category
    Cc, e.g. NUL, which espeak-ng's C API refuses) become spaces and unpaired surrogates (Cs)
    go; new lines and tabs stay.

    Raises:
        InvalidInput: nothing but white space is left (``param`` ``input``).
    """
    cleaned = "".join(
        " " if (cat := unicodedata.category(c)) == "Cc" and c not in "\n\t" else "" if cat == "Cs" else c for c in text
    )
    if not cleaned.strip():
        raise InvalidInput("input must contain text", param="input")
    return cleaned


SERVER_CLASSES = {"stt": STTServer, "tts": TTSServer, "vad": VADServer}

"""The settings of one realtime session: what ``session.update`` may change, and its parsing.

Names are OpenAI's (Realtime API session object, beta and GA shapes); ``pipeline`` is
omniserve's extension field (``speculative`` | ``sequential``, see
:class:`~deployments.config.RealtimeConfig`). :meth:`SessionSettings.apply` runs on a copy, so a
rejected update leaves the session's settings as they were (one ``error`` event naming the
field, as OpenAI answers).
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from deployments.protocol.realtime import (
    AudioInput,
    AudioOutput,
    ClientError,
    RealtimeSessionCreateRequestGA,
    parse_session,
)
from deployments.realtime.cascade import Cascade
from deployments.realtime.turns import TurnDetectionConfig
from models.audio import OPENAI_PCM_RATE


def locale_language(locale: Any) -> str | None:
    """The ISO 639-1 language of a setup frame's BCP 47 ``locale`` (``"en-US"`` -> ``"en"``), or
    ``None`` for ``"auto"``, ``"global"``, an empty or a missing locale (detect per turn)."""
    if isinstance(locale, str) and locale and locale.lower() not in ("auto", "global"):
        return locale.split("-")[0].lower()
    return None


FORMAT_RULES = (
    "You are speaking aloud in a voice conversation. Answer in one to three short spoken sentences. "
    "Where emotion shifts, you may add lowercase English bracket tags such as [laughing], [sigh], [breath], "
    "[pause] or [hesitation]. No emojis, no markdown, no parenthesised stage directions, no asterisks."
)

LANGUAGE_NAMES = {
    "en": "English",
    "ko": "Korean",
    "ja": "Japanese",
    "zh": "Chinese",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "ru": "Russian",
    "ar": "Arabic",
    "hi": "Hindi",
    "nl": "Dutch",
    "pl": "Polish",
    "tr": "Turkish",
    "vi": "Vietnamese",
    "th": "Thai",
    "id": "Indonesian",
}


@dataclass
class SessionSettings:
    """One session's settings (OpenAI's session fields; ``reference`` is the voice clone clip
    ``{"audio": base64, "text": transcript}`` and ``ga`` whether the client speaks the GA shape)."""

    model: str
    instructions: str
    max_output_tokens: int | str
    pipeline: str = "speculative"
    ga: bool = False
    modalities: list[str] = field(default_factory=lambda: ["text", "audio"])
    voice: str | None = None
    turn_detection: TurnDetectionConfig = field(default_factory=TurnDetectionConfig)
    transcription_language: str | None = None
    tools: list[dict] = field(default_factory=list)
    tool_choice: Any = "auto"
    temperature: float = 0.8
    reference: dict | None = None

    def copy(self) -> SessionSettings:
        return copy.copy(self)

    def apply_setup(self, setup: dict) -> None:
        """The Naia setup frame (docs/realtime.md) after admission: only ``locale`` changes anything."""
        language = locale_language(setup.get("locale"))
        if language:
            self.transcription_language = language

    def session_object(self, session_id: str, stt_model: str | None) -> dict:
        """The session as OpenAI describes it (beta or GA shape): ``id`` ``session_id``,
        ``stt_model`` the transcription model id (``None``: no transcription)."""
        td = self.turn_detection.to_wire()
        transcription = {"model": stt_model} if stt_model else None
        if transcription and self.transcription_language:
            transcription["language"] = self.transcription_language
        if self.ga:
            return {
                "type": "realtime",
                "object": "realtime.session",
                "id": session_id,
                "model": self.model,
                "output_modalities": ["audio"] if "audio" in self.modalities else ["text"],
                "instructions": self.instructions,
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": OPENAI_PCM_RATE},
                        "transcription": transcription,
                        "turn_detection": td,
                    },
                    "output": {
                        "format": {"type": "audio/pcm", "rate": OPENAI_PCM_RATE},
                        "voice": self.voice or "default",
                        "speed": 1.0,
                    },
                },
                "tools": self.tools,
                "tool_choice": self.tool_choice,
                "max_output_tokens": self.max_output_tokens,
            }
        return {
            "id": session_id,
            "object": "realtime.session",
            "model": self.model,
            "modalities": self.modalities,
            "instructions": self.instructions,
            "voice": self.voice or "default",
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "input_audio_transcription": transcription,
            "turn_detection": td,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "temperature": self.temperature,
            "max_response_output_tokens": self.max_output_tokens,
        }

    def apply(self, message: dict, s: dict) -> tuple[str | None, str | None] | None:
        """Apply ``session.update``'s ``session`` object ``s`` (and the GA top-level ``model``)
        to these settings in place; call it on a :meth:`copy`. ``s`` is validated as a whole
        against the typed session schema first (beta or GA shape, extra fields ignored).
        Returns ``(ref_audio, ref_audio_url)`` when a voice reference is to be resolved.

        Raises:
            ClientError: a field of the wrong type or value (``param`` names it).
        """
        m = parse_session(s)
        ga = isinstance(m, RealtimeSessionCreateRequestGA)
        self.ga = self.ga or ga
        if isinstance(message.get("model"), str):
            self.model = message["model"]
        if m.model is not None:
            self.model = m.model
        modalities = m.output_modalities if ga else m.modalities
        if modalities is not None:
            self.modalities = ["text", "audio"] if "audio" in modalities else ["text"]
        if m.instructions is not None:
            self.instructions = m.instructions
        a_in = (m.audio.input if ga and m.audio else None) or AudioInput()
        a_out = (m.audio.output if ga and m.audio else None) or AudioOutput()
        voice = a_out.voice if ga else m.voice
        if voice is not None:
            self.voice = voice if isinstance(voice, str) else voice.id
        raw_in = ((s.get("audio") or {}).get("input") or {}) if ga else {}
        td_source = raw_in if "turn_detection" in raw_in else s
        if "turn_detection" in td_source:  # explicit null turns it off
            try:
                self.turn_detection = TurnDetectionConfig.from_wire(td_source["turn_detection"], self.turn_detection)
            except ValueError as exc:
                raise ClientError(str(exc), param="session.turn_detection") from exc
        transcription = a_in.transcription if ga else m.input_audio_transcription
        if transcription is not None and transcription.language:
            self.transcription_language = transcription.language.split("-")[0].lower()
        if m.tools is not None:
            self.tools = list(s["tools"] or [])  # as sent (validated): echoed in the session object
        if m.tool_choice is not None:
            self.tool_choice = s["tool_choice"]
        if m.temperature is not None:
            self.temperature = float(m.temperature)
        limit = m.max_output_tokens if ga else m.max_response_output_tokens
        if limit is not None:
            self.max_output_tokens = limit
        if m.pipeline is not None:
            self.pipeline = m.pipeline
        if m.ref_audio or m.ref_audio_url:
            return m.ref_audio, m.ref_audio_url
        return None

    def system_prompt(self, extra_instructions: str | None, turn_language: str | None) -> str:
        """The LLM's system message: instructions, per-response ``instructions``, the spoken-format
        rules and, for a non-English turn, the reply language."""
        system = "\n\n".join(p for p in (self.instructions, extra_instructions, FORMAT_RULES) if p)
        lang = self.transcription_language or turn_language
        if lang and lang != "en" and lang in LANGUAGE_NAMES:
            system += f"\n\nReply in {LANGUAGE_NAMES[lang]}."
        return system

    def tool_specs(self) -> list[dict] | None:
        """The session's tools in the chat-completions ``tools`` shape, or ``None``."""
        if not self.tools or self.tool_choice == "none":
            return None
        return [
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "parameters": t.get("parameters", {"type": "object"}),
                },
            }
            for t in self.tools
        ]


async def resolve_reference(
    cascade: Cascade, ref_audio: str | None, ref_url: str | None, fetch: Callable[[str], Awaitable[bytes]] | None
) -> dict:
    """A voice reference from ``ref_audio`` (base64 audio) or ``ref_audio_url``:
    ``{"audio": base64, "text": its transcript}`` (the transcription also validates the clip).

    Raises:
        ClientError: ``invalid_ref_audio``, the message starting "Invalid ref_audio" (what the Naia
            clients look for).
    """
    try:
        if ref_audio:
            try:
                data = base64.b64decode(ref_audio, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError("not valid base64") from exc
        else:
            if fetch is None:
                raise ValueError("ref_audio_url is not supported here")
            data = await fetch(ref_url)
        if not data:
            raise ValueError("the reference clip is empty")
        transcript = await cascade.transcribe(data=data)
        if not transcript.get("text", "").strip():
            raise ValueError("no speech found in the reference clip")
    except ClientError:
        raise
    except Exception as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ClientError(f"Invalid ref_audio: {detail}", code="invalid_ref_audio", param="session.ref_audio") from exc
    return {"audio": base64.b64encode(data).decode(), "text": transcript["text"]}

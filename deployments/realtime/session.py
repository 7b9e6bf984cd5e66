"""One realtime voice session: settings, event dispatch and emit; it alone wires the parts.

The parts each own one piece of state: :class:`~deployments.realtime.input_audio_buffer.InputAudioBuffer`
(appended audio, server VAD, turn detection), :class:`~deployments.realtime.conversation.Conversation`
(items, truncate, LLM context) and :class:`~deployments.realtime.response.ResponsePipeline` (LLM ->
tags -> sentences -> TTS). Effects that cross them go through this class: speech start cancels a
response, speech stop commits and transcribes a turn, a tool output resumes the reply.

Still over 300 lines: the ``session.update`` parsing (beta and GA shapes, about 100 lines) and the
client-event handlers of each family live here; the typed event models of issue 10 are meant to
take the parsing out.

Event names and shapes follow OpenAI's Realtime API (beta names by default, GA names for a
GA-shaped session) with Naia's extensions (spec 000 §3–§5): ``emotion.updated``,
``response.cancelled``, ``response.done.response.requires_action`` after tool calls, errors
starting with "Invalid ref_audio" for a bad voice reference.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from typing import Any, Awaitable, Callable

import numpy as np

from deployments.config import RealtimeConfig
from deployments.realtime.cascade import Cascade
from deployments.realtime.conversation import Conversation, public as _public
from deployments.realtime.input_audio_buffer import RATE, InputAudioBuffer
from deployments.realtime.response import ResponsePipeline
from deployments.realtime.turns import TurnDetectionConfig
from deployments.realtime_protocol import GA_NAMES, GA_PART_TYPES, ClientError, error_event, event, new_id

logger = logging.getLogger("ray.serve")

#: Smallest buffer ``input_audio_buffer.commit`` accepts (OpenAI: 100 ms).
MIN_COMMIT_MS = 100

FORMAT_RULES = (
    "You are speaking aloud in a voice conversation. Answer in one to three short spoken sentences. "
    "Where emotion shifts, you may add lowercase English bracket tags such as [laughing], [sigh], [breath], "
    "[pause] or [hesitation]. No emojis, no markdown, no parenthesised stage directions, no asterisks."
)

LANGUAGE_NAMES = {
    "en": "English", "ko": "Korean", "ja": "Japanese", "zh": "Chinese", "es": "Spanish", "fr": "French",
    "de": "German", "it": "Italian", "pt": "Portuguese", "ru": "Russian", "ar": "Arabic", "hi": "Hindi",
    "nl": "Dutch", "pl": "Polish", "tr": "Turkish", "vi": "Vietnamese", "th": "Thai", "id": "Indonesian",
}

Send = Callable[[dict], Awaitable[None]]


class RealtimeSession:
    """State and behaviour of one connected client.

    Args:
        send: coroutine that sends one server event (a dict) to the client.
        cascade: the role calls (LLM, STT, TTS, VAD).
        config: the application's :class:`RealtimeConfig`.
        model: the model id the client connected with.
        locale: ISO-639-1 language pinned by the setup frame, or ``None`` (detect per turn).
        reference_fetcher: coroutine ``(url) -> bytes`` used for ``ref_audio_url``.
    """

    def __init__(self, send: Send, cascade: Cascade, config: RealtimeConfig, model: str,
                 locale: str | None = None,
                 reference_fetcher: Callable[[str], Awaitable[bytes]] | None = None):
        self._send = send
        self.cascade = cascade
        self.config = config
        self.id = new_id("sess")
        self.model = model
        self.ga = False
        # session settings (OpenAI names)
        self.modalities = ["text", "audio"]
        self.instructions = config.default_instructions
        self.voice: str | None = None
        self.turn_detection = TurnDetectionConfig()
        self.transcription_language: str | None = locale
        self.tools: list[dict] = []
        self.tool_choice: Any = "auto"
        self.temperature = 0.8
        self.max_output_tokens: int | str = config.max_response_tokens
        self.reference: dict | None = None  # {"audio": base64, "text": transcript}
        self._reference_notice_sent = False
        self._fetch_reference = reference_fetcher
        self.conversation = Conversation()
        self.responses = ResponsePipeline(self)
        # input audio: buffer + server VAD; speech start/stop come back here
        self.input_audio = InputAudioBuffer(cascade, config.max_buffer_s, self._speech_started,
                                            self._speech_stopped)
        self.cancel_reason: str | None = None
        self._turn_lock = asyncio.Lock()
        # responses
        self._response_task: asyncio.Task | None = None
        self._response_id: str | None = None
        self._tasks: set[asyncio.Task] = set()
        self.pending_tool_calls: set[str] = set()
        self.turn_language: str | None = None
        self.last_turn_metrics: dict[str, float] = {}
        self.closed = False

    # ----------------------------------------------------------------------------- output
    def _name(self, beta_name: str) -> str:
        return GA_NAMES.get(beta_name, beta_name) if self.ga else beta_name

    def part_type(self, beta_type: str) -> str:
        """A content part type in this session's protocol (``audio`` -> ``output_audio`` for GA)."""
        return GA_PART_TYPES.get(beta_type, beta_type) if self.ga else beta_type

    async def emit(self, type: str, **fields: Any) -> None:
        if not self.closed:
            await self._send(event(self._name(type), **fields))

    async def emit_error(self, message: str, code: str = "invalid_request_error", param: str | None = None,
                         client_event_id: str | None = None) -> None:
        if not self.closed:
            await self._send(error_event(message, code=code, param=param, client_event_id=client_event_id))

    def session_object(self) -> dict:
        """The session as OpenAI describes it (beta or GA shape)."""
        td = self.turn_detection.to_wire()
        transcription = {"model": self.cascade.stt.id} if self.cascade.stt else None
        if transcription and self.transcription_language:
            transcription["language"] = self.transcription_language
        if self.ga:
            return {
                "type": "realtime", "object": "realtime.session", "id": self.id, "model": self.model,
                "output_modalities": ["audio"] if "audio" in self.modalities else ["text"],
                "instructions": self.instructions,
                "audio": {
                    "input": {"format": {"type": "audio/pcm", "rate": RATE}, "transcription": transcription,
                              "turn_detection": td},
                    "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": self.voice or "default",
                               "speed": 1.0},
                },
                "tools": self.tools, "tool_choice": self.tool_choice, "max_output_tokens": self.max_output_tokens,
            }
        return {
            "id": self.id, "object": "realtime.session", "model": self.model, "modalities": self.modalities,
            "instructions": self.instructions, "voice": self.voice or "default",
            "input_audio_format": "pcm16", "output_audio_format": "pcm16",
            "input_audio_transcription": transcription, "turn_detection": td, "tools": self.tools,
            "tool_choice": self.tool_choice, "temperature": self.temperature,
            "max_response_output_tokens": self.max_output_tokens,
        }

    # ----------------------------------------------------------------------------- input
    async def handle_text(self, raw: str | bytes) -> None:
        """Process one client frame. Client mistakes become ``error`` events; the session stays."""
        if len(raw) > self.config.max_frame_bytes:
            await self.emit_error(f"frame of {len(raw)} bytes exceeds the limit of {self.config.max_frame_bytes}",
                                  code="frame_too_large")
            return
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            await self.emit_error("the frame is not valid JSON", code="invalid_json")
            return
        if not isinstance(message, dict):
            await self.emit_error("a client event must be a JSON object", code="invalid_event")
            return
        client_event_id = message.get("event_id")
        try:
            await self.dispatch(message)
        except ClientError as exc:
            await self.emit_error(exc.message, code=exc.code, param=exc.param, client_event_id=client_event_id)

    async def dispatch(self, message: dict) -> None:
        kind = message.get("type")
        if kind is None and isinstance(message.get("setup"), dict):
            return self.apply_setup(message["setup"])
        handler = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": self._on_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.truncate": self._on_item_truncate,
            "conversation.item.delete": self._on_item_delete,
            "conversation.item.retrieve": self._on_item_retrieve,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
            "output_audio_buffer.clear": self._on_output_clear,
        }.get(kind)
        if handler is None:
            raise ClientError(f"unknown event type {kind!r}", code="unknown_event", param="type")
        await handler(message)

    def apply_setup(self, setup: dict) -> None:
        """The Naia setup frame (spec 001 §2) after admission: only ``locale`` changes anything."""
        locale = setup.get("locale")
        if isinstance(locale, str) and locale and locale.lower() not in ("auto", "global"):
            self.transcription_language = locale.split("-")[0].lower()

    # -- session.update
    #: the settings ``session.update`` may change: restored when an update is rejected
    _SETTINGS = ("ga", "model", "modalities", "instructions", "voice", "turn_detection", "transcription_language",
                 "tools", "tool_choice", "temperature", "max_output_tokens", "reference")

    async def _on_session_update(self, message: dict) -> None:
        """Apply ``session.update`` as a whole: a bad field is answered with one ``error`` event
        naming it, and the session keeps every previous setting."""
        s = message.get("session")
        if not isinstance(s, dict):
            raise ClientError("session.update needs a 'session' object", param="session")
        before = {name: getattr(self, name) for name in self._SETTINGS}
        try:
            await self._update_settings(message, s)
        except ClientError:
            changed_turns = self.turn_detection is not before["turn_detection"]
            for name, value in before.items():
                setattr(self, name, value)
            if changed_turns:
                self.input_audio.configure(self.turn_detection)
            raise
        await self.emit("session.updated", session=self.session_object())

    async def _update_settings(self, message: dict, s: dict) -> None:
        if s.get("type") == "realtime" or isinstance(s.get("audio"), dict) or "output_modalities" in s:
            self.ga = True
        if isinstance(message.get("model"), str):
            self.model = message["model"]
        if isinstance(s.get("model"), str):
            self.model = s["model"]
        modalities = s.get("output_modalities", s.get("modalities"))
        if modalities is not None:
            if not isinstance(modalities, list) or not set(modalities) <= {"text", "audio"} or not modalities:
                raise ClientError("modalities must be a non-empty list of 'text' and 'audio'", param="session.modalities")
            self.modalities = ["text", "audio"] if "audio" in modalities else ["text"]
        for fmt_key in ("input_audio_format", "output_audio_format"):
            fmt = s.get(fmt_key)
            if fmt is not None and fmt != "pcm16":
                raise ClientError(f"only pcm16 audio is supported ({fmt_key}={fmt!r})", param=f"session.{fmt_key}")
        audio = s.get("audio") if isinstance(s.get("audio"), dict) else {}
        a_in = audio.get("input") if isinstance(audio.get("input"), dict) else {}
        a_out = audio.get("output") if isinstance(audio.get("output"), dict) else {}
        for block in (a_in, a_out):
            fmt = block.get("format")
            if isinstance(fmt, dict) and (fmt.get("type") not in (None, "audio/pcm") or fmt.get("rate", RATE) != RATE):
                raise ClientError("only audio/pcm at 24000 Hz is supported", param="session.audio.format")
        if "instructions" in s:
            if not isinstance(s["instructions"], str):
                raise ClientError("instructions must be a string", param="session.instructions")
            self.instructions = s["instructions"]
        voice = a_out.get("voice", s.get("voice"))
        if voice is not None:
            if isinstance(voice, dict) and isinstance(voice.get("id"), str):
                voice = voice["id"]
            if not isinstance(voice, str) or not voice:
                raise ClientError("voice must be a voice name (a string) or {\"id\": name}", param="session.voice")
            self.voice = voice
        td_key = "turn_detection"
        td = a_in[td_key] if td_key in a_in else s.get(td_key, "__absent__")
        if td != "__absent__":
            try:
                self.turn_detection = TurnDetectionConfig.from_wire(td, self.turn_detection)
            except (ValueError, TypeError, AttributeError) as exc:
                raise ClientError(str(exc), param="session.turn_detection") from exc
            self.input_audio.configure(self.turn_detection)
        tr = a_in.get("transcription", s.get("input_audio_transcription"))
        if isinstance(tr, dict) and tr.get("language"):
            self.transcription_language = str(tr["language"]).split("-")[0].lower()
        if "tools" in s:
            tools = s["tools"] or []
            if not isinstance(tools, list) or not all(isinstance(t, dict) and t.get("name") for t in tools):
                raise ClientError("tools must be a list of {type: function, name, parameters}", param="session.tools")
            self.tools = tools
        if "tool_choice" in s:
            choice = s["tool_choice"]
            if choice not in ("auto", "none", "required") and not isinstance(choice, dict):
                raise ClientError("tool_choice must be auto, none, required or {type: function, name}",
                                  param="session.tool_choice")
            self.tool_choice = choice
        if "temperature" in s:
            t = s["temperature"]
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 2.0:
                raise ClientError("temperature must be a number from 0 to 2", param="session.temperature")
            self.temperature = float(t)
        limit_key = "max_output_tokens" if "max_output_tokens" in s else "max_response_output_tokens"
        limit = s.get(limit_key)
        if limit is not None:
            if limit != "inf" and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 4096):
                raise ClientError(f"{limit_key} must be an integer from 1 to 4096 or \"inf\"",
                                  param=f"session.{limit_key}")
            self.max_output_tokens = limit
        if s.get("ref_audio") or s.get("ref_audio_url"):
            await self._set_reference(s.get("ref_audio"), s.get("ref_audio_url"))

    async def _set_reference(self, ref_audio: str | None, ref_url: str | None) -> None:
        info = await self.cascade.tts_info()
        if not info.get("supports_voice_cloning"):
            if not self._reference_notice_sent:
                self._reference_notice_sent = True
                await self.emit("session.notice", code="voice_cloning_unsupported",
                                message=f"the voice model '{info.get('id')}' cannot clone voices; "
                                        "ref_audio is ignored and the default voice is used")
            return
        try:
            if ref_audio:
                try:
                    data = base64.b64decode(ref_audio, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise ValueError("not valid base64") from exc
            else:
                if self._fetch_reference is None:
                    raise ValueError("ref_audio_url is not supported here")
                data = await self._fetch_reference(ref_url)
            if not data:
                raise ValueError("the reference clip is empty")
            transcript = await self.cascade.transcribe(data=data)  # also validates the audio
            if not transcript.get("text", "").strip():
                raise ValueError("no speech found in the reference clip")
        except ClientError:
            raise
        except Exception as exc:
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ClientError(f"Invalid ref_audio: {detail}", code="invalid_ref_audio", param="session.ref_audio") from exc
        self.reference = {"audio": base64.b64encode(data).decode(), "text": transcript["text"]}

    # -- input audio
    async def _on_append(self, message: dict) -> None:
        audio = message.get("audio")
        if not isinstance(audio, str):
            raise ClientError("input_audio_buffer.append needs base64 'audio'", param="audio")
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ClientError("audio is not valid base64", code="invalid_audio", param="audio") from None
        if len(raw) % 2:
            raise ClientError("audio must be PCM16 (an even number of bytes)", code="invalid_audio", param="audio")
        if not raw:
            return
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
        await self.append_audio(samples)

    async def append_audio(self, samples: np.ndarray) -> None:
        """Add 24 kHz float32 samples to the input audio buffer (server VAD runs over them)."""
        await self.input_audio.append(samples)

    async def _speech_started(self, item_id: str, audio_start_ms: float) -> None:
        await self.emit("input_audio_buffer.speech_started", audio_start_ms=int(audio_start_ms), item_id=item_id)
        if self.turn_detection.interrupt_response and self._response_task is not None:
            await self.cancel_response(reason="turn_detected")

    async def _speech_stopped(self, item_id: str, audio_end_ms: float, audio: np.ndarray) -> None:
        t_stop = time.monotonic()
        await self.emit("input_audio_buffer.speech_stopped", audio_end_ms=int(audio_end_ms), item_id=item_id)
        await self._commit(audio, item_id, t_stop)

    async def _on_commit(self, message: dict) -> None:
        audio = self.input_audio.take()
        if len(audio) * 1000 / RATE < MIN_COMMIT_MS:
            raise ClientError(f"the input audio buffer holds less than {MIN_COMMIT_MS} ms of audio",
                              code="input_audio_buffer_commit_empty")
        self.input_audio.reset_turn()
        await self._commit(audio, new_id("item"), time.monotonic())

    async def _on_clear(self, message: dict) -> None:
        self.input_audio.take()
        self.input_audio.reset_turn()
        await self.emit("input_audio_buffer.cleared")

    async def _commit(self, audio: np.ndarray, item_id: str, t_stop: float) -> None:
        previous = self.conversation.last_id
        await self.emit("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_audio"}], "_text": ""}  # transcript added when known
        self.conversation.append(item)
        await self.item_created(item, previous)
        self._spawn(self._transcribe_turn(item, audio, t_stop))

    async def _transcribe_turn(self, item: dict, audio: np.ndarray, t_stop: float) -> None:
        async with self._turn_lock:
            t0 = time.monotonic()
            try:
                result = await self.cascade.transcribe(samples=audio, sample_rate=RATE,
                                                       language=self.transcription_language)
            except Exception as exc:
                logger.warning("session %s: transcription failed: %s", self.id, exc)
                await self.emit("conversation.item.input_audio_transcription.failed", item_id=item["id"],
                                content_index=0, error={"type": "transcription_error", "code": "stt_failed",
                                                        "message": "transcription failed", "param": None})
                return
            text = result.get("text", "").strip()
            item["content"][0]["transcript"] = text
            item["_text"] = text
            self.turn_language = result.get("language")
            await self.emit("conversation.item.input_audio_transcription.completed", item_id=item["id"],
                            content_index=0, transcript=text,
                            usage={"type": "duration", "seconds": round(len(audio) / RATE, 3)})
            # vad_wait_ms: silence the detector waited after speech ended; stt_ms: transcription
            self.last_turn_metrics = {"vad_wait_ms": float(self.turn_detection.silence_duration_ms),
                                      "stt_ms": (time.monotonic() - t0) * 1000.0}
            if text and self.turn_detection.create_response:
                await self.start_response({}, t_turn_end=t_stop)

    # -- conversation items
    async def item_created(self, item: dict, previous: str | None) -> None:
        """Announce an item added to the conversation (``conversation.item.created``; GA also
        ``conversation.item.done``)."""
        public = _public(item)
        await self.emit("conversation.item.created", previous_item_id=previous, item=public)
        if self.ga:
            await self.emit("conversation.item.done", previous_item_id=previous, item=public)

    async def _on_item_create(self, message: dict) -> None:
        item = message.get("item")
        if not isinstance(item, dict):
            raise ClientError("conversation.item.create needs an 'item' object", param="item")
        kind = item.get("type", "message")
        new = {"id": item.get("id") or new_id("item"), "object": "realtime.item", "type": kind, "status": "completed"}
        if kind == "message":
            role = item.get("role", "user")
            if role not in ("user", "assistant", "system"):
                raise ClientError("item.role must be user, assistant or system", param="item.role")
            parts = item.get("content") or []
            if not isinstance(parts, list):
                raise ClientError("item.content must be a list of content parts", param="item.content")
            texts = []
            for part in parts:
                ptype = part.get("type") if isinstance(part, dict) else None
                if ptype in ("input_text", "text", "output_text"):
                    texts.append(str(part.get("text", "")))
                elif ptype in ("input_audio", "audio"):
                    texts.append(await self._transcribe_part(part))
                else:
                    raise ClientError(f"unsupported content part type {ptype!r}", param="item.content")
            new.update(role=role, content=parts, _text=" ".join(t for t in texts if t))
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not call_id:
                raise ClientError("function_call_output needs call_id", param="item.call_id")
            new.update(call_id=call_id, output=str(item.get("output", "")))
        elif kind == "function_call":
            new.update(call_id=item.get("call_id") or new_id("call"), name=item.get("name", ""),
                       arguments=item.get("arguments", "{}"))
        else:
            raise ClientError(f"unsupported item type {kind!r}", param="item.type")
        previous = message.get("previous_item_id") or self.conversation.last_id
        self.conversation.append(new)
        await self.item_created(new, previous)
        if kind == "function_call_output":
            self.pending_tool_calls.discard(new["call_id"])
            if not self.pending_tool_calls and self._response_task is None:
                # Naia: the client answers a tool call and sends no response.create; resume by itself
                await self.start_response({})

    async def _transcribe_part(self, part: dict) -> str:
        try:
            raw = base64.b64decode(part.get("audio", ""), validate=True)
        except (binascii.Error, ValueError):
            raise ClientError("input_audio part is not valid base64", code="invalid_audio") from None
        if len(raw) % 2 or not raw:
            raise ClientError("input_audio part must be non-empty PCM16", code="invalid_audio")
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
        result = await self.cascade.transcribe(samples=samples, sample_rate=RATE, language=self.transcription_language)
        part["transcript"] = result.get("text", "")
        return part["transcript"]

    async def _on_item_truncate(self, message: dict) -> None:
        audio_end_ms = int(message.get("audio_end_ms", 0))
        item = self.conversation.truncate(message.get("item_id"), audio_end_ms)
        await self.emit("conversation.item.truncated", item_id=item["id"],
                        content_index=int(message.get("content_index", 0)), audio_end_ms=audio_end_ms)

    async def _on_item_delete(self, message: dict) -> None:
        item = self.conversation.delete(message.get("item_id"))
        await self.emit("conversation.item.deleted", item_id=item["id"])

    async def _on_item_retrieve(self, message: dict) -> None:
        item = self.conversation.find(message.get("item_id"))
        await self.emit("conversation.item.retrieved", item=_public(item))

    async def _on_output_clear(self, message: dict) -> None:
        await self.cancel_response(reason="client_cancelled")
        await self.emit("output_audio_buffer.cleared", response_id=self._response_id)

    # ----------------------------------------------------------------------------- responses
    async def _on_response_create(self, message: dict) -> None:
        if self._response_task is not None:
            raise ClientError("a response is already in progress", code="conversation_already_has_active_response")
        await self.start_response(message.get("response") or {})

    async def _on_response_cancel(self, message: dict) -> None:
        if self._response_task is None:
            raise ClientError("no response is in progress", code="response_cancel_not_active")
        await self.cancel_response(reason="client_cancelled")

    async def start_response(self, options: dict, t_turn_end: float | None = None) -> None:
        """Start generating a reply to the conversation (``response.create``)."""
        if self._response_task is not None:
            await self.cancel_response(reason="turn_detected")
        response_id = new_id("resp")
        self._response_id = response_id
        task = asyncio.create_task(self.responses.respond(response_id, options, t_turn_end))
        self._response_task = task
        task.add_done_callback(lambda t: self._response_done(t))

    def _response_done(self, task: asyncio.Task) -> None:
        if self._response_task is task:
            self._response_task = None
        if not task.cancelled() and task.exception() is not None:
            logger.error("session %s: response failed: %r", self.id, task.exception())

    async def cancel_response(self, reason: str) -> None:
        """Stop the response in progress (LLM and TTS work included) and wait until it is gone."""
        task = self._response_task
        if task is None:
            return
        task.cancel()
        self.cancel_reason = reason
        try:
            await task
        except BaseException:  # cancelled or failed: reported by the task itself
            pass

    def llm_messages(self, extra_instructions: str | None) -> list[dict]:
        """The chat messages for the LLM: session instructions, per-response ``instructions``,
        the spoken-format rules and the reply language, then the conversation."""
        system = "\n\n".join(p for p in (self.instructions, extra_instructions, FORMAT_RULES) if p)
        lang = self.transcription_language or self.turn_language
        if lang and lang != "en" and lang in LANGUAGE_NAMES:
            system += f"\n\nReply in {LANGUAGE_NAMES[lang]}."
        return self.conversation.messages(system)

    def tool_specs(self) -> list[dict] | None:
        """The session's tools in the chat-completions ``tools`` shape, or ``None``."""
        if not self.tools or self.tool_choice == "none":
            return None
        return [{"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                                  "parameters": t.get("parameters", {"type": "object"})}}
                for t in self.tools]

    # ----------------------------------------------------------------------------- lifecycle
    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """The client is gone: stop every piece of work it started."""
        self.closed = True
        tasks = list(self._tasks)
        if self._response_task is not None:
            tasks.append(self._response_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except BaseException:
                pass

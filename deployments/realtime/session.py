"""One realtime voice session: input audio buffer with server VAD, conversation, responses.

Audio in is base64 PCM16 mono 24 kHz (``input_audio_buffer.append``); it is resampled to the VAD
model's rate (16 kHz) and scored frame by frame. A detected turn is committed, transcribed, and
answered: the LLM reply streams, is cut into sentences, and each sentence is synthesised as soon
as it is complete, so the first ``response.audio.delta`` leaves before the LLM has finished.
Speech during a reply (barge-in) or ``response.cancel`` stops the LLM and TTS work on the server,
and the conversation keeps only what was already sent.

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
from deployments.realtime.cascade import Cascade, aclose
from deployments.realtime.conversation import Conversation, public as _public
from deployments.realtime.input_audio_buffer import RATE, InputAudioBuffer
from deployments.realtime.text import SentenceSplitter, Tag, TagScanner, speakable
from deployments.realtime.turns import TurnDetectionConfig
from deployments.realtime_protocol import GA_NAMES, GA_PART_TYPES, ClientError, error_event, event, new_id
from deployments.tool_calls import ToolCallParser
from models.tts.tags import find_tags, strip_tags

logger = logging.getLogger("ray.serve")

#: Audio delta size: 200 ms of PCM16 at 24 kHz.
DELTA_SAMPLES = 4800
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
        # input audio: buffer + server VAD; speech start/stop come back here
        self.input_audio = InputAudioBuffer(cascade, config.max_buffer_s, self._speech_started,
                                            self._speech_stopped)
        self._cancel_reason: str | None = None
        self._turn_lock = asyncio.Lock()
        # responses
        self._response_task: asyncio.Task | None = None
        self._response_id: str | None = None
        self._tasks: set[asyncio.Task] = set()
        self._pending_tool_calls: set[str] = set()
        self.turn_language: str | None = None
        self.last_turn_metrics: dict[str, float] = {}
        self.closed = False

    # ----------------------------------------------------------------------------- output
    def _name(self, beta_name: str) -> str:
        return GA_NAMES.get(beta_name, beta_name) if self.ga else beta_name

    def _part(self, beta_type: str) -> str:
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
        await self._item_created(item, previous)
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
    async def _item_created(self, item: dict, previous: str | None) -> None:
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
        await self._item_created(new, previous)
        if kind == "function_call_output":
            self._pending_tool_calls.discard(new["call_id"])
            if not self._pending_tool_calls and self._response_task is None:
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
        task = asyncio.create_task(self._respond(response_id, options, t_turn_end))
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
        self._cancel_reason = reason
        try:
            await task
        except BaseException:  # cancelled or failed: reported by the task itself
            pass

    def _messages(self, extra_instructions: str | None) -> list[dict]:
        system = "\n\n".join(p for p in (self.instructions, extra_instructions, FORMAT_RULES) if p)
        lang = self.transcription_language or self.turn_language
        if lang and lang != "en" and lang in LANGUAGE_NAMES:
            system += f"\n\nReply in {LANGUAGE_NAMES[lang]}."
        return self.conversation.messages(system)

    def _tool_specs(self) -> list[dict] | None:
        if not self.tools or self.tool_choice == "none":
            return None
        return [{"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                                  "parameters": t.get("parameters", {"type": "object"})}}
                for t in self.tools]

    async def _respond(self, response_id: str, options: dict, t_turn_end: float | None) -> None:
        modalities = options.get("output_modalities", options.get("modalities")) or self.modalities
        audio_out = "audio" in modalities and self.cascade.tts is not None
        self._cancel_reason = None
        state = _ResponseState(response_id)
        t_start = time.monotonic()
        metrics = dict(self.last_turn_metrics) if t_turn_end is not None else {}
        state.metrics = metrics
        state.t_start = t_start
        await self.emit("response.created", response=self._response_object(state, "in_progress"))
        item = {"id": new_id("item"), "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "in_progress", "content": [], "_text": "", "_spans": []}
        state.message_item = item
        llm_stream = None
        tts_streams: list[Any] = []
        sentence_queue: asyncio.Queue = asyncio.Queue()
        tts_task: asyncio.Task | None = None
        try:
            limit = options.get("max_output_tokens", self.max_output_tokens)
            params = {"max_tokens": self.config.max_response_tokens if limit == "inf" else int(limit),
                      "temperature": float(options.get("temperature", self.temperature)), "top_p": 0.95}
            tools = self._tool_specs()
            llm_stream = self.cascade.chat(self._messages(options.get("instructions")), params, tools)
            parser = ToolCallParser() if tools else None
            scanner, splitter = TagScanner(), SentenceSplitter()
            started_item = False

            async def open_item() -> None:
                nonlocal started_item
                if started_item:
                    return
                started_item = True
                state.output.append(item)
                await self.emit("response.output_item.added", response_id=response_id, output_index=0,
                                item=_public(item))
                await self._item_created(item, self.conversation.last_id)
                self.conversation.append(item)
                part = {"type": self._part("audio" if audio_out else "text")}
                part["transcript" if audio_out else "text"] = ""
                item["content"].append(part)
                await self.emit("response.content_part.added", response_id=response_id, item_id=item["id"],
                                output_index=0, content_index=0, part=_event_part(part))

            if audio_out:
                tts_task = asyncio.create_task(self._speak(state, sentence_queue, tts_streams, metrics, t_turn_end))

            first_token = True
            async for chunk in llm_stream:
                piece = chunk.get("text", "")
                if first_token and piece:
                    first_token = False
                    metrics["llm_first_token_ms"] = (time.monotonic() - t_start) * 1000.0
                if parser is not None:
                    piece = parser.feed(piece)
                if chunk.get("finish_reason"):
                    state.usage = (chunk.get("prompt_tokens", 0), chunk.get("completion_tokens", 0))
                if not piece:
                    continue
                await open_item()
                await self._route_text(piece, scanner, splitter, sentence_queue, state, audio_out)
            if parser is not None:
                rest, calls = parser.finish()
                if rest:
                    await open_item()
                    await self._route_text(rest, scanner, splitter, sentence_queue, state, audio_out)
                state.tool_calls = calls
            tail, tags = scanner.flush()
            if tail or tags:
                await open_item()
                await self._route_text(tail, None, splitter, sentence_queue, state, audio_out, tags=tags)
            for sentence in splitter.flush():
                await self._sentence(sentence, sentence_queue, state, audio_out)
            if tts_task is not None:
                await sentence_queue.put(None)
                await tts_task
            if started_item:
                await self._finish_item(state, audio_out)
            for call in state.tool_calls:
                await self._emit_tool_call(state, call)
            await self._finish(state, "completed")
        except asyncio.CancelledError:
            if tts_task is not None:
                tts_task.cancel()
            await aclose(llm_stream)
            for s in tts_streams:
                await aclose(s)
            # keep only what the client already got
            item["_text"] = " ".join(s for _, s in item["_spans"]) if audio_out else state.sent_text
            item["status"] = "incomplete"
            reason = self._cancel_reason or "client_cancelled"
            await self.emit("response.cancelled", response_id=response_id, reason=reason)
            await self._finish(state, "cancelled", {"type": "cancelled", "reason": reason})
            raise
        except Exception as exc:
            await aclose(llm_stream)
            for s in tts_streams:
                await aclose(s)
            if tts_task is not None:
                tts_task.cancel()
            logger.exception("session %s: response %s failed", self.id, response_id)
            await self._finish(state, "failed", {"type": "failed", "error": {"type": "server_error",
                                                                             "code": "response_failed",
                                                                             "message": str(exc)[:300]}})

    async def _route_text(self, piece: str, scanner: TagScanner | None, splitter: SentenceSplitter,
                          queue: asyncio.Queue, state: "_ResponseState", audio_out: bool,
                          tags: list | None = None) -> None:
        if scanner is not None:
            piece, tags = scanner.feed(piece)
        if audio_out:
            for sentence in splitter.feed(piece):
                await self._sentence(sentence, queue, state, audio_out)
            return
        for tag in tags or ():
            await self.emit("emotion.updated", state=tag.state, tag=tag.tag, known=tag.known)
        clean = strip_tags(piece) if "[" in piece else piece
        if clean:
            state.sent_text += clean
            state.message_item["content"][0]["text"] += clean
            await self.emit("response.text.delta", response_id=state.response_id, item_id=state.message_item["id"],
                            output_index=0, content_index=0, delta=clean)

    async def _sentence(self, sentence: str, queue: asyncio.Queue, state: "_ResponseState", audio_out: bool) -> None:
        if audio_out:
            state.metrics.setdefault("llm_first_sentence_ms", (time.monotonic() - state.t_start) * 1000.0)
            await queue.put(sentence)

    async def _speak(self, state: "_ResponseState", queue: asyncio.Queue, streams: list, metrics: dict,
                     t_turn_end: float | None) -> None:
        """TTS worker: synthesises sentences in order as the LLM completes them."""
        item = state.message_item
        while True:
            sentence = await queue.get()
            if sentence is None:
                return
            spoken_prefix = " " if item["_spans"] else ""
            start_ms = state.audio_ms
            item["_spans"].append((start_ms, sentence))
            transcript_delta = spoken_prefix + sentence
            item["content"][0]["transcript"] += transcript_delta
            await self.emit("response.audio_transcript.delta", response_id=state.response_id, item_id=item["id"],
                            output_index=0, content_index=0, delta=transcript_delta)
            for name in find_tags(sentence):
                tag = Tag(name, f"[{name}]")
                await self.emit("emotion.updated", state=tag.state, tag=tag.tag, known=tag.known)
            if not speakable(sentence):
                continue
            t_tts = time.monotonic()
            stream = self.cascade.speech(sentence, self.voice, self.reference, RATE)
            streams.append(stream)
            first = True
            async for chunk in stream:
                if first:
                    first = False
                    if "tts_first_chunk_ms" not in metrics:
                        metrics["tts_first_chunk_ms"] = (time.monotonic() - t_tts) * 1000.0
                        if t_turn_end is not None:
                            # the user's speech ended vad_wait_ms before the turn was decided
                            metrics["voice_to_voice_ms"] = ((time.monotonic() - t_turn_end) * 1000.0
                                                            + metrics.get("vad_wait_ms", 0.0))
                for i in range(0, len(chunk), DELTA_SAMPLES):
                    piece = chunk[i:i + DELTA_SAMPLES]
                    pcm = (np.clip(piece, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
                    state.audio_ms += len(piece) * 1000.0 / RATE
                    await self.emit("response.audio.delta", response_id=state.response_id, item_id=item["id"],
                                    output_index=0, content_index=0, delta=base64.b64encode(pcm).decode())
            streams.remove(stream)

    async def _finish_item(self, state: "_ResponseState", audio_out: bool) -> None:
        item = state.message_item
        rid, iid = state.response_id, item["id"]
        if audio_out:
            item["_text"] = " ".join(s for _, s in item["_spans"])
            await self.emit("response.audio.done", response_id=rid, item_id=iid, output_index=0, content_index=0)
            await self.emit("response.audio_transcript.done", response_id=rid, item_id=iid, output_index=0,
                            content_index=0, transcript=item["content"][0]["transcript"])
        else:
            item["_text"] = state.sent_text
            await self.emit("response.text.done", response_id=rid, item_id=iid, output_index=0, content_index=0,
                            text=state.sent_text)
        await self.emit("response.content_part.done", response_id=rid, item_id=iid, output_index=0, content_index=0,
                        part=_event_part(item["content"][0]))
        item["status"] = "completed"
        await self.emit("response.output_item.done", response_id=rid, output_index=0, item=_public(item))

    async def _emit_tool_call(self, state: "_ResponseState", call) -> None:
        index = len(state.output)
        item = {"id": new_id("item"), "object": "realtime.item", "type": "function_call", "status": "completed",
                "call_id": call.id, "name": call.name, "arguments": call.arguments}
        state.output.append(item)
        self.conversation.append(item)
        self._pending_tool_calls.add(call.id)
        rid = state.response_id
        await self.emit("response.output_item.added", response_id=rid, output_index=index,
                        item={**item, "status": "in_progress", "arguments": ""})
        await self.emit("response.function_call_arguments.delta", response_id=rid, item_id=item["id"],
                        output_index=index, call_id=call.id, delta=call.arguments)
        await self.emit("response.function_call_arguments.done", response_id=rid, item_id=item["id"],
                        output_index=index, call_id=call.id, name=call.name, arguments=call.arguments)
        await self.emit("response.output_item.done", response_id=rid, output_index=index, item=_public(item))

    def _response_object(self, state: "_ResponseState", status: str, details: dict | None = None) -> dict:
        prompt, completion = state.usage
        body = {
            "id": state.response_id, "object": "realtime.response", "status": status,
            "output": [_public(i) for i in state.output],
            "conversation_id": self.id,
            "usage": {"total_tokens": prompt + completion, "input_tokens": prompt, "output_tokens": completion},
            "requires_action": bool(state.tool_calls) and status == "completed",
            # latency breakdown of a voice turn (ms, as strings: OpenAI's metadata is a string map)
            "metadata": {k: f"{v:.1f}" for k, v in state.metrics.items()} or None,
        }
        if details is not None:
            body["status_details"] = details
        return body

    async def _finish(self, state: "_ResponseState", status: str, details: dict | None = None) -> None:
        await self.emit("response.done", response=self._response_object(state, status, details))

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


class _ResponseState:
    def __init__(self, response_id: str):
        self.response_id = response_id
        self.output: list[dict] = []
        self.message_item: dict = {}
        self.tool_calls: list = []
        self.usage = (0, 0)
        self.sent_text = ""
        self.audio_ms = 0.0
        self.metrics: dict[str, float] = {}
        self.t_start = time.monotonic()


def _event_part(part: dict) -> dict:
    """A content part as ``response.content_part.*`` events carry it: OpenAI keeps the part
    types ``audio`` / ``text`` there in both the beta and the GA protocol, while GA items name
    their content ``output_audio`` / ``output_text``."""
    out = dict(part)
    out["type"] = {"output_audio": "audio", "output_text": "text"}.get(part["type"], part["type"])
    return out

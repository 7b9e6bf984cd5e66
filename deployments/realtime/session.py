"""One realtime voice session: settings, event dispatch and emit; it alone wires the parts.

The parts each own one piece of state: :class:`~deployments.realtime.input_audio_buffer.InputAudioBuffer`
(appended audio, server VAD, turn detection), :class:`~deployments.realtime.conversation.Conversation`
(items, truncate, LLM context), :class:`~deployments.realtime.user_turns.UserTurns` (the turn in
progress and its speculation) and :class:`~deployments.realtime.response.ResponsePipeline` (LLM ->
tags -> sentences -> TTS). Effects that cross them go through this class: speech start cancels a
response, speech stop commits and transcribes a turn, a tool output resumes the reply.

The settings and their ``session.update`` parsing live in
:mod:`~deployments.realtime.settings`, the user's turns (speech -> committed, transcribed turn,
speculation) in :mod:`~deployments.realtime.user_turns`, the connection around the session in
:mod:`~deployments.realtime.connection`. This module keeps the client-event handlers of every
family (about 410 lines since the formatter spells each typed event out: they are the one place
where the families meet).

With traces on (:mod:`deployments.tracing`), each turn is a trace of its own: a voice turn from
speech start (:mod:`~deployments.realtime.user_turns`), a text turn from its ``response.create``,
each ended with its response; every turn links to the session's ``realtime.connect`` span
(:attr:`RealtimeSession.trace_link`).

Event names and shapes follow OpenAI's Realtime API (beta names by default, GA names for a
GA-shaped session) with Naia's extensions (docs/realtime.md): ``emotion.updated``,
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
from collections.abc import Awaitable, Callable

import numpy as np
from opentelemetry.trace import Link

from deployments.config import RealtimeConfig
from deployments.protocol import realtime as ev
from deployments.protocol.realtime import (
    GA_NAMES,
    GA_PART_TYPES,
    ClientError,
    error_event,
    new_id,
    parse_client_event,
)
from deployments.realtime.cascade import Cascade
from deployments.realtime.conversation import Conversation, item_from_wire
from deployments.realtime.conversation import public as _public
from deployments.realtime.input_audio_buffer import InputAudioBuffer
from deployments.realtime.response import ResponsePipeline
from deployments.realtime.settings import SessionSettings, resolve_reference
from deployments.realtime.user_turns import UserTurns
from deployments.tracing import provider, scopes
from models.audio import OPENAI_PCM_RATE

logger = logging.getLogger("ray.serve")

#: Smallest buffer ``input_audio_buffer.commit`` accepts (OpenAI: 100 ms).
MIN_COMMIT_MS = 100

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

    def __init__(
        self,
        send: Send,
        cascade: Cascade,
        config: RealtimeConfig,
        model: str,
        locale: str | None = None,
        reference_fetcher: Callable[[str], Awaitable[bytes]] | None = None,
    ):
        self._send = send
        self.cascade = cascade
        self.config = config
        self.id = new_id("sess")
        self.settings = SessionSettings(
            model=model,
            instructions=config.default_instructions,
            max_output_tokens=config.max_response_tokens,
            pipeline=config.pipeline,
            transcription_language=locale,
        )
        self._reference_notice_sent = False
        self._fetch_reference = reference_fetcher
        self.conversation = Conversation()
        self.responses = ResponsePipeline(self)
        # input audio: buffer + server VAD; speech start/stop come back here
        self.turns = UserTurns(self)
        self.input_audio = InputAudioBuffer(
            cascade,
            config.max_buffer_s,
            self.turns.speech_started,
            self.turns.speech_stopped,
            self.turns.speech_paused,
            self.turns.speech_resumed,
        )
        self._configure_turns()
        self.cancel_reason: str | None = None
        # responses
        self._response_task: asyncio.Task | None = None
        self._response_id: str | None = None
        self._tasks: set[asyncio.Task] = set()
        self.pending_tool_calls: set[str] = set()
        self.turn_language: str | None = None
        self.last_turn_metrics: dict[str, float] = {}
        #: link from each turn's trace to the session's connect span (set by the connection;
        #: ``None`` when traces are off)
        self.trace_link: Link | None = None
        self.closed = False

    # ----------------------------------------------------------------------------- output
    def _name(self, beta_name: str) -> str:
        return GA_NAMES.get(beta_name, beta_name) if self.settings.ga else beta_name

    def part_type(self, beta_type: str) -> str:
        """A content part type in this session's protocol (``audio`` -> ``output_audio`` for GA)."""
        return GA_PART_TYPES.get(beta_type, beta_type) if self.settings.ga else beta_type

    async def emit(self, event: ev.RealtimeServerEvent) -> None:
        """Send one server event, under its GA name in a GA-shaped session; nothing once closed."""
        if not self.closed:
            await self._send(event.to_wire(ga=self.settings.ga))

    async def emit_error(
        self,
        message: str,
        code: str = "invalid_request_error",
        param: str | None = None,
        client_event_id: str | None = None,
    ) -> None:
        if not self.closed:
            await self._send(error_event(message, code=code, param=param, client_event_id=client_event_id))

    # ----------------------------------------------------------------------------- input
    async def handle_text(self, raw: str | bytes) -> None:
        """Process one client frame. Client mistakes become ``error`` events; the session stays."""
        if len(raw) > self.config.max_frame_bytes:
            await self.emit_error(
                f"frame of {len(raw)} bytes exceeds the limit of {self.config.max_frame_bytes}", code="frame_too_large"
            )
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
        parse_client_event(message)  # its fields against OpenAI's typed client-event schema
        await handler(message)

    def apply_setup(self, setup: dict) -> None:
        """The Naia setup frame (docs/realtime.md) after admission: only ``locale`` changes anything."""
        self.settings.apply_setup(setup)

    def session_object(self) -> dict:
        """The session as OpenAI describes it (beta or GA shape)."""
        return self.settings.session_object(self.id, self.cascade.stt.id if self.cascade.stt else None)

    # -- session.update
    async def _on_session_update(self, message: dict) -> None:
        """Apply ``session.update`` as a whole, on a copy of the settings: a bad field is
        answered with one ``error`` event naming it, and the session keeps every setting."""
        s = message.get("session")
        if not isinstance(s, dict):
            raise ClientError("session.update needs a 'session' object", param="session")
        new = self.settings.copy()
        reference = new.apply(message, s)
        if reference is not None:
            await self._set_reference(new, *reference)
        old, self.settings = self.settings, new
        if (new.turn_detection, new.pipeline) != (old.turn_detection, old.pipeline):
            self._configure_turns()
        await self.emit(ev.RealtimeServerEventSessionUpdated(session=self.session_object()))

    async def _set_reference(self, settings: SessionSettings, ref_audio: str | None, ref_url: str | None) -> None:
        """Resolve a voice reference into ``settings``; on a TTS that cannot clone, one
        ``session.notice`` per session and the default voice."""
        info = await self.cascade.tts_info()
        if info.get("supports_voice_cloning"):
            settings.reference = await resolve_reference(self.cascade, ref_audio, ref_url, self._fetch_reference)
        elif not self._reference_notice_sent:
            self._reference_notice_sent = True
            await self.emit(
                ev.RealtimeServerEventSessionNotice(
                    code="voice_cloning_unsupported",
                    message=f"the voice model '{info.get('id')}' cannot clone voices; "
                    "ref_audio is ignored and the default voice is used",
                )
            )

    def _configure_turns(self) -> None:
        """Pauses feed speculation in the speculative pipeline; the end-of-turn model ends
        ``semantic_vad`` turns, and ``server_vad`` ones without their own ``silence_duration_ms``
        when the operator turns ``server_vad_semantic_end`` on (speculative pipeline only)."""
        td, speculative = self.settings.turn_detection, self.settings.pipeline == "speculative"
        semantic = td.type == "semantic_vad" or (
            td.type == "server_vad" and speculative and not td.silence_explicit and self.config.server_vad_semantic_end
        )
        pause = self.config.pause_ms if speculative and self.cascade.stt is not None else None
        self.input_audio.configure(td, pause_ms=pause, semantic_end=semantic)

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

    async def _on_commit(self, message: dict) -> None:
        audio = self.input_audio.take()
        if len(audio) * 1000 / OPENAI_PCM_RATE < MIN_COMMIT_MS:
            raise ClientError(
                f"the input audio buffer holds less than {MIN_COMMIT_MS} ms of audio",
                code="input_audio_buffer_commit_empty",
            )
        self.input_audio.reset_turn()
        self.turns.drop_speculation()
        await self.turns.commit(audio, new_id("item"), time.monotonic())

    async def _on_clear(self, message: dict) -> None:
        self.input_audio.take()
        self.input_audio.reset_turn()
        await self.emit(ev.RealtimeServerEventInputAudioBufferCleared())

    # -- conversation items
    async def item_created(self, item: dict, previous: str | None) -> None:
        """Announce an item added to the conversation (``conversation.item.created``; GA also
        ``conversation.item.done``)."""
        public = _public(item)
        await self.emit(ev.RealtimeServerEventConversationItemCreated(previous_item_id=previous, item=public))
        if self.settings.ga:
            await self.emit(
                ev.RealtimeServerEventConversationItemCreated(
                    type="conversation.item.done", previous_item_id=previous, item=public
                )
            )

    async def _on_item_create(self, message: dict) -> None:
        item = message.get("item")
        if not isinstance(item, dict):
            raise ClientError("conversation.item.create needs an 'item' object", param="item")
        new = await item_from_wire(item, self._transcribe_part)
        previous = message.get("previous_item_id") or self.conversation.last_id
        self.conversation.append(new)
        await self.item_created(new, previous)
        if new["type"] == "function_call_output":
            self.pending_tool_calls.discard(new["call_id"])
            if not self.pending_tool_calls and self._response_task is None:
                # Naia: the client answers a tool call and sends no response.create; resume by itself
                await self.start_response({})

    async def _transcribe_part(self, part: dict) -> str:
        """The transcript of an ``input_audio`` content part (base64 PCM16 at 24 kHz)."""
        try:
            raw = base64.b64decode(part.get("audio", ""), validate=True)
        except (binascii.Error, ValueError):
            raise ClientError("input_audio part is not valid base64", code="invalid_audio") from None
        if len(raw) % 2 or not raw:
            raise ClientError("input_audio part must be non-empty PCM16", code="invalid_audio")
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
        result = await self.cascade.transcribe(
            samples=samples, sample_rate=OPENAI_PCM_RATE, language=self.settings.transcription_language
        )
        part["transcript"] = result.get("text", "")
        return part["transcript"]

    async def _on_item_truncate(self, message: dict) -> None:
        audio_end_ms = int(message.get("audio_end_ms", 0))
        item = self.conversation.truncate(message.get("item_id"), audio_end_ms)
        await self.emit(
            ev.RealtimeServerEventConversationItemTruncated(
                item_id=item["id"], content_index=int(message.get("content_index", 0)), audio_end_ms=audio_end_ms
            )
        )

    async def _on_item_delete(self, message: dict) -> None:
        item = self.conversation.delete(message.get("item_id"))
        await self.emit(ev.RealtimeServerEventConversationItemDeleted(item_id=item["id"]))

    async def _on_item_retrieve(self, message: dict) -> None:
        item = self.conversation.find(message.get("item_id"))
        await self.emit(ev.RealtimeServerEventConversationItemRetrieved(item=_public(item)))

    async def _on_output_clear(self, message: dict) -> None:
        await self.cancel_response(reason="client_cancelled")
        await self.emit(ev.RealtimeServerEventOutputAudioBufferCleared(response_id=self._response_id))

    # ----------------------------------------------------------------------------- responses
    async def _on_response_create(self, message: dict) -> None:
        if self._response_task is not None:
            raise ClientError("a response is already in progress", code="conversation_already_has_active_response")
        await self.start_response(message.get("response") or {})

    async def _on_response_cancel(self, message: dict) -> None:
        if self._response_task is None:
            raise ClientError("no response is in progress", code="response_cancel_not_active")
        await self.cancel_response(reason="client_cancelled")

    async def start_response(
        self, options: dict, t_turn_end: float | None = None, llm_stream=None, turn: scopes.Scope | None = None
    ) -> None:
        """Start generating a reply to the conversation (``response.create``); ``llm_stream``:
        a preemptive chat stream started for exactly this response; ``turn``: the voice turn's
        trace it ends (a text turn starts its own; ``None`` with traces off)."""
        if self._response_task is not None:
            await self.cancel_response(reason="turn_detected")
        response_id = new_id("resp")
        self._response_id = response_id
        if turn is None and provider.active():
            turn = scopes.start_turn("text", self.id, self.settings.model, self.trace_link)
        with scopes.within(turn):  # the response task runs in the turn's trace
            task = asyncio.create_task(self.responses.respond(response_id, options, t_turn_end, llm_stream))
        self._response_task = task
        task.add_done_callback(lambda t: self._response_done(t))
        if turn is not None:
            task.add_done_callback(turn.end_with_task)

    @property
    def response_task(self) -> asyncio.Task | None:
        """The response in progress, if any."""
        return self._response_task

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

    def llm_messages(self, extra_instructions: str | None, turn_language: str | None = None) -> list[dict]:
        """The chat messages for the LLM: the system prompt (:meth:`SessionSettings.system_prompt`;
        ``turn_language`` stands for the last turn's detected language), then the conversation."""
        return self.conversation.messages(
            self.settings.system_prompt(extra_instructions, turn_language or self.turn_language)
        )

    def tool_specs(self) -> list[dict] | None:
        """The session's tools in the chat-completions ``tools`` shape, or ``None``."""
        return self.settings.tool_specs()

    # ----------------------------------------------------------------------------- lifecycle
    def spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """The client is gone: stop every piece of work it started."""
        self.closed = True
        self.input_audio.close()
        self.turns.drop_speculation()
        self.turns.close()
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

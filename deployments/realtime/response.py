"""The response pipeline of a realtime session: LLM stream -> tool calls and emotion tags ->
sentences -> TTS, with cancellation.

The LLM reply streams from the chat deployment; tool-call blocks are parsed out
(:class:`~deployments.tool_calls.ToolCallParser`), emotion tags are found even when split across
tokens (:class:`~deployments.realtime.text.TagScanner`), and the text is cut into sentences
(:class:`~deployments.realtime.text.SentenceSplitter`) that a TTS worker synthesises in order as
soon as each is complete, so the first ``response.audio.delta`` leaves before the LLM has
finished. Cancelling the task (barge-in, ``response.cancel``) closes the LLM and TTS streams on
their replicas and keeps in the conversation only what the client already received.

Audio out is base64 PCM16 mono 24 kHz in deltas of 200 ms (OpenAI's ``pcm16``).

(About 420 lines: the pipeline's stages share one :class:`ResponseState` and one cancellation
path, and each of the fourteen typed events it emits is spelled out where it is sent.)
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

import numpy as np

from deployments.protocol import realtime as ev
from deployments.protocol.realtime import new_id
from deployments.realtime.cascade import aclose
from deployments.realtime.conversation import public as _public
from deployments.realtime.text import SentenceSplitter, Tag, TagScanner, speakable
from deployments.tool_calls import ToolCallParser
from deployments.tracing import scopes
from models.audio import OPENAI_PCM_RATE
from models.tts.tags import find_tags, strip_tags

logger = logging.getLogger("ray.serve")

#: Audio delta size: 200 ms of PCM16 at 24 kHz.
DELTA_SAMPLES = 4800


class ResponsePipeline:
    """Produces the responses of one session.

    Args:
        session: the owning :class:`~deployments.realtime.session.RealtimeSession`: its
            settings (modalities, voice, temperature, max_output_tokens, tools), its
            conversation, its cascade and ``emit``. Effects on the rest of the session go
            back through it.
    """

    def __init__(self, session: Any):
        self.session = session

    def chat_request(
        self, options: dict, extra: list[dict] | None = None, language: str | None = None
    ) -> tuple[list[dict], dict, list | None]:
        """``(messages, params, tools)`` of the LLM call a response with ``options`` makes;
        ``extra`` messages are appended and ``language`` stands for the turn's detected language
        (a speculative user turn not yet in the conversation)."""
        limit = options.get("max_output_tokens", self.session.settings.max_output_tokens)
        params = {
            "max_tokens": self.session.config.max_response_tokens if limit == "inf" else int(limit),
            "temperature": float(options.get("temperature", self.session.settings.temperature)),
            "top_p": 0.95,
        }
        messages = self.session.llm_messages(options.get("instructions"), language) + list(extra or ())
        return messages, params, self.session.tool_specs()

    async def respond(self, response_id: str, options: dict, t_turn_end: float | None, llm_stream: Any = None) -> None:
        """Run one response to the end: ``response.created``, the streamed text / audio,
        tool calls, ``response.done`` (``completed``, ``cancelled`` when the task is cancelled,
        or ``failed``). ``t_turn_end`` (``time.monotonic()`` when the user's turn was decided)
        is given for voice turns and fills the latency breakdown in ``response.metadata``.
        ``llm_stream`` is a chat stream already started for exactly :meth:`chat_request`
        ``(options)`` (preemptive generation); without it the LLM is called here."""
        modalities = options.get("output_modalities", options.get("modalities")) or self.session.settings.modalities
        audio_out = "audio" in modalities and self.session.cascade.tts is not None
        self.session.cancel_reason = None
        state = ResponseState(response_id)
        t_start = time.monotonic()
        metrics = dict(self.session.last_turn_metrics) if t_turn_end is not None else {}
        state.metrics = metrics
        state.t_start = t_start
        await self.session.emit(
            ev.RealtimeServerEventResponseCreated(response=self._response_object(state, "in_progress"))
        )
        item = {
            "id": new_id("item"),
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
            "_text": "",
            "_spans": [],
        }
        state.message_item = item
        tts_streams: list[Any] = []
        sentence_queue: asyncio.Queue = asyncio.Queue()
        tts_task: asyncio.Task | None = None
        try:
            messages, params, tools = self.chat_request(options)
            if llm_stream is None:
                llm_stream = self.session.cascade.chat(messages, params, tools)
            parser = ToolCallParser() if tools else None
            # speculative pipeline: the first TTS request may start at a clause (4+ words)
            scanner, splitter = (
                TagScanner(),
                SentenceSplitter(first_clause=self.session.settings.pipeline == "speculative"),
            )
            started_item = False

            async def open_item() -> None:
                nonlocal started_item
                if started_item:
                    return
                started_item = True
                state.output.append(item)
                await self.session.emit(
                    ev.RealtimeServerEventResponseOutputItem(
                        type="response.output_item.added", response_id=response_id, output_index=0, item=_public(item)
                    )
                )
                await self.session.item_created(item, self.session.conversation.last_id)
                self.session.conversation.append(item)
                part = {"type": self.session.part_type("audio" if audio_out else "text")}
                part["transcript" if audio_out else "text"] = ""
                item["content"].append(part)
                await self.session.emit(
                    ev.RealtimeServerEventResponseContentPart(
                        type="response.content_part.added",
                        response_id=response_id,
                        item_id=item["id"],
                        output_index=0,
                        content_index=0,
                        part=_event_part(part),
                    )
                )

            if audio_out:
                tts_task = asyncio.create_task(self._speak(state, sentence_queue, tts_streams, metrics, t_turn_end))

            first_token = True
            async for chunk in llm_stream:
                piece = chunk.get("text", "")
                if first_token and piece:
                    first_token = False
                    # a preemptive stream may have had its first token before the response began
                    t_first = getattr(llm_stream, "t_first_item", None) or time.monotonic()
                    metrics["llm_first_token_ms"] = max(0.0, t_first - t_start) * 1000.0
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
            reason = self.session.cancel_reason or "client_cancelled"
            await self.session.emit(ev.RealtimeServerEventResponseCancelled(response_id=response_id, reason=reason))
            await self._finish(state, "cancelled", {"type": "cancelled", "reason": reason})
            raise
        except Exception as exc:
            await aclose(llm_stream)
            for s in tts_streams:
                await aclose(s)
            if tts_task is not None:
                tts_task.cancel()
            logger.exception("session %s: response %s failed", self.session.id, response_id)
            await self._finish(
                state,
                "failed",
                {
                    "type": "failed",
                    "error": {"type": "server_error", "code": "response_failed", "message": str(exc)[:300]},
                },
            )

    async def _route_text(
        self,
        piece: str,
        scanner: TagScanner | None,
        splitter: SentenceSplitter,
        queue: asyncio.Queue,
        state: ResponseState,
        audio_out: bool,
        tags: list | None = None,
    ) -> None:
        if scanner is not None:
            piece, tags = scanner.feed(piece)
        if audio_out:
            for sentence in splitter.feed(piece):
                await self._sentence(sentence, queue, state, audio_out)
            return
        for tag in tags or ():
            await self.session.emit(ev.RealtimeServerEventEmotionUpdated(state=tag.state, tag=tag.tag, known=tag.known))
        clean = strip_tags(piece) if "[" in piece else piece
        if clean:
            state.sent_text += clean
            state.message_item["content"][0]["text"] += clean
            await self.session.emit(
                ev.RealtimeServerEventResponseDelta(
                    type="response.text.delta",
                    response_id=state.response_id,
                    item_id=state.message_item["id"],
                    delta=clean,
                )
            )

    async def _sentence(self, sentence: str, queue: asyncio.Queue, state: ResponseState, audio_out: bool) -> None:
        if audio_out:
            state.metrics.setdefault("first_clause_ms", (time.monotonic() - state.t_start) * 1000.0)
            await queue.put(sentence)

    async def _speak(
        self, state: ResponseState, queue: asyncio.Queue, streams: list, metrics: dict, t_turn_end: float | None
    ) -> None:
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
            await self.session.emit(
                ev.RealtimeServerEventResponseDelta(
                    type="response.audio_transcript.delta",
                    response_id=state.response_id,
                    item_id=item["id"],
                    delta=transcript_delta,
                )
            )
            for name in find_tags(sentence):
                tag = Tag(name, f"[{name}]")
                await self.session.emit(
                    ev.RealtimeServerEventEmotionUpdated(state=tag.state, tag=tag.tag, known=tag.known)
                )
            if not speakable(sentence):
                continue
            t_tts = time.monotonic()
            stream = self.session.cascade.speech(
                sentence, self.session.settings.voice, self.session.settings.reference, OPENAI_PCM_RATE
            )
            streams.append(stream)
            first = True
            async for chunk in stream:
                if first:
                    first = False
                    if "tts_first_chunk_ms" not in metrics:
                        metrics["tts_first_chunk_ms"] = (time.monotonic() - t_tts) * 1000.0
                        if t_turn_end is not None:
                            # the user's speech ended turn_detector_wait_ms before the turn was decided
                            metrics["voice_to_voice_ms"] = (time.monotonic() - t_turn_end) * 1000.0 + metrics.get(
                                "turn_detector_wait_ms", 0.0
                            )
                for i in range(0, len(chunk), DELTA_SAMPLES):
                    piece = chunk[i : i + DELTA_SAMPLES]
                    pcm = (np.clip(piece, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
                    state.audio_ms += len(piece) * 1000.0 / OPENAI_PCM_RATE
                    await self.session.emit(
                        ev.RealtimeServerEventResponseDelta(
                            type="response.audio.delta",
                            response_id=state.response_id,
                            item_id=item["id"],
                            delta=base64.b64encode(pcm).decode(),
                        )
                    )
            streams.remove(stream)

    async def _finish_item(self, state: ResponseState, audio_out: bool) -> None:
        item = state.message_item
        rid, iid = state.response_id, item["id"]
        if audio_out:
            item["_text"] = " ".join(s for _, s in item["_spans"])
            await self.session.emit(ev.RealtimeServerEventResponseAudioDone(response_id=rid, item_id=iid))
            await self.session.emit(
                ev.RealtimeServerEventResponseAudioTranscriptDone(
                    response_id=rid, item_id=iid, transcript=item["content"][0]["transcript"]
                )
            )
        else:
            item["_text"] = state.sent_text
            await self.session.emit(
                ev.RealtimeServerEventResponseTextDone(response_id=rid, item_id=iid, text=state.sent_text)
            )
        await self.session.emit(
            ev.RealtimeServerEventResponseContentPart(
                type="response.content_part.done",
                response_id=rid,
                item_id=iid,
                output_index=0,
                content_index=0,
                part=_event_part(item["content"][0]),
            )
        )
        item["status"] = "completed"
        await self.session.emit(
            ev.RealtimeServerEventResponseOutputItem(
                type="response.output_item.done", response_id=rid, output_index=0, item=_public(item)
            )
        )

    async def _emit_tool_call(self, state: ResponseState, call) -> None:
        index = len(state.output)
        item = {
            "id": new_id("item"),
            "object": "realtime.item",
            "type": "function_call",
            "status": "completed",
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments,
        }
        state.output.append(item)
        self.session.conversation.append(item)
        self.session.pending_tool_calls.add(call.id)
        rid = state.response_id
        await self.session.emit(
            ev.RealtimeServerEventResponseOutputItem(
                type="response.output_item.added",
                response_id=rid,
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
        )
        await self.session.emit(
            ev.RealtimeServerEventResponseFunctionCallArgumentsDelta(
                response_id=rid, item_id=item["id"], output_index=index, call_id=call.id, delta=call.arguments
            )
        )
        await self.session.emit(
            ev.RealtimeServerEventResponseFunctionCallArgumentsDone(
                response_id=rid,
                item_id=item["id"],
                output_index=index,
                call_id=call.id,
                name=call.name,
                arguments=call.arguments,
            )
        )
        await self.session.emit(
            ev.RealtimeServerEventResponseOutputItem(
                type="response.output_item.done", response_id=rid, output_index=index, item=_public(item)
            )
        )

    def _response_object(self, state: ResponseState, status: str, details: dict | None = None) -> dict:
        prompt, completion = state.usage
        body = {
            "id": state.response_id,
            "object": "realtime.response",
            "status": status,
            "output": [_public(i) for i in state.output],
            "conversation_id": self.session.id,
            "usage": {"total_tokens": prompt + completion, "input_tokens": prompt, "output_tokens": completion},
            "requires_action": bool(state.tool_calls) and status == "completed",
            # latency breakdown of a voice turn (ms, as strings: OpenAI's metadata is a string map)
            "metadata": {k: v if isinstance(v, str) else f"{v:.1f}" for k, v in state.metrics.items()} or None,
        }
        if details is not None:
            body["status_details"] = details
        return body

    async def _finish(self, state: ResponseState, status: str, details: dict | None = None) -> None:
        response = self._response_object(state, status, details)
        scopes.annotate_response(response)  # the turn's span: status, usage, latency breakdown
        await self.session.emit(ev.RealtimeServerEventResponseDone(response=response))


class ResponseState:
    """What one response has produced so far: output items, text and audio sent, usage, timing."""

    def __init__(self, response_id: str):
        self.response_id = response_id
        self.output: list[dict] = []
        self.message_item: dict = {}
        self.tool_calls: list = []
        self.usage = (0, 0)
        self.sent_text = ""
        self.audio_ms = 0.0
        self.metrics: dict[str, float | str] = {}
        self.t_start = time.monotonic()


def _event_part(part: dict) -> dict:
    """A content part as ``response.content_part.*`` events carry it: OpenAI keeps the part
    types ``audio`` / ``text`` there in both the beta and the GA protocol, while GA items name
    their content ``output_audio`` / ``output_text``."""
    out = dict(part)
    out["type"] = {"output_audio": "audio", "output_text": "text"}.get(part["type"], part["type"])
    return out

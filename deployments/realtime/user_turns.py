"""User turns of one realtime session: from detected speech to a committed, transcribed turn.

Owns the turn in progress: the speculation on it
(:class:`~deployments.realtime.speculation.SpeculativeTurn`, started at each pause in the
speculative pipeline, voided when speech resumes), the speculative work discarded so far, and
the lock that keeps committed turns in order. The input audio buffer calls in here
(speech started / paused / resumed / stopped); what follows goes back through the session:
barge-in cancels its response, a committed turn becomes a conversation item, its transcript
an ``input_audio_transcription`` event, and its reply a response (on the preemptive LLM stream
when the request is unchanged).

``response.done.response.metadata`` gets the turn's part from here: ``turn_detector``
(``silence`` / ``semantic`` / ``manual``) and ``turn_detector_wait_ms``, ``stt_ms`` and
``stt_overlap_ms`` (STT run before the turn was decided), ``speculation`` (``hit`` / ``miss``
/ ``none``) and the discarded work (``speculative_stt_discarded``,
``speculative_llm_discarded``).

With traces on, a voice turn is one trace (:func:`deployments.tracing.scopes.start_turn`): it
opens at speech start (or at a manual commit), holds the VAD, end-of-turn and speculative calls
made while the user speaks (:attr:`Cascade.open_turn`), passes at commit to the turn's
transcription task and then to its response, which ends it; a turn that gets no response ends
after its transcription, one whose speech never became a turn ends ``dropped`` at the next speech
start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from deployments.protocol import realtime as ev
from deployments.realtime.input_audio_buffer import TurnEnd
from deployments.realtime.speculation import ChatRequest, SpeculativeTurn
from deployments.tracing import provider, scopes
from models.audio import OPENAI_PCM_RATE

logger = logging.getLogger("ray.serve")


class UserTurns:
    """The user's turns of one session.

    Args:
        session: the owning :class:`~deployments.realtime.session.RealtimeSession` (settings,
            cascade, conversation, emit, responses).
    """

    def __init__(self, session: Any):
        self.session = session
        self._speculation: SpeculativeTurn | None = None
        self._discarded = [0, 0]  # speculative (STT, LLM) work thrown away in the current turn
        self._lock = asyncio.Lock()  # committed turns are transcribed and answered in order

    async def speech_started(self, item_id: str, audio_start_ms: float) -> None:
        """Speech began: a new turn (earlier speculation is void); barge-in cancels a reply."""
        self.drop_speculation()
        self._discarded = [0, 0]
        cascade = self.session.cascade
        if cascade.open_turn is not None:  # the earlier speech never became a turn
            cascade.open_turn.end("dropped")
        cascade.open_turn = self._start_trace()
        await self.session.emit(
            ev.RealtimeServerEventInputAudioBufferSpeechStarted(audio_start_ms=int(audio_start_ms), item_id=item_id)
        )
        if self.session.settings.turn_detection.interrupt_response and self.session.response_task is not None:
            await self.session.cancel_response(reason="turn_detected")

    async def speech_paused(self, item_id: str, audio_end_ms: float, audio: np.ndarray) -> None:
        """First short silence: transcribe the utterance so far, then start the LLM on it."""
        self.drop_speculation()
        if self.session.settings.pipeline == "speculative" and self.session.cascade.stt is not None:
            with scopes.within(self.session.cascade.open_turn):  # its task keeps this turn
                self._speculation = SpeculativeTurn(
                    self.session.cascade,
                    item_id,
                    audio_end_ms,
                    audio,
                    OPENAI_PCM_RATE,
                    self.session.settings.transcription_language,
                    self._speculative_request,
                )

    def _start_trace(self) -> scopes.Scope | None:
        """A new voice turn's trace (``None`` when traces are off)."""
        if not provider.active():
            return None
        s = self.session
        return scopes.start_turn("voice", s.id, s.settings.model, s.trace_link)

    def close(self) -> None:
        """The session is closing: end the voice turn in progress, if any."""
        turn, self.session.cascade.open_turn = self.session.cascade.open_turn, None
        if turn is not None:
            turn.end("closed")

    def _speculative_request(self, result: dict) -> ChatRequest | None:
        """The chat request the turn would make with this transcript, or ``None`` when no
        response would follow it now."""
        s = self.session
        if not s.settings.turn_detection.create_response or s.pending_tool_calls or s.response_task is not None:
            return None
        user = {"role": "user", "content": result.get("text", "").strip()}
        return self.session.responses.chat_request({}, extra=[user], language=result.get("language"))

    async def speech_resumed(self, item_id: str) -> None:
        """Speech came back after a pause: the speculation on the shorter utterance is void."""
        self.drop_speculation()

    def drop_speculation(self) -> None:
        """Cancel speculative work in flight, counting it as discarded in this turn."""
        spec, self._speculation = self._speculation, None
        if spec is not None:
            stt, llm = spec.cancel()
            self._discarded[0] += stt
            self._discarded[1] += llm

    async def speech_stopped(self, item_id: str, audio_end_ms: float, audio: np.ndarray, how: TurnEnd) -> None:
        """The turn ended (silence limit or end-of-turn model): commit it, with the speculation
        if it covered the same audio."""
        t_stop = time.monotonic()
        spec = self._speculation
        if spec is not None and spec.covers(item_id, audio_end_ms):
            self._speculation = None
        else:
            self.drop_speculation()
            spec = None
        await self.session.emit(
            ev.RealtimeServerEventInputAudioBufferSpeechStopped(audio_end_ms=int(audio_end_ms), item_id=item_id)
        )
        await self.commit(audio, item_id, t_stop, how, spec)

    async def commit(
        self,
        audio: np.ndarray,
        item_id: str,
        t_stop: float,
        how: TurnEnd | None = None,
        spec: SpeculativeTurn | None = None,
    ) -> None:
        """Commit ``audio`` (float32 at 24 kHz) as user item ``item_id``, then transcribe it and
        answer in the background. ``t_stop``: ``time.monotonic()`` of the turn decision;
        ``how``: the detector's verdict (``None`` for a manual commit); ``spec``: speculation on
        exactly this audio."""
        previous = self.session.conversation.last_id
        await self.session.emit(
            ev.RealtimeServerEventInputAudioBufferCommitted(previous_item_id=previous, item_id=item_id)
        )
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio"}],
            "_text": "",
        }  # transcript added when known
        self.session.conversation.append(item)
        await self.session.item_created(item, previous)
        discarded, self._discarded = self._discarded, [0, 0]
        cascade = self.session.cascade
        turn, cascade.open_turn = cascade.open_turn or self._start_trace(), None
        with scopes.within(turn):  # the transcription task, and the response it starts, run in the turn
            self.session.spawn(self._transcribe_turn(item, audio, t_stop, how, spec, discarded, turn))

    async def _transcribe_turn(
        self,
        item: dict,
        audio: np.ndarray,
        t_stop: float,
        how: TurnEnd | None,
        spec: SpeculativeTurn | None,
        discarded: list[int],
        turn: scopes.Scope | None = None,
    ) -> None:
        """Transcribe a committed turn (or take the speculative transcript of the same audio),
        then start its response, on the preemptive LLM stream when it still fits; ``turn``: its
        trace, handed to the response (or ended here when none follows)."""
        outcome = "cancelled"
        try:
            outcome = await self._transcribe_and_respond(item, audio, t_stop, how, spec, discarded, turn)
        finally:
            if turn is not None and outcome != "responded":
                turn.end(outcome)

    async def _transcribe_and_respond(
        self,
        item: dict,
        audio: np.ndarray,
        t_stop: float,
        how: TurnEnd | None,
        spec: SpeculativeTurn | None,
        discarded: list[int],
        turn: scopes.Scope | None,
    ) -> str:
        """:meth:`_transcribe_turn`'s work; returns the turn's outcome: ``responded`` (the
        response owns the trace now), ``transcription_failed`` or ``no_response``."""
        async with self._lock:
            t0 = time.monotonic()
            try:
                if spec is not None:
                    result = await spec.transcription()
                else:
                    result = await self.session.cascade.transcribe(
                        samples=audio,
                        sample_rate=OPENAI_PCM_RATE,
                        language=self.session.settings.transcription_language,
                    )
            except Exception as exc:
                if spec is not None:
                    spec.cancel()
                logger.warning("session %s: transcription failed: %s", self.session.id, exc)
                await self.session.emit(
                    ev.RealtimeServerEventConversationItemInputAudioTranscriptionFailed(
                        item_id=item["id"],
                        error={
                            "type": "transcription_error",
                            "code": "stt_failed",
                            "message": "transcription failed",
                            "param": None,
                        },
                    )
                )
                return "transcription_failed"
            text = result.get("text", "").strip()
            item["content"][0]["transcript"] = text
            item["_text"] = text
            self.session.turn_language = result.get("language")
            await self.session.emit(
                ev.RealtimeServerEventConversationItemInputAudioTranscriptionCompleted(
                    item_id=item["id"],
                    transcript=text,
                    usage={"type": "duration", "seconds": round(len(audio) / OPENAI_PCM_RATE, 3)},
                )
            )
            if not (text and self.session.settings.turn_detection.create_response):
                if spec is not None:
                    spec.cancel()
                return "no_response"
            llm = spec.take_llm(self.session.responses.chat_request({})) if spec is not None else None
            self.session.last_turn_metrics = self._turn_metrics(how, spec, t0, t_stop, llm is not None, discarded)
            await self.session.start_response({}, t_turn_end=t_stop, llm_stream=llm, turn=turn)
            return "responded"

    def _turn_metrics(
        self,
        how: TurnEnd | None,
        spec: SpeculativeTurn | None,
        t0: float,
        t_stop: float,
        hit: bool,
        discarded: list[int],
    ) -> dict:
        """The turn's part of ``response.metadata``: detector and its wait (audio ms of silence
        heard after the speech), STT time and how much of it ran before the turn was decided,
        whether the preemptive LLM stream was used (``hit``), and speculative work discarded."""
        if spec is not None:
            stt_ms = ((spec.t_stt_end or time.monotonic()) - spec.t_stt_start) * 1000.0
            overlap_ms = max(0.0, min(spec.t_stt_end or t_stop, t_stop) - spec.t_stt_start) * 1000.0
        else:
            stt_ms, overlap_ms = (time.monotonic() - t0) * 1000.0, 0.0
        speculated = spec is not None or any(discarded)
        return {
            "turn_detector": how.detector if how else "manual",
            "turn_detector_wait_ms": how.wait_ms if how else 0.0,
            "stt_ms": stt_ms,
            "stt_overlap_ms": overlap_ms,
            "speculation": "hit" if hit else ("miss" if speculated else "none"),
            "speculative_stt_discarded": float(discarded[0]),
            "speculative_llm_discarded": float(
                discarded[1] + (1 if spec is not None and not hit and spec.request is not None else 0)
            ),
        }

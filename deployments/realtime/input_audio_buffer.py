"""The input audio buffer of one realtime session, with turn detection.

Owns the audio the client appended and has not committed yet (PCM at 24 kHz, OpenAI's
``pcm16`` rate), the session's VAD stream (resampled to the VAD model's rate, 16 kHz for silero,
scored in frames of 512 samples), its :class:`TurnDetector` and the end-of-turn check run at each
pause (the VAD deployment's Smart Turn model, on the utterance's last 8 s at the VAD rate). It
knows nothing of the conversation or responses: speech start, pause, resume and stop go back to
the session through callbacks, which decide what follows (cancel a response, speculate, commit).

Times are audio time in ms since the session's first appended sample, as OpenAI's
``audio_start_ms`` / ``audio_end_ms`` count them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from deployments.protocol.realtime import new_id
from deployments.realtime.cascade import Cascade
from deployments.realtime.turns import EAGERNESS_MAX_WAIT_MS, FALLBACK_SILENCE_MS, TurnDetectionConfig, TurnDetector
from models.audio import OPENAI_PCM_RATE, StreamResampler

logger = logging.getLogger("ray.serve")

#: Audio the end-of-turn model sees: the utterance's last 8 s (Smart Turn v3's window).
END_OF_TURN_WINDOW_S = 8.0
#: End-of-turn probability at or above which the utterance is complete (Smart Turn's 0.5).
END_OF_TURN_THRESHOLD = 0.5


@dataclass
class TurnEnd:
    """How a turn ended: ``detector`` is ``"silence"`` (the silence limit closed it) or
    ``"semantic"`` (the end-of-turn model called it complete at a pause); ``wait_ms`` is the
    silence heard after the last speech frame before the decision (audio ms);
    ``end_of_turn_ms`` is the model's call time (wall ms), when it ran."""

    detector: str
    wait_ms: float
    end_of_turn_ms: float | None = None


#: ``(item_id, audio_start_ms)`` when speech starts.
SpeechStarted = Callable[[str, float], Awaitable[None]]
#: ``(item_id, audio_end_ms, audio, how)`` when the turn ends; ``audio`` is the turn's float32
#: samples at :data:`~models.audio.OPENAI_PCM_RATE`, already taken out of the buffer.
SpeechStopped = Callable[[str, float, np.ndarray, TurnEnd], Awaitable[None]]
#: ``(item_id, audio_end_ms, audio)`` at the first short silence; ``audio`` is a copy of what a
#: commit now would take (the buffer keeps it).
SpeechPaused = Callable[[str, float, np.ndarray], Awaitable[None]]
#: ``(item_id,)`` when speech returns after a pause: the turn goes on.
SpeechResumed = Callable[[str], Awaitable[None]]


async def _ignore(*_: Any) -> None:
    return None


class InputAudioBuffer:
    """Audio appended by ``input_audio_buffer.append``, scored by server VAD.

    Args:
        cascade: the role calls (``vad_info``, ``vad_score``).
        max_buffer_s: audio kept while no turn is committed (s); older audio is dropped.
        on_speech_started: called when VAD detects speech (see :data:`SpeechStarted`).
        on_speech_stopped: called when the turn ends (silence limit or end-of-turn model).
        on_speech_paused: called at the first ``pause_ms`` of silence after speech.
        on_speech_resumed: called when speech returns after a pause.
        stop_padding_ms: audio kept after the last speech frame in a committed turn (ms).
    """

    def __init__(
        self,
        cascade: Cascade,
        max_buffer_s: float,
        on_speech_started: SpeechStarted,
        on_speech_stopped: SpeechStopped,
        on_speech_paused: SpeechPaused = _ignore,
        on_speech_resumed: SpeechResumed = _ignore,
        stop_padding_ms: float = 200.0,
    ):
        self.cascade = cascade
        self.max_buffer_s = max_buffer_s
        self._on_started = on_speech_started
        self._on_stopped = on_speech_stopped
        self._on_paused = on_speech_paused
        self._on_resumed = on_speech_resumed
        self.stop_padding_ms = stop_padding_ms
        self.turn_detection = TurnDetectionConfig()
        self.pause_ms: float | None = None
        self.semantic_end = False
        self._lock = asyncio.Lock()  # frame decisions and end-of-turn verdicts, one at a time
        self._eot_task: asyncio.Task | None = None
        self._eot_supported = False
        self._utterance: list[np.ndarray] = []  # VAD-rate frames of the current utterance (<= 8 s)
        self._pieces: list[np.ndarray] = []  # 24 kHz float32 pieces not yet committed
        self._start_ms = 0.0  # audio time of the first buffered sample
        self.audio_ms = 0.0  # audio time received so far
        self._resampler: StreamResampler | None = None
        self._pending = np.zeros(0, dtype=np.float32)  # VAD-rate samples short of a frame
        self._vad_state: Any = None
        self._frame = 512
        self._vad_rate = 16000
        self._vad_time_ms = 0.0
        self._detector: TurnDetector | None = None
        self._speech_item_id: str | None = None
        self._speech_start_ms = 0.0

    def configure(
        self, turn_detection: TurnDetectionConfig, pause_ms: float | None = None, semantic_end: bool = False
    ) -> None:
        """New turn detection; the detector restarts with it.

        Args:
            turn_detection: the session's ``turn_detection``.
            pause_ms: report ``paused`` after this much silence (ms); ``None``: no pauses.
            semantic_end: ask the end-of-turn model at each pause and end the turn on a
                "complete" verdict (always on for ``semantic_vad``, which also needs pauses).
        """
        self.turn_detection = turn_detection
        self.pause_ms = pause_ms
        self.semantic_end = semantic_end or turn_detection.type == "semantic_vad"
        self._cancel_check()
        self._detector = None

    async def append(self, samples: np.ndarray) -> None:
        """Add float32 samples at :data:`~models.audio.OPENAI_PCM_RATE` and run server VAD over them (unless turn
        detection is off or the cascade has no VAD model)."""
        self._pieces.append(samples)
        self.audio_ms += len(samples) * 1000.0 / OPENAI_PCM_RATE
        self._trim()
        if self.turn_detection.type == "none" or self.cascade.vad is None:
            return
        await self._run_vad(samples)

    def take(self, start_ms: float | None = None, end_ms: float | None = None) -> np.ndarray:
        """Remove and return the buffered audio; ``start_ms`` / ``end_ms`` (audio time) clip it."""
        audio = self.peek(start_ms, end_ms)
        self._pieces = []
        self._start_ms = self.audio_ms
        return audio

    def peek(self, start_ms: float | None = None, end_ms: float | None = None) -> np.ndarray:
        """A copy of the buffered audio between ``start_ms`` and ``end_ms`` (audio time), kept."""
        audio = np.concatenate(self._pieces) if self._pieces else np.zeros(0, dtype=np.float32)
        base = self._start_ms
        lo = 0 if start_ms is None else max(0, int((start_ms - base) * OPENAI_PCM_RATE / 1000))
        hi = len(audio) if end_ms is None else min(len(audio), int((end_ms - base) * OPENAI_PCM_RATE / 1000))
        return audio[lo:hi].copy()

    def reset_turn(self) -> None:
        """Forget a speech segment in progress (after a manual commit or a clear)."""
        self._cancel_check()
        self._utterance = []
        if self._detector is not None:
            self._detector.reset()

    def close(self) -> None:
        """Stop an end-of-turn check in flight (the session is closing)."""
        self._cancel_check()

    def _trim(self) -> None:
        limit = int(self.max_buffer_s * OPENAI_PCM_RATE)
        total = sum(len(b) for b in self._pieces)
        while total > limit and len(self._pieces) > 1:
            dropped = self._pieces.pop(0)
            total -= len(dropped)
            self._start_ms += len(dropped) * 1000.0 / OPENAI_PCM_RATE

    async def _run_vad(self, samples: np.ndarray) -> None:
        if self._detector is None:
            info = await self.cascade.vad_info()
            self._vad_rate, self._frame = int(info.get("sample_rate", 16000)), int(info.get("frame_size", 512))
            self._eot_supported = bool(info.get("end_of_turn"))
            self._detector = self._new_detector()
            if self._resampler is None:
                self._resampler = StreamResampler(OPENAI_PCM_RATE, self._vad_rate)
                self._vad_time_ms = self.audio_ms - len(samples) * 1000.0 / OPENAI_PCM_RATE
        pcm = np.concatenate([self._pending, self._resampler.process(samples)])
        n = len(pcm) // self._frame
        self._pending = pcm[n * self._frame :]
        if n == 0:
            return
        frames = pcm[: n * self._frame].reshape(n, self._frame)
        probs, self._vad_state = await self.cascade.vad_score(frames, self._vad_state)
        frame_ms = self._frame * 1000.0 / self._vad_rate
        async with self._lock:
            for frame, p in zip(frames, probs, strict=True):
                self._vad_time_ms += frame_ms
                await self._decide(self._detector.step(float(p), self._vad_time_ms), frame)

    def _new_detector(self) -> TurnDetector:
        td = self.turn_detection
        semantic = self.semantic_end and self._eot_supported
        limit = None
        if td.type == "semantic_vad":
            limit = EAGERNESS_MAX_WAIT_MS[td.eagerness] if semantic else FALLBACK_SILENCE_MS
        pause = self.pause_ms if self.pause_ms is not None else (200.0 if semantic else None)
        return TurnDetector(td, frame_ms=self._frame * 1000.0 / self._vad_rate, silence_limit_ms=limit, pause_ms=pause)

    async def _decide(self, decision: str | None, frame: np.ndarray) -> None:
        detector = self._detector
        if detector.in_speech or decision is not None:
            self._utterance.append(frame)
            keep = int(END_OF_TURN_WINDOW_S * self._vad_rate / self._frame)
            if len(self._utterance) > keep:
                del self._utterance[: len(self._utterance) - keep]
        if decision == "started":
            self._speech_item_id = new_id("item")
            self._utterance = [frame]
            start = max(self._start_ms, detector.speech_start_ms - self.turn_detection.prefix_padding_ms)
            self._speech_start_ms = start
            await self._on_started(self._speech_item_id, start)
        elif decision == "paused":
            end = detector.speech_end_ms
            item_id = self._speech_item_id or new_id("item")
            self._speech_item_id = item_id
            if self.semantic_end and self._eot_supported:
                clip = np.concatenate(self._utterance)
                self._eot_task = asyncio.create_task(self._check_end_of_turn(detector, clip))
            await self._on_paused(item_id, end, self.peek(self._speech_start_ms, end + self.stop_padding_ms))
        elif decision == "resumed":
            self._cancel_check()
            await self._on_resumed(self._speech_item_id or "")
        elif decision == "stopped":
            self._cancel_check()
            await self._end_turn(TurnEnd("silence", detector.silence_ms))
        elif decision == "dropped":
            self._cancel_check()
            self._speech_item_id = None
            self._utterance = []

    async def _end_turn(self, how: TurnEnd) -> None:
        end = self._detector.speech_end_ms
        item_id = self._speech_item_id or new_id("item")
        self._speech_item_id = None
        self._utterance = []
        audio = self.take(self._speech_start_ms, end + self.stop_padding_ms)
        await self._on_stopped(item_id, end, audio, how)

    async def _check_end_of_turn(self, detector: TurnDetector, clip: np.ndarray) -> None:
        """Ask the end-of-turn model about the paused utterance; end the turn if it is complete
        and the pause still holds."""
        t0 = time.monotonic()
        try:
            prob = await self.cascade.end_of_turn(clip)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the silence limit still ends the turn
            logger.warning("end-of-turn check failed: %r", exc)
            return
        model_ms = (time.monotonic() - t0) * 1000.0
        if prob < END_OF_TURN_THRESHOLD:
            return
        async with self._lock:
            if self._eot_task is not asyncio.current_task() or detector is not self._detector:
                return
            self._eot_task = None
            if detector.end_turn():
                await self._end_turn(TurnEnd("semantic", detector.silence_ms, model_ms))

    def _cancel_check(self) -> None:
        task, self._eot_task = self._eot_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

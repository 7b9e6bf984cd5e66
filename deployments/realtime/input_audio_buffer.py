"""The input audio buffer of one realtime session, with server VAD turn detection.

Owns the audio the client appended and has not committed yet (PCM at 24 kHz, OpenAI's
``pcm16`` rate), the session's VAD stream (resampled to the VAD model's rate, 16 kHz for silero,
scored in frames of 512 samples) and its :class:`TurnDetector`. It knows nothing of the
conversation or responses: a detected speech start or stop goes back to the session through the
two callbacks, which decide what follows (cancel a response, commit a turn).

Times are audio time in ms since the session's first appended sample, as OpenAI's
``audio_start_ms`` / ``audio_end_ms`` count them.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import numpy as np

from deployments.realtime.cascade import Cascade
from deployments.realtime_protocol import new_id
from deployments.realtime.turns import TurnDetectionConfig, TurnDetector
from models.audio import StreamResampler

#: Sample rate (Hz) of realtime PCM16 audio in and out (OpenAI's ``pcm16``).
RATE = 24000

#: ``(item_id, audio_start_ms)`` when speech starts.
SpeechStarted = Callable[[str, float], Awaitable[None]]
#: ``(item_id, audio_end_ms, audio)`` when speech stops; ``audio`` is the turn's float32 samples
#: at :data:`RATE`, already taken out of the buffer.
SpeechStopped = Callable[[str, float, np.ndarray], Awaitable[None]]


class InputAudioBuffer:
    """Audio appended by ``input_audio_buffer.append``, scored by server VAD.

    Args:
        cascade: the role calls (``vad_info``, ``vad_score``).
        max_buffer_s: audio kept while no turn is committed (s); older audio is dropped.
        on_speech_started: called when VAD detects speech (see :data:`SpeechStarted`).
        on_speech_stopped: called when the silence window closes after speech.
        stop_padding_ms: audio kept after the last speech frame in a committed turn (ms).
    """

    def __init__(self, cascade: Cascade, max_buffer_s: float, on_speech_started: SpeechStarted,
                 on_speech_stopped: SpeechStopped, stop_padding_ms: float = 200.0):
        self.cascade = cascade
        self.max_buffer_s = max_buffer_s
        self._on_started = on_speech_started
        self._on_stopped = on_speech_stopped
        self.stop_padding_ms = stop_padding_ms
        self.turn_detection = TurnDetectionConfig()
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

    def configure(self, turn_detection: TurnDetectionConfig) -> None:
        """New ``turn_detection`` settings; the detector restarts with them."""
        self.turn_detection = turn_detection
        self._detector = None

    async def append(self, samples: np.ndarray) -> None:
        """Add float32 samples at :data:`RATE` and run server VAD over them (unless turn
        detection is off or the cascade has no VAD model)."""
        self._pieces.append(samples)
        self.audio_ms += len(samples) * 1000.0 / RATE
        self._trim()
        if self.turn_detection.type == "none" or self.cascade.vad is None:
            return
        await self._run_vad(samples)

    def take(self, start_ms: float | None = None, end_ms: float | None = None) -> np.ndarray:
        """Remove and return the buffered audio; ``start_ms`` / ``end_ms`` (audio time) clip it."""
        audio = np.concatenate(self._pieces) if self._pieces else np.zeros(0, dtype=np.float32)
        base = self._start_ms
        self._pieces = []
        self._start_ms = self.audio_ms
        lo = 0 if start_ms is None else max(0, int((start_ms - base) * RATE / 1000))
        hi = len(audio) if end_ms is None else min(len(audio), int((end_ms - base) * RATE / 1000))
        return audio[lo:hi]

    def reset_turn(self) -> None:
        """Forget a speech segment in progress (after a manual commit or a clear)."""
        if self._detector is not None:
            self._detector.reset()

    def _trim(self) -> None:
        limit = int(self.max_buffer_s * RATE)
        total = sum(len(b) for b in self._pieces)
        while total > limit and len(self._pieces) > 1:
            dropped = self._pieces.pop(0)
            total -= len(dropped)
            self._start_ms += len(dropped) * 1000.0 / RATE

    async def _run_vad(self, samples: np.ndarray) -> None:
        if self._detector is None:
            info = await self.cascade.vad_info()
            self._vad_rate, self._frame = int(info.get("sample_rate", 16000)), int(info.get("frame_size", 512))
            self._detector = TurnDetector(self.turn_detection, frame_ms=self._frame * 1000.0 / self._vad_rate)
            if self._resampler is None:
                self._resampler = StreamResampler(RATE, self._vad_rate)
                self._vad_time_ms = self.audio_ms - len(samples) * 1000.0 / RATE
        pcm = np.concatenate([self._pending, self._resampler.process(samples)])
        n = len(pcm) // self._frame
        self._pending = pcm[n * self._frame:]
        if n == 0:
            return
        frames = pcm[: n * self._frame].reshape(n, self._frame)
        probs, self._vad_state = await self.cascade.vad_score(frames, self._vad_state)
        frame_ms = self._frame * 1000.0 / self._vad_rate
        for p in probs:
            self._vad_time_ms += frame_ms
            decision = self._detector.step(float(p), self._vad_time_ms)
            if decision == "started":
                self._speech_item_id = new_id("item")
                start = max(self._start_ms, self._detector.speech_start_ms - self.turn_detection.prefix_padding_ms)
                self._speech_start_ms = start
                await self._on_started(self._speech_item_id, start)
            elif decision == "stopped":
                end = self._detector.speech_end_ms
                item_id = self._speech_item_id or new_id("item")
                self._speech_item_id = None
                audio = self.take(self._speech_start_ms, end + self.stop_padding_ms)
                await self._on_stopped(item_id, end, audio)
            elif decision == "dropped":
                self._speech_item_id = None

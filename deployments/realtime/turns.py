"""Turn detection: speech probabilities per frame → speech started / paused / resumed / stopped.

Follows OpenAI's ``turn_detection`` settings (Realtime API, ``RealtimeTurnDetection``):

- ``server_vad``: ``threshold`` (speech probability, default 0.5), ``prefix_padding_ms`` (audio
  kept before the detected start, default 300) and ``silence_duration_ms`` (silence that ends
  the turn, default 500);
- ``semantic_vad``: an end-of-turn model judges whether the speaker has finished, and
  ``eagerness`` bounds how long an unfinished utterance may pause: ``low`` 8 s, ``medium`` 4 s,
  ``high`` 2 s, ``auto`` = ``medium`` (OpenAI's documented maximum waits);
- ``null`` / ``none``: no turn detection (the client commits).

Both kinds may report a *pause*: the first short silence after speech (``pause_ms``, about
200 ms), where the session starts speculative work and the end-of-turn model is asked. A
"complete" verdict ends the turn at once (:meth:`TurnDetector.end_turn`); otherwise the silence
limit still applies.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployments.protocol.realtime import EAGERNESS_MAX_WAIT_MS

#: ``silence_duration_ms`` a ``semantic_vad`` session falls back to when the VAD deployment
#: has no end-of-turn model (OpenAI's ``server_vad`` default).
FALLBACK_SILENCE_MS = 500


@dataclass
class TurnDetectionConfig:
    """``turn_detection`` of a session; ``type`` is ``"server_vad"``, ``"semantic_vad"`` or
    ``"none"`` (manual commit). ``silence_explicit`` records whether the client chose its own
    ``silence_duration_ms`` (operators may end other ``server_vad`` turns early)."""

    type: str = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    eagerness: str = "auto"
    silence_explicit: bool = False

    @classmethod
    def from_wire(cls, value: dict | None, current: TurnDetectionConfig | None = None) -> TurnDetectionConfig:
        """Parse OpenAI's ``turn_detection`` (``null`` means no turn detection). Fields not
        given keep ``current``'s values.

        Raises:
            ValueError: unknown type, wrong types or out-of-range values (plain words).
        """
        if value is None:
            return cls(type="none")
        if not isinstance(value, dict):
            raise ValueError("turn_detection must be an object or null")
        base = current or cls()
        kind = value.get("type", base.type if base.type != "none" else "server_vad")
        if kind not in ("server_vad", "semantic_vad", "none"):
            raise ValueError(f"turn_detection.type must be server_vad, semantic_vad or none, not {kind!r}")
        for name in ("threshold", "prefix_padding_ms", "silence_duration_ms"):
            v = value.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ValueError(f"turn_detection.{name} must be a number")
        for name in ("create_response", "interrupt_response"):
            if name in value and not isinstance(value[name], bool):
                raise ValueError(f"turn_detection.{name} must be true or false")
        eagerness = value.get("eagerness", base.eagerness)
        if eagerness not in EAGERNESS_MAX_WAIT_MS:
            raise ValueError("turn_detection.eagerness must be low, medium, high or auto")
        explicit = value.get("silence_duration_ms") is not None or (base.silence_explicit and kind == base.type)
        cfg = cls(
            type=kind,
            threshold=float(value.get("threshold") if value.get("threshold") is not None else base.threshold),
            prefix_padding_ms=int(
                value.get("prefix_padding_ms") if value.get("prefix_padding_ms") is not None else base.prefix_padding_ms
            ),
            silence_duration_ms=int(
                value.get("silence_duration_ms")
                if value.get("silence_duration_ms") is not None
                else base.silence_duration_ms
            ),
            create_response=value.get("create_response", base.create_response),
            interrupt_response=value.get("interrupt_response", base.interrupt_response),
            eagerness=eagerness,
            silence_explicit=explicit,
        )
        if not 0.0 < cfg.threshold < 1.0:
            raise ValueError("turn_detection.threshold must be between 0 and 1")
        if cfg.prefix_padding_ms < 0 or cfg.silence_duration_ms < 0:
            raise ValueError("turn_detection durations must be >= 0 ms")
        return cfg

    def to_wire(self) -> dict | None:
        """The settings as OpenAI's session object shows them (``None`` when off)."""
        if self.type == "none":
            return None
        if self.type == "semantic_vad":
            return {
                "type": "semantic_vad",
                "eagerness": self.eagerness,
                "create_response": self.create_response,
                "interrupt_response": self.interrupt_response,
            }
        return {
            "type": self.type,
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }


class TurnDetector:
    """Turns per-frame speech probabilities into turn decisions.

    Hysteresis as silero's own ``get_speech_timestamps``: speech starts at ``p >= threshold`` and
    counts as silence only below ``threshold - 0.15``, so a syllable dipping under the threshold
    does not end the turn. Times are in ms of audio since the session's buffer started.

    Args:
        config: the session's :class:`TurnDetectionConfig` (its ``threshold``).
        frame_ms: duration of one VAD frame (32 ms for 512 samples at 16 kHz).
        silence_limit_ms: silence after speech that ends the turn (``silence_duration_ms``, or
            the ``semantic_vad`` eagerness limit).
        pause_ms: silence after speech reported once as ``"paused"``; ``None`` for no pauses.
        min_speech_ms: speech shorter than this before silence is treated as noise (the turn
            is dropped rather than committed, and no pause is reported).
    """

    def __init__(
        self,
        config: TurnDetectionConfig,
        frame_ms: float,
        silence_limit_ms: float | None = None,
        pause_ms: float | None = None,
        min_speech_ms: int = 200,
    ):
        self.config = config
        self.frame_ms = frame_ms
        self.silence_limit_ms = config.silence_duration_ms if silence_limit_ms is None else silence_limit_ms
        self.pause_ms = pause_ms
        self.min_speech_ms = min_speech_ms
        self.in_speech = False
        self.paused = False
        self.speech_start_ms = 0.0
        self.silence_ms = 0.0
        self._last_speech_ms = 0.0

    def step(self, prob: float, frame_end_ms: float) -> str | None:
        """Feed one frame's probability; returns ``"started"``, ``"paused"`` (the first
        ``pause_ms`` of silence after enough speech), ``"resumed"`` (speech again after a
        pause), ``"stopped"`` (the silence limit closed the turn), ``"dropped"`` (a blip too
        short to be a turn) or ``None``."""
        threshold = self.config.threshold
        if not self.in_speech:
            if prob >= threshold:
                self.in_speech = True
                self.paused = False
                self.speech_start_ms = frame_end_ms - self.frame_ms
                self._last_speech_ms = frame_end_ms
                self.silence_ms = 0.0
                return "started"
            return None
        if prob >= threshold - 0.15:
            self.silence_ms = 0.0
            self._last_speech_ms = frame_end_ms
            if self.paused:
                self.paused = False
                return "resumed"
            return None
        self.silence_ms += self.frame_ms
        long_enough = self._last_speech_ms - self.speech_start_ms >= self.min_speech_ms
        if self.silence_ms >= self.silence_limit_ms:
            self.in_speech = self.paused = False
            return "stopped" if long_enough else "dropped"
        if self.pause_ms is not None and not self.paused and long_enough and self.silence_ms >= self.pause_ms:
            self.paused = True
            return "paused"
        return None

    def end_turn(self) -> bool:
        """End the turn now (an end-of-turn model's "complete" verdict on the current pause);
        ``False`` when there is no paused turn to end (speech resumed, or it already ended)."""
        if not (self.in_speech and self.paused):
            return False
        self.in_speech = self.paused = False
        return True

    @property
    def speech_end_ms(self) -> float:
        """End of the last speech frame (``audio_end_ms`` of ``speech_stopped``)."""
        return self._last_speech_ms

    def reset(self) -> None:
        self.in_speech = self.paused = False
        self.silence_ms = 0.0

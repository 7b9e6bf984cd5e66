"""Server VAD turn detection: speech probabilities per frame → speech started / stopped.

Follows OpenAI's ``turn_detection: {type: "server_vad"}`` settings: ``threshold`` (speech
probability, default 0.5), ``prefix_padding_ms`` (audio kept before the detected start, default
300) and ``silence_duration_ms`` (silence that ends the turn, default 500).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TurnDetectionConfig:
    """``turn_detection`` of a session; ``type`` is ``"server_vad"`` or ``"none"`` (manual commit)."""

    type: str = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True

    @classmethod
    def from_wire(cls, value: dict | None, current: "TurnDetectionConfig | None" = None) -> "TurnDetectionConfig":
        """Parse OpenAI's ``turn_detection`` (``null`` means no server VAD).

        Raises:
            ValueError: unknown type or out-of-range values.
        """
        if value is None:
            return cls(type="none")
        if not isinstance(value, dict):
            raise ValueError("turn_detection must be an object or null")
        base = current or cls()
        kind = value.get("type", base.type if base.type != "none" else "server_vad")
        if kind == "semantic_vad":  # accepted, served with the same energy-free VAD model
            kind = "server_vad"
        if kind not in ("server_vad", "none"):
            raise ValueError(f"turn_detection.type must be server_vad or none, not {kind!r}")
        cfg = cls(
            type=kind,
            threshold=float(value.get("threshold", base.threshold)),
            prefix_padding_ms=int(value.get("prefix_padding_ms", base.prefix_padding_ms)),
            silence_duration_ms=int(value.get("silence_duration_ms", base.silence_duration_ms)),
            create_response=bool(value.get("create_response", base.create_response)),
            interrupt_response=bool(value.get("interrupt_response", base.interrupt_response)),
        )
        if not 0.0 < cfg.threshold < 1.0:
            raise ValueError("turn_detection.threshold must be between 0 and 1")
        if cfg.prefix_padding_ms < 0 or cfg.silence_duration_ms < 0:
            raise ValueError("turn_detection durations must be >= 0 ms")
        return cfg

    def to_wire(self) -> dict | None:
        if self.type == "none":
            return None
        return {"type": self.type, "threshold": self.threshold, "prefix_padding_ms": self.prefix_padding_ms,
                "silence_duration_ms": self.silence_duration_ms, "create_response": self.create_response,
                "interrupt_response": self.interrupt_response}


class TurnDetector:
    """Turns per-frame speech probabilities into speech-start / speech-stop decisions.

    Hysteresis as silero's own ``get_speech_timestamps``: speech starts at ``p >= threshold`` and
    counts as silence only below ``threshold - 0.15``, so a syllable dipping under the threshold
    does not end the turn. Times are in ms of audio since the session's buffer started.

    Args:
        config: the session's :class:`TurnDetectionConfig`.
        frame_ms: duration of one VAD frame (32 ms for 512 samples at 16 kHz).
        min_speech_ms: speech shorter than this before silence is treated as noise (the turn
            is dropped rather than committed).
    """

    def __init__(self, config: TurnDetectionConfig, frame_ms: float, min_speech_ms: int = 200):
        self.config = config
        self.frame_ms = frame_ms
        self.min_speech_ms = min_speech_ms
        self.in_speech = False
        self.speech_start_ms = 0.0
        self._silence_ms = 0.0
        self._last_speech_ms = 0.0

    def step(self, prob: float, frame_end_ms: float) -> str | None:
        """Feed one frame's probability; returns ``"started"``, ``"stopped"``, ``"dropped"`` (a
        blip too short to be a turn) or ``None``."""
        threshold = self.config.threshold
        if not self.in_speech:
            if prob >= threshold:
                self.in_speech = True
                self.speech_start_ms = frame_end_ms - self.frame_ms
                self._last_speech_ms = frame_end_ms
                self._silence_ms = 0.0
                return "started"
            return None
        if prob >= threshold - 0.15:
            self._silence_ms = 0.0
            self._last_speech_ms = frame_end_ms
            return None
        self._silence_ms += self.frame_ms
        if self._silence_ms >= self.config.silence_duration_ms:
            self.in_speech = False
            if self._last_speech_ms - self.speech_start_ms < self.min_speech_ms:
                return "dropped"
            return "stopped"
        return None

    @property
    def speech_end_ms(self) -> float:
        """End of the last speech frame (``audio_end_ms`` of ``speech_stopped``)."""
        return self._last_speech_ms

    def reset(self) -> None:
        self.in_speech = False
        self._silence_ms = 0.0

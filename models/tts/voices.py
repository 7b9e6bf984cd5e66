"""What every TTS backend shares about OpenAI's speech request (``CreateSpeechRequest``)."""

from __future__ import annotations

from models.base import InvalidInput

#: OpenAI's built-in voice names. Backends accept them so OpenAI clients work unchanged; each
#: means the backend's default voice unless the backend has a voice of that name.
OPENAI_VOICES = frozenset("alloy ash ballad coral echo fable onyx nova sage shimmer verse marin cedar".split())

#: OpenAI's ``speed`` range (1.0 is normal speed).
MIN_SPEED, MAX_SPEED = 0.25, 4.0


def check_speed(speed: float) -> float:
    """``speed`` as a float. Raises :class:`InvalidInput` (``param="speed"``) outside the range."""
    speed = float(speed)
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidInput(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed}", param="speed")
    return speed

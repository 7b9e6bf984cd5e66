"""``GET /v1/usage``: one key's totals since the service started (omniserve's own route; OpenAI's
organisation usage API is per project and per bucket, which a shared endpoint does not have)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class TokenCounts(BaseModel):
    prompt: int
    completion: int
    total: int


class AudioSeconds(BaseModel):
    """Seconds of audio: ``input`` transcribed (REST and realtime), ``output`` synthesised
    (realtime, and speech in ``pcm`` / ``wav``)."""

    input: float
    output: float


class UsageReport(BaseModel):
    object: Literal["usage"] = "usage"
    key_id: str = Field(description="the key's non-secret id (its team), 'anonymous' with API keys off")
    since: int = Field(description="Unix seconds: when the totals started")
    requests: int = Field(description="HTTP requests answered (any status)")
    tokens: TokenCounts
    audio_seconds: AudioSeconds
    realtime_session_seconds: float

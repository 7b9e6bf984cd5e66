"""The role calls a realtime session makes, over the same deployment handles as the REST routes.

A session never touches Ray directly: it sees this small async interface (chat stream,
transcription, speech stream, VAD scoring, end of turn), which keeps the session logic testable and the data
flow one way (wire → ingress → handle → model).

With traces on, a call made in a realtime turn's own task (its transcription and response) is a
child of that turn's span; one made from the receive loop (VAD scoring, the end-of-turn check,
speculative STT and LLM) joins :attr:`Cascade.open_turn`, the voice turn in progress, and makes
no span outside a turn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deployments.config import ModelConfig
from deployments.state import IngressState
from deployments.tracing import scopes


class Cascade:
    """The cascade's models (``config.cascade``) as async calls.

    Raises:
        RuntimeError: at construction, when the cascade lacks an LLM.
    """

    def __init__(self, state: IngressState):
        self.state = state
        models = {role: state.config.cascade_model(role) for role in ("llm", "stt", "tts", "vad")}
        if models["llm"] is None:
            raise RuntimeError("the cascade has no chat model")
        self.llm: ModelConfig = models["llm"]
        self.stt: ModelConfig | None = models["stt"]
        self.tts: ModelConfig | None = models["tts"]
        self.vad: ModelConfig | None = models["vad"]
        #: the voice turn in progress (:func:`deployments.tracing.scopes.start_turn`; set by the
        #: session's user turns), parent of the calls made outside a turn's own task; ``None`` when
        #: traces are off or no turn is open
        self.open_turn: scopes.Scope | None = None

    def chat(self, messages: list[dict], params: dict, tools: list[dict] | None):
        """Streamed chat: items ``{"text", "finish_reason"?, ...}``; ``.cancel()`` stops it."""
        with scopes.fallback(self.open_turn):
            return self.state.stream(self.llm, "chat", messages, params, tools)

    async def transcribe(
        self,
        samples: np.ndarray | None = None,
        sample_rate: int | None = None,
        data: bytes | None = None,
        **options: Any,
    ) -> dict:
        """Transcription of PCM (float32 at ``sample_rate`` Hz) or an encoded clip (``data``)."""
        if self.stt is None:
            raise RuntimeError("the cascade has no speech-to-text model")
        with scopes.fallback(self.open_turn):
            return await self.state.call(
                self.stt, "transcribe", data=data, samples=samples, sample_rate=sample_rate, **options
            )

    def speech(self, text: str, voice: str | None, reference: dict | None, sample_rate: int):
        """Streamed speech: float32 chunks at ``sample_rate`` Hz; ``.cancel()`` stops it."""
        with scopes.fallback(self.open_turn):
            return self.state.stream(self.tts, "pcm", text, voice=voice, sample_rate=sample_rate, reference=reference)

    async def tts_info(self) -> dict:
        return await self.state.model_info(self.tts) if self.tts else {}

    async def vad_info(self) -> dict:
        return await self.state.model_info(self.vad) if self.vad else {}

    async def vad_score(self, frames: np.ndarray, vad_state: Any) -> tuple[np.ndarray, Any]:
        """Speech probabilities of ``frames`` ``(k, frame_size)`` and the stream's next state."""
        with scopes.fallback(self.open_turn):
            return await self.state.call(self.vad, "score", frames, vad_state)

    async def end_of_turn(self, samples: np.ndarray) -> float:
        """Probability (0–1) that the utterance ``samples`` (float32 at the VAD's rate, ending
        in the pause) is a finished turn: the VAD deployment's end-of-turn model, batched there
        across sessions. Raises what the deployment raises (``InvalidInput`` without a model)."""
        with scopes.fallback(self.open_turn):
            return float(await self.state.call(self.vad, "end_of_turn", samples))


async def aclose(stream: Any) -> None:
    """Cancel a handle stream (a ``DeploymentResponseGenerator``), ignoring one already done."""
    if stream is not None:
        try:
            stream.cancel()
        except Exception:  # already finished
            pass

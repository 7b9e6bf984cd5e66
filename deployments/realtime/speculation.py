"""Speculative work on a paused utterance, held back until the turn is committed.

At the first short silence after speech (the turn detector's *pause*, about 200 ms, before the
silence window or the end-of-turn model has decided), the session starts a
:class:`SpeculativeTurn`: STT on the utterance so far, then, once the transcript is known, the
LLM on the conversation as it would be with that transcript (preemptive generation, as
LiveKit's ``preemptive_generation`` and Pipecat's speculative turns do). Its tokens are read
into memory and nothing reaches the client. When the turn is committed with the same audio, the
transcript is reused, and the LLM stream too if the request is unchanged (a *hit*); otherwise
the stream is cancelled on its replica and the response starts afresh (a *miss*). Speech that
resumes cancels all of it (counted as discarded work in the response's metadata).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from deployments.realtime.cascade import Cascade

#: ``(messages, params, tools)`` of a chat request, as :meth:`Cascade.chat` takes them.
ChatRequest = tuple[list[dict], dict, "list[dict] | None"]


class Prefetch:
    """A chat handle stream read ahead into memory: iterate it once like the stream itself;
    ``cancel()`` stops the read and the generation on its replica.

    Args:
        stream: a ``DeploymentResponseGenerator`` (``Cascade.chat``).
    """

    def __init__(self, stream: Any):
        self._stream = stream
        self._queue: asyncio.Queue = asyncio.Queue()
        self.t_first_item: float | None = None  # time.monotonic() of the first item
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for item in self._stream:
                if self.t_first_item is None:
                    self.t_first_item = time.monotonic()
                self._queue.put_nowait(("item", item))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # surfaced to the reader, as the stream itself would
            self._queue.put_nowait(("error", exc))
            return
        self._queue.put_nowait(("end", None))

    def __aiter__(self) -> Prefetch:
        return self

    async def __anext__(self) -> Any:
        kind, value = await self._queue.get()
        if kind == "item":
            return value
        self._queue.put_nowait((kind, value))  # later reads end the same way
        if kind == "error":
            raise value
        raise StopAsyncIteration

    def cancel(self) -> None:
        self._task.cancel()
        try:
            self._stream.cancel()
        except Exception:  # already finished
            pass


class SpeculativeTurn:
    """STT, then a preemptive LLM stream, for one paused utterance.

    Args:
        cascade: the role calls.
        item_id: the user item the turn will commit as.
        audio_end_ms: end of the utterance's last speech frame (audio ms); a commit with the
            same ``item_id`` and ``audio_end_ms`` commits the same audio.
        audio: the utterance, float32 ``(n,)`` at ``sample_rate`` Hz.
        sample_rate: Hz of ``audio`` (24000, the session's input rate).
        language: ISO-639-1 hint for STT, or ``None``.
        chat_request: ``transcription result -> ChatRequest`` for the preemptive LLM, or
            ``-> None`` when no response would follow (tool calls pending, responses off).
    """

    def __init__(
        self,
        cascade: Cascade,
        item_id: str,
        audio_end_ms: float,
        audio: np.ndarray,
        sample_rate: int,
        language: str | None,
        chat_request: Callable[[dict], ChatRequest | None],
    ):
        self.cascade = cascade
        self.item_id = item_id
        self.audio_end_ms = audio_end_ms
        self.t_stt_start = time.monotonic()
        self.t_stt_end: float | None = None
        self.request: ChatRequest | None = None
        self.llm: Prefetch | None = None
        self._task = asyncio.create_task(self._run(audio, sample_rate, language, chat_request))
        self._task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no warning

    async def _run(
        self,
        audio: np.ndarray,
        sample_rate: int,
        language: str | None,
        chat_request: Callable[[dict], ChatRequest | None],
    ) -> dict:
        result = await self.cascade.transcribe(samples=audio, sample_rate=sample_rate, language=language)
        self.t_stt_end = time.monotonic()
        request = chat_request(result) if result.get("text", "").strip() else None
        if request is not None:
            self.request = request
            self.llm = Prefetch(self.cascade.chat(*request))
        return result

    def covers(self, item_id: str, audio_end_ms: float) -> bool:
        """Whether a commit of ``item_id`` ending at ``audio_end_ms`` is this utterance."""
        return item_id == self.item_id and abs(audio_end_ms - self.audio_end_ms) < 1e-6

    async def transcription(self) -> dict:
        """The speculative transcription (``Cascade.transcribe``'s result); raises what STT raised."""
        return await asyncio.shield(self._task)

    def take_llm(self, request: ChatRequest) -> Prefetch | None:
        """The preemptive stream if it answers exactly ``request`` (a hit); otherwise it is
        cancelled on its replica and ``None`` is returned."""
        llm, self.llm = self.llm, None
        if llm is not None and self.request == request:
            return llm
        if llm is not None:
            llm.cancel()
        return None

    def cancel(self) -> tuple[int, int]:
        """Throw the speculation away (STT in flight and the LLM stream are cancelled);
        returns ``(stt_discarded, llm_discarded)``: 1 and 1 when an LLM stream had started."""
        self._task.cancel()
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.cancel()
        return 1, (1 if llm is not None else 0)

"""One thin Ray Serve deployment per role, each wrapping a :mod:`models` backend.

Each server builds its backend in its constructor (the replica stays STARTING until the weights
are loaded, which is what readiness and admission read), runs the backend's blocking calls in
worker threads, and streams through async generators that callers consume with
``handle.options(stream=True)``. When a caller cancels a streaming call (its HTTP client went
away), the generator is cancelled and the backend's ``cancel`` event stops the model work.

Values crossing the handle are plain dicts / numpy arrays / dataclasses, never wire types.

Each model method a caller traces (:data:`deployments.tracing.operations.OPERATIONS`) is wrapped
with :func:`deployments.tracing.replica.traced`: a call that carries the ingress's trace context
records the replica's own span, child of the ingress's client span, with the GenAI attributes of
the call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ray import serve

from deployments.config import ModelConfig
from deployments.tracing import provider, replica
from models.base import GenerationParams
from models.registry import create_backend

logger = logging.getLogger("ray.serve")

_DONE = object()


async def iterate_in_thread(make_iter: Callable[[threading.Event], Iterator[Any]]) -> AsyncIterator[Any]:
    """Run a blocking iterator in a worker thread and yield its items on the event loop.

    ``make_iter(cancel)`` is called in the thread; when the consumer stops early (cancellation,
    ``aclose``), ``cancel`` is set so the backend stops at its next step. Exceptions raised by the
    iterator are re-raised here.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()

    def run() -> None:
        try:
            for item in make_iter(cancel):
                loop.call_soon_threadsafe(queue.put_nowait, (item, None))
                if cancel.is_set():
                    break
        except BaseException as exc:  # re-raised on the loop side
            loop.call_soon_threadsafe(queue.put_nowait, (_DONE, exc))
            return
        loop.call_soon_threadsafe(queue.put_nowait, (_DONE, None))

    worker = loop.run_in_executor(None, run)
    try:
        while True:
            item, exc = await queue.get()
            if item is _DONE:
                if exc is not None:
                    raise exc
                break
            yield item
    finally:
        cancel.set()
        # do not wait for the worker on cancellation: it stops by itself at its next step
        if worker.done():
            worker.result()


class _ModelServer:
    """Shared constructor: build the backend named by a :class:`ModelConfig`."""

    role = ""

    def __init__(self, model: dict):
        provider.setup()  # this replica's TracerProvider, when OTEL_* turns traces on
        self.config = ModelConfig.model_validate(model)
        self.model_id = self.config.id
        self.backend = create_backend(self.config.role, self.config.backend, self.config.source, self.config.options)
        logger.info("%s ready: %s (%s)", type(self).__name__, self.model_id, self.config.backend)

    def info(self) -> dict:
        """Model id and backend facts for the ingress (catalog, /health)."""
        return {"id": self.model_id, "role": self.role, "backend": self.config.backend}


@serve.deployment
class LLMServer(_ModelServer):
    """Chat generation. ``chat`` streams dicts: ``{"text": str}`` pieces, then a final
    ``{"text", "finish_reason", "prompt_tokens", "completion_tokens"}``."""

    role = "llm"

    def __init__(self, model: dict):
        super().__init__(model)
        self.active_generations = 0  # decode loops running now (read by tests and benchmarks)
        self._active_lock = threading.Lock()

    @replica.traced
    async def chat(self, messages: list[dict], params: dict, tools: list[dict] | None = None) -> AsyncIterator[dict]:
        gen_params = GenerationParams(**params)

        def run(cancel: threading.Event) -> Iterator:
            with self._active_lock:
                self.active_generations += 1
            try:
                yield from self.backend.generate(messages, gen_params, tools=tools, cancel=cancel)
            finally:
                with self._active_lock:
                    self.active_generations -= 1

        async for chunk in iterate_in_thread(run):
            yield dataclasses.asdict(chunk)

    def info(self) -> dict:
        return {**super().info(), "active_generations": self.active_generations}


@serve.deployment
class EmbeddingServer(_ModelServer):
    """Text embeddings: ``embed(texts) -> {"vectors": float32 (n, d), "prompt_tokens": int}``."""

    role = "embeddings"

    @replica.traced
    async def embed(self, texts: list[str]) -> dict:
        result = await asyncio.to_thread(self.backend.embed, texts)
        return {"vectors": result.vectors, "prompt_tokens": result.prompt_tokens}

    def info(self) -> dict:
        return {**super().info(), "dimensions": self.backend.dimensions}

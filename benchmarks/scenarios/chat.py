"""Streamed chat completions: time to first token, inter-token latency, decode speed."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from benchmarks.scenario import Input, RequestFailed, Scenario, resolve_model_path
from benchmarks.scenarios import register

#: Greedy decoding of this prompt gives the same long reply on the endpoint and the bare model.
PROMPT = "Tell me a long story about a brave knight and a dragon."


@register
class ChatScenario(Scenario):
    """``POST /v1/chat/completions`` with ``stream: true``, ``temperature: 0`` and a fixed
    ``max_tokens`` (64; 16 with ``--smoke``), parsed as SSE.

    Per request: ``latency_ms`` (request sent → last frame), ``ttft_ms`` (→ first frame with
    non-empty ``delta.content``), ``itl_ms`` (every gap between consecutive content frames,
    pooled over requests), ``decode_tokens_per_s`` ((completion tokens − 1) ÷ (last content
    frame − first content frame)) and ``tokens`` (``usage.completion_tokens``). The load phase
    adds ``tokens_per_s``: completion tokens of all requests ÷ wall time.

    Bare baseline: ``models.llm.transformers_llm.TransformersChat`` built from the profile's
    ``source`` and ``options`` (``torch_threads`` from :meth:`Scenario.baseline_threads` unless
    the options set it), ``generate()`` with the same messages and parameters; a non-empty
    yielded chunk plays the part of a content frame.
    """

    name = "chat"
    title = "Chat (streamed)"
    route = "POST /v1/chat/completions"
    metrics = ("latency_ms", "ttft_ms", "itl_ms", "decode_tokens_per_s")
    ratio_metrics = ("latency_ms", "ttft_ms", "itl_ms")
    rates = {"tokens_per_s": "tokens"}
    baseline_role = "llm"
    baseline_backends = ("transformers",)
    baseline_modules = ("torch", "transformers", "gguf")

    @property
    def max_tokens(self) -> int:
        return 16 if self.settings.smoke else 64

    def messages(self) -> list[dict]:
        return [{"role": "user", "content": PROMPT}]

    def inputs(self) -> list[Input]:
        return [Input("prompt", self.messages(), {"prompt": PROMPT, "max_tokens": self.max_tokens})]

    def describe(self) -> dict:
        return {
            "model": self.ctx.model_ids.get("llm"),
            "prompt": PROMPT,
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "stream": True,
        }

    # ------------------------------------------------------------------ endpoint
    def request(self, client: Any, inp: Input) -> dict:
        body = {
            "model": self.ctx.model_ids["llm"],
            "messages": inp.data,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }
        t0 = time.perf_counter()
        times: list[float] = []
        usage = None
        with client.post(
            self.url("/v1/chat/completions"), json=body, stream=True, timeout=self.settings.timeout_s
        ) as r:
            if r.status_code != 200:
                raise RequestFailed(f"HTTP {r.status_code}: {r.text[:200]}")
            for line in r.iter_lines(chunk_size=None):
                if not line or not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                frame = json.loads(data)
                if "error" in frame:
                    raise RequestFailed(f"error frame: {frame['error'].get('message', '')[:200]}")
                if frame.get("usage"):
                    usage = frame["usage"]
                for choice in frame.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        times.append(time.perf_counter())
        end = time.perf_counter()
        if not times:
            raise RequestFailed("no content in the stream")
        tokens = int(usage["completion_tokens"]) if usage else len(times)
        return _sample(t0, times, end, tokens)

    # ------------------------------------------------------------------ baseline
    def baseline_setup(self) -> Any:
        from models.llm.transformers_llm import TransformersChat

        model = self.baseline_model()
        resolve_model_path(model)  # fail early with SourceNotFound
        options = dict(model["options"])
        threads = self.baseline_threads()
        if threads and not options.get("torch_threads"):
            options["torch_threads"] = threads
        return TransformersChat(source=model["source"], **options)

    def baseline_call(self, model: Any, inp: Input) -> dict:
        from models.base import GenerationParams

        params = GenerationParams(max_tokens=self.max_tokens, temperature=0.0)
        t0 = time.perf_counter()
        times: list[float] = []
        tokens = 0
        for chunk in model.generate(inp.data, params):
            if chunk.text:
                times.append(time.perf_counter())
            if chunk.finish_reason:
                tokens = chunk.completion_tokens
        end = time.perf_counter()
        if not times:
            raise RequestFailed("the model generated no text")
        return _sample(t0, times, end, tokens or len(times))

    def baseline_info(self, model: Any) -> dict:
        import torch

        return {
            "library": "models.llm.transformers_llm.TransformersChat (transformers)",
            "device": model.device,
            "torch_threads": torch.get_num_threads(),
        }


def _sample(t0: float, times: list[float], end: float, tokens: int) -> dict:
    gaps = [(b - a) * 1000.0 for a, b in itertools.pairwise(times)]
    span = times[-1] - times[0]
    return {
        "latency_ms": (end - t0) * 1000.0,
        "ttft_ms": (times[0] - t0) * 1000.0,
        "itl_ms": gaps,
        "decode_tokens_per_s": (tokens - 1) / span if tokens > 1 and span > 0 else None,
        "tokens": tokens,
    }

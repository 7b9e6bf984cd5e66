"""Embeddings: latency and inputs/s by batch size."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.scenario import Input, Phase, RequestFailed, Scenario, resolve_model_path
from benchmarks.scenarios import register

#: Inputs per request.
BATCH_SIZES = (1, 8, 32)

_SUBJECTS = (
    "a cat",
    "the engineer",
    "an old fisherman",
    "my neighbour",
    "the orchestra",
    "a small robot",
    "the committee",
    "a hungry fox",
)
_ACTIONS = (
    "sits quietly by the window",
    "explains the new design",
    "repairs a broken net at dawn",
    "plants tomatoes in the garden",
    "rehearses a difficult symphony",
    "learns to paint landscapes",
    "argues about the annual budget",
    "searches the snowy forest for food",
)


def sentences(n: int) -> list[str]:
    """``n`` distinct short English sentences (deterministic)."""
    return [f"{_SUBJECTS[i % 8].capitalize()} {_ACTIONS[(i // 8 + i) % 8]} (item {i})." for i in range(n)]


@register
class EmbeddingsScenario(Scenario):
    """``POST /v1/embeddings`` with a list of ``batch`` short sentences, for each batch size in
    :data:`BATCH_SIZES`; the load phase is split evenly between the batch sizes.

    Per request: ``latency_ms`` (request sent → JSON parsed, all vectors present). Each load
    phase adds ``inputs_per_s``: sentences embedded per wall-clock second.

    Bare baseline: ``sentence_transformers.SentenceTransformer`` from the profile's ``source``
    (torch threads from :meth:`Scenario.baseline_threads`), ``encode()`` of the same sentences
    with ``normalize_embeddings=True``.
    """

    name = "embeddings"
    title = "Embeddings"
    route = "POST /v1/embeddings"
    metrics = ("latency_ms",)
    rates = {"inputs_per_s": "inputs"}
    baseline_role = "embeddings"
    baseline_backends = ("sentence-transformers",)
    baseline_modules = ("sentence_transformers", "torch")

    def inputs(self) -> list[Input]:
        return [Input(f"batch_{b}", sentences(b), {"batch_size": b}) for b in BATCH_SIZES]

    def describe(self) -> dict:
        return {
            "model": self.ctx.model_ids.get("embeddings"),
            "batch_sizes": list(BATCH_SIZES),
            "encoding_format": "float",
        }

    def load_phases(self) -> list[Phase]:
        share = max(1.0, self.settings.duration_s / len(BATCH_SIZES))
        return [Phase(inp.key, [inp], share) for inp in self.inputs()]

    def request(self, client: Any, inp: Input) -> dict:
        body = {"model": self.ctx.model_ids["embeddings"], "input": inp.data, "encoding_format": "float"}
        t0 = time.perf_counter()
        r = client.post(self.url("/v1/embeddings"), json=body, timeout=self.settings.timeout_s)
        if r.status_code != 200:
            raise RequestFailed(f"HTTP {r.status_code}: {r.text[:200]}")
        data = r.json().get("data") or []
        latency = time.perf_counter() - t0
        if len(data) != len(inp.data):
            raise RequestFailed(f"{len(data)} vectors for {len(inp.data)} inputs")
        return {"latency_ms": latency * 1000.0, "inputs": len(inp.data), "bytes": len(r.content)}

    # ------------------------------------------------------------------ baseline
    def baseline_setup(self) -> Any:
        import torch
        from sentence_transformers import SentenceTransformer

        model = self.baseline_model()
        threads = self.baseline_threads()
        if threads:
            torch.set_num_threads(threads)
        device = model["options"].get("device", "auto")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return SentenceTransformer(resolve_model_path(model), device=device)

    def baseline_call(self, model: Any, inp: Input) -> dict:
        t0 = time.perf_counter()
        vectors = model.encode(inp.data, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        latency = time.perf_counter() - t0
        if len(vectors) != len(inp.data):
            raise RequestFailed("wrong number of vectors")
        return {"latency_ms": latency * 1000.0, "inputs": len(inp.data)}

    def baseline_info(self, model: Any) -> dict:
        import torch

        return {
            "library": "sentence_transformers.SentenceTransformer",
            "device": str(model.device),
            "torch_threads": torch.get_num_threads(),
        }

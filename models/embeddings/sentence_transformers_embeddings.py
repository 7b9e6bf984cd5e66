"""Text embeddings on sentence-transformers."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from models.base import EmbeddingResult, InvalidInput
from models.sources import resolve_source

logger = logging.getLogger(__name__)


class SentenceTransformerEmbeddings:
    """A ``sentence_transformers.SentenceTransformer`` model.

    Vectors are L2-normalised (OpenAI's embeddings are unit length too, so cosine similarity is
    a dot product). Token counts come from the model's own tokenizer.

    Args:
        source: hub id (e.g. ``BAAI/bge-m3``), local directory, or ``package://`` source.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
        batch_size: inputs per forward pass.
        max_inputs: most inputs accepted in one request (OpenAI allows 2048).

    Concurrency: calls are serialised with a lock. ``SentenceTransformer.encode`` shares one
    fast tokenizer whose padding/truncation state is not thread-safe (concurrent calls produced
    ragged batches: "expected sequence of length 16 ... got 15"); each call batches its own
    inputs, and more throughput comes from replicas.
    """

    def __init__(
        self,
        source: str,
        device: str = "auto",
        batch_size: int = 64,
        max_inputs: int = 2048,
        trust_remote_code: bool = False,
    ):
        import torch
        from sentence_transformers import SentenceTransformer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        t0 = time.monotonic()
        self.model = SentenceTransformer(resolve_source(source), device=device, trust_remote_code=trust_remote_code)
        logger.info("loaded embeddings %s on %s in %.1f s", source, device, time.monotonic() - t0)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimensions = int(get_dim())
        self.batch_size = batch_size
        self.max_inputs = max_inputs
        #: longest input in tokens, special tokens included (``None``: the model sets no bound)
        self.max_input_tokens: int | None = getattr(self.model, "max_seq_length", None)
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> EmbeddingResult:
        """Embed ``texts``; see :class:`models.base.EmbeddingBackend`.

        Raises:
            InvalidInput: empty list, too many inputs, an empty string, or an input longer than
                :attr:`max_input_tokens` (the model's ``max_seq_length``; OpenAI answers 400 too
                rather than truncating).
        """
        if not texts:
            raise InvalidInput("input must not be empty", param="input")
        if len(texts) > self.max_inputs:
            raise InvalidInput(f"at most {self.max_inputs} inputs per request", param="input")
        if any(not t for t in texts):
            raise InvalidInput("input strings must not be empty", param="input")
        with self._lock:
            tokens = self.model.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
            limit = self.max_input_tokens
            if limit:
                for i, ids in enumerate(tokens):
                    if len(ids) > limit:
                        where = "input" if len(texts) == 1 else f"input[{i}]"
                        raise InvalidInput(
                            f"{where} has {len(ids)} tokens; this model's maximum input length is {limit} tokens",
                            param="input",
                        )
            vectors = self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return EmbeddingResult(vectors=np.asarray(vectors, dtype=np.float32), prompt_tokens=sum(len(t) for t in tokens))

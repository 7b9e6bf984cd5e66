"""``POST /v1/embeddings`` (OpenAI ``CreateEmbeddingRequest`` → ``CreateEmbeddingResponse``)."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Depends, Request

from deployments.errors import bad_request
from deployments.protocol.embeddings import CreateEmbeddingRequest, CreateEmbeddingResponse, Embedding, EmbeddingUsage
from deployments.routes import get_state, metered, require_json
from deployments.state import IngressState

router = APIRouter(tags=["embeddings"])


def input_texts(req: CreateEmbeddingRequest) -> list[str]:
    """The request's ``input`` as a list of strings.

    Raises:
        APIError: 400 for token-id input (the served models take text) or empty strings.
    """
    value = req.input
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        texts = list(value)
    else:
        raise bad_request("token-id input is not supported; send strings", param="input")
    if not texts:
        raise bad_request("input must not be empty", param="input")
    if any(t == "" for t in texts):
        raise bad_request("input strings must not be empty", param="input")
    return texts


@router.post("/v1/embeddings", dependencies=[Depends(require_json)], response_model=CreateEmbeddingResponse)
async def create_embedding(
    req: CreateEmbeddingRequest, request: Request, state: IngressState = Depends(get_state)
) -> CreateEmbeddingResponse:
    """Embeddings for a string or a list of strings; ``encoding_format`` ``float`` or
    ``base64`` (little-endian float32, as OpenAI encodes it)."""
    model = state.catalog.resolve(req.model, "embeddings")
    key_id = metered(request, model.id)
    texts = input_texts(req)
    result = await state.call(model, "embed", texts)
    vectors: np.ndarray = result["vectors"]
    if req.dimensions is not None:
        if req.dimensions > vectors.shape[1]:
            raise bad_request(f"dimensions must be at most {vectors.shape[1]} for this model", param="dimensions")
        vectors = vectors[:, : req.dimensions]
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    data = []
    for i, vec in enumerate(vectors.astype("<f4")):
        emb = base64.b64encode(vec.tobytes()).decode() if req.encoding_format == "base64" else vec.tolist()
        data.append(Embedding(index=i, embedding=emb))
    tokens = int(result["prompt_tokens"])
    state.metrics.tokens(model.id, key_id, tokens)
    return CreateEmbeddingResponse(
        data=data, model=req.model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    )

"""``POST /v1/embeddings``: OpenAI's ``CreateEmbeddingRequest`` and ``CreateEmbeddingResponse``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CreateEmbeddingRequest(BaseModel):
    """``input`` a string or a list of strings (token-id lists are typed, and refused by the route:
    the served models take text); ``dimensions`` truncates and re-normalises."""

    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class Embedding(BaseModel):
    """One vector: a list of floats, or with ``encoding_format: "base64"`` the little-endian
    float32 bytes in base64, as OpenAI encodes them."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage

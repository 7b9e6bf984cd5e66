"""Wire types: OpenAI request and response bodies as pydantic models, named after the schema
names in OpenAI's OpenAPI description (``CreateChatCompletionRequest`` ...).

Requests allow unknown fields (OpenAI clients send fields this server ignores, e.g. ``user``,
``metadata``) but validate the fields we act on, so a bad value is a 400 naming its ``param``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatCompletionStreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionMessage(_Request):
    """One message of ``messages`` (system/developer/user/assistant/tool)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class CreateChatCompletionRequest(_Request):
    model: str
    messages: list[ChatCompletionMessage] = Field(..., min_length=1)
    stream: bool = False
    stream_options: ChatCompletionStreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CreateEmbeddingRequest(_Request):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ListModelsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]

"""``POST /v1/chat/completions``: OpenAI's ``CreateChatCompletionRequest``, its
``CreateChatCompletionResponse`` and the SSE frames of a stream (``CreateChatCompletionStreamResponse``,
``object: "chat.completion.chunk"``).

Fields OpenAI omits when they do not apply (a delta's ``role``, ``tool_calls`` without calls) are
left out of the JSON (``exclude_if``); fields OpenAI always sends, possibly null (``refusal``,
``logprobs``, ``finish_reason``), are always there.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deployments.protocol.fields import omitted_when_none


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


class CompletionUsage(BaseModel):
    """Token counts of one completion."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> CompletionUsage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class ChatCompletionResponseMessage(BaseModel):
    """The assistant's message; ``tool_calls`` as OpenAI's ``ChatCompletionMessageToolCall``
    objects, omitted when the model called no tool (``content`` is then never null)."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = omitted_when_none()


class ChatCompletionChoice(BaseModel):
    index: int = 0
    message: ChatCompletionResponseMessage
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"]
    logprobs: None = None


class CreateChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(description="Unix seconds")
    model: str
    system_fingerprint: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage


class ChatCompletionStreamResponseDelta(BaseModel):
    """What one chunk adds: the first carries ``role``, later ones ``content`` or ``tool_calls``
    (with their ``index``), the last none of them."""

    role: Literal["assistant"] | None = omitted_when_none()
    content: str | None = omitted_when_none()
    tool_calls: list[dict[str, Any]] | None = omitted_when_none()


class ChatCompletionStreamChoice(BaseModel):
    index: int = 0
    delta: ChatCompletionStreamResponseDelta
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"] | None = None
    logprobs: None = None


class CreateChatCompletionStreamResponse(BaseModel):
    """One SSE frame. With ``stream_options.include_usage`` every frame has ``usage`` (null but in
    the last, whose ``choices`` is empty); without it, the field is left out
    (:meth:`frame`)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(description="Unix seconds")
    model: str
    system_fingerprint: str
    choices: list[ChatCompletionStreamChoice]
    usage: CompletionUsage | None = None

    def frame(self, include_usage: bool) -> str:
        """The SSE ``data`` of this chunk (JSON)."""
        return self.model_dump_json(exclude=None if include_usage else {"usage"})

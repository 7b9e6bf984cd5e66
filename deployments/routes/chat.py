"""``POST /v1/chat/completions`` (OpenAI ``CreateChatCompletionRequest`` →
``CreateChatCompletionResponse``, or SSE ``chat.completion.chunk`` frames ending in ``[DONE]``)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from sse_starlette import EventSourceResponse

from deployments.errors import APIError, bad_request, stream_error
from deployments.protocol.chat import (
    ChatCompletionChoice,
    ChatCompletionResponseMessage,
    ChatCompletionStreamChoice,
    ChatCompletionStreamResponseDelta,
    CompletionUsage,
    CreateChatCompletionRequest,
    CreateChatCompletionResponse,
    CreateChatCompletionStreamResponse,
)
from deployments.routes import get_state, metered, require_json
from deployments.state import IngressState, next_item
from deployments.tool_calls import ToolCallParser, parse_arguments

logger = logging.getLogger("ray.serve")
router = APIRouter(tags=["chat"])

DEFAULT_MAX_TOKENS = 512
TEXT_PART_TYPES = ("text", "input_text")


def normalize_messages(req: CreateChatCompletionRequest) -> list[dict[str, Any]]:
    """OpenAI messages → plain ``{"role", "content": str, ...}`` dicts for a chat template.

    ``developer`` becomes ``system``; text content parts are joined; other parts (images,
    audio) are refused because the chat models served here are text-only.

    Raises:
        APIError: 400 for a non-text content part.
    """
    out = []
    for i, m in enumerate(req.messages):
        content = m.content
        if isinstance(content, list):
            texts = []
            for part in content:
                ptype = part.get("type")
                if ptype not in TEXT_PART_TYPES:
                    raise bad_request(
                        f"content part type {ptype!r} is not supported by this text-only model",
                        param=f"messages.{i}.content",
                    )
                texts.append(str(part.get("text", "")))
            content = "".join(texts)
        msg: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": content or ""}
        if m.tool_calls:
            msg["tool_calls"] = [
                {
                    **tc,
                    "function": {
                        **tc.get("function", {}),
                        "arguments": parse_arguments(tc.get("function", {}).get("arguments")),
                    },
                }
                for tc in m.tool_calls
            ]
        if m.tool_call_id:
            msg["tool_call_id"] = m.tool_call_id
        if m.name:
            msg["name"] = m.name
        out.append(msg)
    return out


def system_fingerprint(model_id: str, backend: str) -> str:
    """OpenAI's ``system_fingerprint``: changes when the serving configuration of the model does."""
    return "fp_" + hashlib.sha256(f"{model_id}|{backend}".encode()).hexdigest()[:10]


def generation_params(req: CreateChatCompletionRequest, max_completion_tokens: int) -> dict[str, Any]:
    """Sampling parameters for the LLM server (``models.base.GenerationParams`` fields).

    Args:
        req: the request.
        max_completion_tokens: the server's bound (``server.max_completion_tokens``).

    Raises:
        APIError: 400 for ``n`` > 1, or a ``max_completion_tokens`` / ``max_tokens`` above the
            server's bound (``param`` names the field). One that does not fit the model's context
            window beside the messages is refused by the LLM replica, also with a 400.
    """
    if req.n not in (None, 1):
        raise bad_request("only n=1 is supported", param="n")
    param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens" if req.max_tokens else None
    requested = req.max_completion_tokens or req.max_tokens
    if requested is not None and requested > max_completion_tokens:
        raise bad_request(
            f"{param} is {requested}; this server allows at most {max_completion_tokens} completion tokens per request",
            param=param,
        )
    return {
        "max_tokens": requested or min(DEFAULT_MAX_TOKENS, max_completion_tokens),
        "max_tokens_param": param,
        # unset: the model's own generation config decides (models.base.GenerationParams)
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stop": req.stop_list(),
        "seed": req.seed,
    }


@router.post("/v1/chat/completions", dependencies=[Depends(require_json)], response_model=CreateChatCompletionResponse)
async def create_chat_completion(
    req: CreateChatCompletionRequest, request: Request, state: IngressState = Depends(get_state)
):
    """Chat completion, plain or streamed (``stream: true``)."""
    t0 = time.perf_counter()
    model = state.catalog.resolve(req.model, "llm")
    key_id = metered(request, model.id)
    messages = normalize_messages(req)
    params = generation_params(req, state.config.server.max_completion_tokens)
    tools = req.tools if req.tool_choice != "none" else None
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    fingerprint = system_fingerprint(model.id, model.backend)
    created = int(time.time())
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        # the first item surfaces invalid input as a 400, and a lost replica is retried, before the 200
        first, stream = await state.start_stream(model, "chat", messages, params, tools)
        return EventSourceResponse(
            _sse_chunks(
                first,
                stream,
                completion_id,
                created,
                req.model,
                fingerprint,
                include_usage,
                ToolCallParser() if tools else None,
                _StreamMeter(state, model.id, key_id, t0),
            ),
            ping=15,
            sep="\n",
        )

    parser = ToolCallParser() if tools else None
    text, final = [], {}
    for item in await state.collect(model, "chat", messages, params, tools):
        text.append(parser.feed(item["text"]) if parser else item["text"])
        if item.get("finish_reason"):
            final = item
    usage = _usage(final)
    state.metrics.tokens(model.id, key_id, usage.prompt_tokens, usage.completion_tokens)
    content: str | None = "".join(text)
    tool_calls = None
    finish = final.get("finish_reason", "stop")
    if parser:
        rest, calls = parser.finish()
        content += rest
        if calls:
            tool_calls = [c.to_openai() for c in calls]
            content = content.strip() or None
            finish = "tool_calls"
    return CreateChatCompletionResponse(
        id=completion_id,
        created=created,
        model=req.model,
        system_fingerprint=fingerprint,
        choices=[
            ChatCompletionChoice(
                message=ChatCompletionResponseMessage(content=content, tool_calls=tool_calls), finish_reason=finish
            )
        ],
        usage=usage,
    )


class _StreamMeter:
    """The metrics of one streamed completion: time to the first content token, then usage."""

    def __init__(self, state: IngressState, model_id: str, key_id: str | None, t0: float):
        self.state, self.model_id, self.key_id, self.t0 = state, model_id, key_id, t0
        self.first = True

    def content(self) -> None:
        if self.first:
            self.first = False
            self.state.metrics.first_token(self.model_id, time.perf_counter() - self.t0)

    def done(self, usage: CompletionUsage) -> None:
        self.state.metrics.tokens(self.model_id, self.key_id, usage.prompt_tokens, usage.completion_tokens)


def _usage(final: dict) -> CompletionUsage:
    return CompletionUsage.of(int(final.get("prompt_tokens", 0)), int(final.get("completion_tokens", 0)))


async def _sse_chunks(
    first: dict | None,
    stream,
    completion_id: str,
    created: int,
    model: str,
    fingerprint: str,
    include_usage: bool,
    parser: ToolCallParser | None,
    meter: _StreamMeter,
) -> AsyncIterator[str]:
    def chunk(
        delta: ChatCompletionStreamResponseDelta, finish: str | None = None, usage: CompletionUsage | None = None
    ) -> str:
        return CreateChatCompletionStreamResponse(
            id=completion_id,
            created=created,
            model=model,
            system_fingerprint=fingerprint,
            choices=[] if usage else [ChatCompletionStreamChoice(delta=delta, finish_reason=finish)],
            usage=usage,
        ).frame(include_usage)

    Delta = ChatCompletionStreamResponseDelta
    try:
        yield chunk(Delta(role="assistant", content=""))
        final: dict = {}
        item = first
        while item is not None:
            text = parser.feed(item["text"]) if parser else item["text"]
            if text:
                meter.content()
                yield chunk(Delta(content=text))
            if item.get("finish_reason"):
                final = item
            item = await next_item(stream)
        finish = final.get("finish_reason", "stop")
        if parser:
            rest, calls = parser.finish()
            if rest:
                yield chunk(Delta(content=rest))
            if calls:
                yield chunk(Delta(tool_calls=[c.to_openai(index=i) for i, c in enumerate(calls)]))
                finish = "tool_calls"
        yield chunk(Delta(), finish=finish)
        usage = _usage(final)
        meter.done(usage)
        if include_usage:
            yield chunk(Delta(), usage=usage)
        yield "[DONE]"
    except Exception as exc:  # mid-stream: the 200 is out; end with an error frame, never [DONE]
        if not isinstance(exc, APIError):
            logger.error("chat stream %s failed after it started: %r", completion_id, exc)
        yield json.dumps(stream_error(exc))
    finally:
        stream.cancel()

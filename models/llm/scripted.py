"""A deterministic chat backend that answers from a script.

For test profiles and load tests where the reply must be known in advance (emotion tags, tool
calls, reply length) independently of a model's whims. It goes through the same
:class:`models.base.ChatBackend` protocol, streaming, cancellation and token accounting as a
real model, so everything above it (deployments, routes, the realtime engine) runs unchanged.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator

from models.base import GenerationChunk, GenerationParams

_WORD_RE = re.compile(r"\S+\s*|\s+")


class ScriptedChat:
    """Replies chosen by regular expressions over the last user message.

    Args:
        source: unused (kept for the common constructor shape).
        rules: ``[{"match": regex, "reply": text}]`` or ``{"match": regex, "tool_call": {"name",
            "arguments": {...}}}``; the first rule whose regex matches the last user (or tool)
            message, case-insensitively, wins.
        default: the reply when no rule matches.
        after_tool: the reply after a ``tool`` message (``{output}`` is replaced by its content).
        token_delay_s: seconds between streamed words (simulates decoding speed).

    A tool-call reply yields one final chunk with ``finish_reason="tool_calls"`` and the call as
    JSON text ``{"name": ..., "arguments": {...}}``, the shape the wire layer's tool-call parser
    parses.
    """

    def __init__(
        self,
        source: str | None = None,
        rules: list[dict] | None = None,
        default: str = "I heard you.",
        after_tool: str = "The tool said: {output}",
        token_delay_s: float = 0.0,
    ):
        self.rules = [(re.compile(r["match"], re.IGNORECASE), r) for r in (rules or [])]
        self.default = default
        self.after_tool = after_tool
        self.token_delay_s = token_delay_s

    def generate(
        self,
        messages: list[dict],
        params: GenerationParams,
        tools: list[dict] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[GenerationChunk]:
        last = messages[-1] if messages else {"role": "user", "content": ""}
        prompt_tokens = sum(len(str(m.get("content") or "").split()) + 4 for m in messages)
        if last.get("role") == "tool":
            reply, call = self.after_tool.replace("{output}", str(last.get("content") or "")), None
        else:
            reply, call = self.default, None
            text = str(last.get("content") or "")
            for regex, rule in self.rules:
                if regex.search(text):
                    reply, call = rule.get("reply", ""), rule.get("tool_call")
                    break
        if call is not None and tools:
            body = json.dumps({"name": call["name"], "arguments": call.get("arguments", {})})
            yield GenerationChunk(
                text=f"<tool_call>{body}</tool_call>",
                finish_reason="tool_calls",
                prompt_tokens=prompt_tokens,
                completion_tokens=len(body.split()),
            )
            return
        words = _WORD_RE.findall(reply)[: max(1, params.max_tokens)]
        sent = 0
        for word in words:
            if cancel is not None and cancel.is_set():
                break
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            sent += 1
            yield GenerationChunk(text=word)
        finish = "length" if sent < len(_WORD_RE.findall(reply)) and not (cancel and cancel.is_set()) else "stop"
        yield GenerationChunk(finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=sent)

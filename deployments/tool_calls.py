"""Tool calls in generated text, in the Hermes / Qwen chat-template format::

    <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>

Chat templates that support ``tools`` (Qwen2.5, Hermes, SmolLM2...) instruct the model to answer
this way; :class:`ToolCallParser` separates such blocks from the visible content while text
streams in.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

OPEN, CLOSE = "<tool_call>", "</tool_call>"


@dataclass
class ToolCall:
    """One parsed call: OpenAI's ``tool_calls[i]`` with ``function.arguments`` as a JSON string."""

    id: str
    name: str
    arguments: str

    def to_openai(self, index: int | None = None) -> dict:
        out = {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}
        if index is not None:
            out["index"] = index
        return out


class ToolCallParser:
    """Incremental splitter: ``feed(text)`` returns the content that is safe to show now (never
    part of a ``<tool_call>`` block, holding back a possible partial opening tag);
    :meth:`finish` returns the remaining content and the parsed calls."""

    def __init__(self) -> None:
        self._buf = ""
        self._in_call = False
        self._call_text = ""
        self.calls: list[ToolCall] = []

    def feed(self, text: str) -> str:
        self._buf += text
        out = []
        while self._buf:
            if self._in_call:
                end = self._buf.find(CLOSE)
                if end == -1:
                    self._call_text += self._buf
                    self._buf = ""
                    break
                self._call_text += self._buf[:end]
                self._buf = self._buf[end + len(CLOSE) :]
                self._close_call()
            else:
                start = self._buf.find(OPEN)
                if start == -1:
                    keep = _partial_prefix_len(self._buf, OPEN)
                    out.append(self._buf[: len(self._buf) - keep])
                    self._buf = self._buf[len(self._buf) - keep :]
                    break
                out.append(self._buf[:start])
                self._buf = self._buf[start + len(OPEN) :]
                self._in_call = True
        return "".join(out)

    def finish(self) -> tuple[str, list[ToolCall]]:
        rest = ""
        if self._in_call:
            self._call_text += self._buf
            self._close_call()
        else:
            rest = self._buf
        self._buf = ""
        return rest, self.calls

    def _close_call(self) -> None:
        raw = self._call_text.strip()
        self._call_text = ""
        self._in_call = False
        try:
            obj = json.loads(raw)
            name = obj["name"]
            args = obj.get("arguments", obj.get("parameters", {}))
        except (ValueError, KeyError, TypeError):
            return  # not a well-formed call: drop it rather than show markup
        arguments = args if isinstance(args, str) else json.dumps(args)
        self.calls.append(ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", name=str(name), arguments=arguments))


def _partial_prefix_len(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


def parse_arguments(value: Any) -> Any:
    """A tool call's ``function.arguments`` as the chat template wants them: OpenAI sends a JSON
    string, which is decoded; a string that is not JSON, or an object, is passed on as is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value

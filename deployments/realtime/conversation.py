"""The conversation of one realtime session: its items, in order, and the LLM context they make.

Items are OpenAI's realtime items (``message``, ``function_call``, ``function_call_output``)
plus private fields (names starting with ``_``) that never reach the wire: ``_text``, the text
the LLM sees for the item, and ``_spans``, ``[(audio start ms, sentence)]`` of a spoken
assistant reply, which ``conversation.item.truncate`` cuts at ``audio_end_ms``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from deployments.protocol.realtime import ClientError, new_id
from deployments.tool_calls import parse_arguments


class Conversation:
    """The items of one session, in conversation order."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    @property
    def last_id(self) -> str | None:
        """The id of the last item (``previous_item_id`` of the next one), or ``None``."""
        return self.items[-1]["id"] if self.items else None

    def append(self, item: dict) -> None:
        self.items.append(item)

    def find(self, item_id: str | None) -> dict:
        """The item with ``item_id``.

        Raises:
            ClientError: ``item_not_found``.
        """
        for item in self.items:
            if item["id"] == item_id:
                return item
        raise ClientError(f"no item with id {item_id!r}", code="item_not_found", param="item_id")

    def truncate(self, item_id: str | None, audio_end_ms: int) -> dict:
        """Keep only the sentences of a spoken reply that started before ``audio_end_ms`` (what
        the user heard) in its transcript and in the LLM context; returns the item.

        Raises:
            ClientError: ``item_not_found``.
        """
        item = self.find(item_id)
        spans = item.get("_spans")
        if spans is not None:
            item["_text"] = " ".join(s for start, s in spans if start < audio_end_ms)
            for part in item.get("content", []):
                if "transcript" in part:
                    part["transcript"] = item["_text"]
        return item

    def delete(self, item_id: str | None) -> dict:
        """Remove an item; returns it.

        Raises:
            ClientError: ``item_not_found``.
        """
        item = self.find(item_id)
        self.items.remove(item)
        return item

    def messages(self, system: str) -> list[dict]:
        """The LLM context: OpenAI chat messages, ``system`` first, then every item with text,
        tool call or tool output."""
        out: list[dict] = [{"role": "system", "content": system}]
        for item in self.items:
            if item["type"] == "message" and item.get("_text"):
                out.append({"role": item["role"], "content": item["_text"]})
            elif item["type"] == "function_call":
                out.append(
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [
                            {
                                "id": item["call_id"],
                                "type": "function",
                                "function": {"name": item["name"], "arguments": parse_arguments(item["arguments"])},
                            }
                        ],
                    }
                )
            elif item["type"] == "function_call_output":
                out.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
        return out


def public(item: dict) -> dict:
    """An item as the wire carries it: without the private ``_`` fields."""
    return {k: v for k, v in item.items() if not k.startswith("_")}


async def item_from_wire(item: dict, transcribe_audio: Callable[[dict], Awaitable[str]]) -> dict:
    """A conversation item from ``conversation.item.create``'s ``item`` (``message`` with
    text / audio parts, ``function_call``, ``function_call_output``), with its ``_text``;
    ``transcribe_audio(part)`` gives the transcript of an audio part.

    Raises:
        ClientError: an unknown item or part type, a bad role, missing ``call_id``.
    """
    kind = item.get("type", "message")
    new = {"id": item.get("id") or new_id("item"), "object": "realtime.item", "type": kind, "status": "completed"}
    if kind == "message":
        role = item.get("role", "user")
        if role not in ("user", "assistant", "system"):
            raise ClientError("item.role must be user, assistant or system", param="item.role")
        parts = item.get("content") or []
        if not isinstance(parts, list):
            raise ClientError("item.content must be a list of content parts", param="item.content")
        texts = []
        for part in parts:
            ptype = part.get("type") if isinstance(part, dict) else None
            if ptype in ("input_text", "text", "output_text"):
                texts.append(str(part.get("text", "")))
            elif ptype in ("input_audio", "audio"):
                texts.append(await transcribe_audio(part))
            else:
                raise ClientError(f"unsupported content part type {ptype!r}", param="item.content")
        new.update(role=role, content=parts, _text=" ".join(t for t in texts if t))
    elif kind == "function_call_output":
        call_id = item.get("call_id")
        if not call_id:
            raise ClientError("function_call_output needs call_id", param="item.call_id")
        new.update(call_id=call_id, output=str(item.get("output", "")))
    elif kind == "function_call":
        new.update(
            call_id=item.get("call_id") or new_id("call"),
            name=item.get("name", ""),
            arguments=item.get("arguments", "{}"),
        )
    else:
        raise ClientError(f"unsupported item type {kind!r}", param="item.type")
    return new

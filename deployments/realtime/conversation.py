"""The conversation of one realtime session: its items, in order, and the LLM context they make.

Items are OpenAI's realtime items (``message``, ``function_call``, ``function_call_output``)
plus private fields (names starting with ``_``) that never reach the wire: ``_text``, the text
the LLM sees for the item, and ``_spans``, ``[(audio start ms, sentence)]`` of a spoken
assistant reply, which ``conversation.item.truncate`` cuts at ``audio_end_ms``.
"""

from __future__ import annotations

from deployments.realtime_protocol import ClientError
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
                out.append({"role": "assistant", "content": "", "tool_calls": [{
                    "id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": parse_arguments(item["arguments"])}}]})
            elif item["type"] == "function_call_output":
                out.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
        return out


def public(item: dict) -> dict:
    """An item as the wire carries it: without the private ``_`` fields."""
    return {k: v for k, v in item.items() if not k.startswith("_")}

"""Field helpers shared by the wire modules."""

from __future__ import annotations

from typing import Any

from pydantic import Field


def _is_none(value: Any) -> bool:
    return value is None


def omitted_when_none(**kwargs: Any) -> Any:
    """A field that defaults to ``None`` and is left out of the JSON while it is ``None``, for
    the fields OpenAI omits when they do not apply (a delta's ``role``, ``tool_calls`` without
    calls, ``words`` not asked for). Fields OpenAI always sends, possibly null, stay plain."""
    return Field(None, exclude_if=_is_none, **kwargs)

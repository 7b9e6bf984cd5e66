"""Realtime wire events: names and constructors, for sessions and admission alike.

The default names are the OpenAI Realtime *beta* names that the Naia clients read
(``response.audio.delta``, ``response.text.delta``, ``conversation.item.created``...). A session
whose ``session.update`` is GA-shaped (``session.type: "realtime"``) gets OpenAI's GA names
instead (``response.output_audio.delta``, ``conversation.item.added`` / ``done``...). Naia's
extensions (``emotion.updated``, ``response.cancelled``, ``session.*`` admission events) are the
same in both.
"""

from __future__ import annotations

import uuid
from typing import Any

#: beta/Naia name -> GA name, for the events whose name changed.
GA_NAMES = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "conversation.item.created": "conversation.item.added",
}

#: content part types: beta -> GA
GA_PART_TYPES = {"audio": "output_audio", "text": "output_text"}


class ClientError(Exception):
    """A client event that cannot be processed: answered with one ``error`` event
    (:func:`error_event`, ``type`` ``invalid_request_error``); the session stays open.

    Args:
        message: plain words for a person.
        code: the error's ``code`` (``invalid_audio``, ``item_not_found``...).
        param: the field at fault, or ``None``.
    """

    def __init__(self, message: str, code: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def new_id(prefix: str) -> str:
    """OpenAI-style ids: ``event_…``, ``item_…``, ``resp_…``, ``sess_…``, ``call_…``."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def event(type: str, **fields: Any) -> dict:
    """A server event with a fresh ``event_id``."""
    return {"type": type, "event_id": new_id("event"), **fields}


def error_event(message: str, *, type: str = "invalid_request_error", code: str | None = None,
                param: str | None = None, client_event_id: str | None = None) -> dict:
    """OpenAI's realtime ``error`` event (``RealtimeServerEventError``): the one constructor for
    every realtime error, in a session (which stays open) and in admission (before a close code).

    Args:
        message: plain words for a person.
        type: OpenAI's error type (``invalid_request_error``, ``authentication_error``,
            ``server_error``...).
        code: a machine-readable code (``invalid_json``, ``invalid_api_key``...), or ``None``.
        param: the field at fault (``session.temperature``), or ``None``.
        client_event_id: the ``event_id`` of the client event that caused it, or ``None``.
    """
    return event("error", error={"type": type, "code": code, "message": message, "param": param,
                                 "event_id": client_event_id})

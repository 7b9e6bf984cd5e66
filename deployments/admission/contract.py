"""The gateway contract's vocabulary (docs/admission.md): WebSocket close codes, the outcome and
event names, and the builders of the decision every admission returns."""

from __future__ import annotations

from typing import Any

from deployments.protocol.realtime import (
    RealtimeServerEventSessionError,
    error_event,
)

CLOSE_AUTH_FAILED = 4001
CLOSE_SUPERSEDED = 4002
CLOSE_INSUFFICIENT_CREDITS = 4003
CLOSE_CONSENT_REQUIRED = 4409
CLOSE_INTERNAL_ERROR = 4500
CLOSE_UNAVAILABLE = 4503

#: Outcome names (keys of the counters) in the order the admin view lists them.
OUTCOMES = (
    "created",
    "queued",
    "preparing",
    "sold_out",
    "consent_required",
    "session_error",
    "auth_failed",
    "quota_exceeded",
    "internal_error",
)

#: Bookkeeping counters besides the outcomes.
EVENTS = ("reattached", "superseded", "released", "reaped", "held", "lapsed", "readopted")


def session_error_event(message: str, code: str = "no_endpoint") -> dict:
    """``session.error`` (close 4503): assigned, but the backend cannot be reached (docs/admission.md).
    The ingress sends it too when a role call fails right after admission (then it releases)."""
    return RealtimeServerEventSessionError(
        error={"message": message, "type": "backend_unreachable", "code": code}
    ).to_wire()


def internal_error_decision(message: str = "internal error in admission") -> dict:
    """The decision for an unexpected failure: ``error`` event + close 4500."""
    return make_decision(
        "internal_error", error_event(message, type="server_error", code="internal_error"), CLOSE_INTERNAL_ERROR
    )


def make_decision(outcome: str, event: dict, close_code: int | None, **extra: Any) -> dict:
    d = {
        "outcome": outcome,
        "event": event,
        "close_code": close_code,
        "session_id": None,
        "instance": None,
        "account": None,
        "key_id": None,
        "reservation_token": None,
        "supersede": [],
    }
    d.update(extra)
    return d

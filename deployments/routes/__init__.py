"""One FastAPI router per route family; each route reads: parse -> call handle -> shape response."""

from __future__ import annotations

from fastapi import Request

from deployments.errors import APIError
from deployments.state import IngressState

#: Content types a JSON route accepts.
JSON_TYPES = ("application/json",)


def get_state(request: Request) -> IngressState:
    """Route dependency: the ingress state the app was built around."""
    return request.app.state.omni


def require_api_key(request: Request) -> None:
    """Route dependency: when API keys are configured (``admission.api_keys``, the
    ``OMNISERVE_API_KEYS`` environment variable or a key file), REST routes need
    ``Authorization: Bearer <key>``; otherwise 401 ``invalid_api_key``. Probes never do."""
    state = get_state(request)
    if not state.api_keys.enabled:
        return
    auth = request.headers.get("authorization", "")
    key = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("api-key")
    if not state.api_keys.check(key).ok:
        raise APIError(
            401,
            "Incorrect or missing API key: send 'Authorization: Bearer <key>'.",
            type="authentication_error",
            code="invalid_api_key",
        )


def require_json(request: Request) -> None:
    """Route dependency: 415 unless the body is declared as JSON."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in JSON_TYPES:
        raise APIError(
            415, f"expected Content-Type application/json, got {ctype or 'none'!r}", code="unsupported_media_type"
        )

"""One FastAPI router per route family; each route reads: parse -> call handle -> shape response."""

from __future__ import annotations

from fastapi import Request

from deployments.admission.keys import KeyCheck
from deployments.errors import APIError
from deployments.state import IngressState

#: Content types a JSON route accepts.
JSON_TYPES = ("application/json",)


def get_state(request: Request) -> IngressState:
    """Route dependency: the ingress state the app was built around."""
    return request.app.state.omni


def presented_key(request: Request) -> str | None:
    """The API key of a REST request: ``Authorization: Bearer <key>`` or an ``api-key`` header."""
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("api-key")


def require_api_key(request: Request) -> KeyCheck:
    """Route dependency: when API keys are configured (``admission.api_keys``, the
    ``OMNISERVE_API_KEYS`` environment variable or a key file), REST routes need
    ``Authorization: Bearer <key>``; otherwise 401 ``invalid_api_key``. Probes never do.

    Returns:
        The caller's :class:`~deployments.admission.keys.KeyCheck` (its ``key_id`` and role), also
        kept as ``request.state.key``; ``request.state.key_id`` is its key id for metrics and
        usage (``None`` with API keys off).
    """
    keys = get_state(request).api_keys
    check = keys.check(presented_key(request))
    if not check.ok:
        raise APIError(
            401,
            "Incorrect or missing API key: send 'Authorization: Bearer <key>'.",
            type="authentication_error",
            code="invalid_api_key",
        )
    request.state.key = check
    request.state.key_id = check.key_id if keys.enabled else None
    return check


def require_admin(request: Request) -> KeyCheck:
    """Route dependency of ``/v1/admin/*``: 401 as :func:`require_api_key` without a valid key,
    403 ``permission_error`` for a key whose role is not ``admin``. With API keys off every caller
    is an admin (a local, single-user install)."""
    check = require_api_key(request)
    if not check.is_admin:
        raise APIError(
            403,
            f"the API key {check.key_id} is not an admin key; /v1/admin/* needs one",
            type="permission_error",
            code="admin_required",
        )
    return check


def metered(request: Request, model_id: str) -> str | None:
    """Label this request with the model it resolved to (the ``model`` of its request metrics)
    and return the caller's key id for the usage metrics (``None`` with API keys off)."""
    request.state.model = model_id
    return getattr(request.state, "key_id", None)


def require_json(request: Request) -> None:
    """Route dependency: 415 unless the body is declared as JSON."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in JSON_TYPES:
        raise APIError(
            415, f"expected Content-Type application/json, got {ctype or 'none'!r}", code="unsupported_media_type"
        )

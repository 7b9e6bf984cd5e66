"""One error envelope for every route: ``{"error": {"message", "type", "param", "code"}}``.

Types follow OpenAI's names (``invalid_request_error``, ``not_found_error``...); ``code`` carries
the HTTP status as a string, as the Izwi API's envelope does (docs/http.md), unless a more
specific OpenAI code applies (``model_not_found``).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from ray.exceptions import ActorUnavailableError, RayActorError

from deployments.protocol.errors import ErrorDetail, ErrorResponse

#: error.type for each status when the raiser does not pick one (OpenAI's type names).
DEFAULT_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """An error answered with the envelope and ``status``.

    Args:
        status: HTTP status code.
        message: human-readable explanation.
        type: OpenAI error type; defaults from ``status``.
        param: the request field at fault, if any.
        code: machine code; defaults to ``str(status)``.
        headers: extra response headers (e.g. ``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or DEFAULT_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.param = param
        self.code = code or str(status)
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The envelope as a dict (also used inside realtime ``error`` events)."""
    return ErrorResponse(error=ErrorDetail(message=message, type=type, param=param, code=code)).model_dump()


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def model_not_found(model: str) -> APIError:
    return APIError(
        404,
        f"The model '{model}' does not exist or is not served here.",
        param="model",
        code="model_not_found",
        type="invalid_request_error",
    )


def is_replica_loss(exc: BaseException) -> bool:
    """Whether ``exc`` means the model replica serving a call died or became unreachable
    (Ray's ``RayActorError`` family: ``ActorDiedError``, ``ActorUnavailableError``): a
    transient failure that a new replica will not repeat."""
    return isinstance(exc, (RayActorError, ActorUnavailableError))


def replica_lost(model_id: str | None, detail: str) -> APIError:
    """503 ``model_unavailable`` with ``Retry-After: 5``: the replica of ``model_id`` (``None``:
    of a model the request used) died and the request could not be completed elsewhere; a
    transient failure, so the client may retry."""
    who = f"model '{model_id}'" if model_id else "a model"
    return APIError(
        503,
        f"{who} lost its replica and {detail}; retry shortly",
        type="model_unavailable",
        code="model_unavailable",
        headers={"Retry-After": "5"},
    )


def stream_error(exc: BaseException) -> dict[str, Any]:
    """The error event that ends an SSE stream which failed after its 200 status line went out
    (OpenAI streams an ``{"error": {...}}`` frame and no ``[DONE]``): ``model_unavailable``
    for a lost replica, ``stream_failed`` otherwise."""
    if isinstance(exc, APIError):
        return exc.body()
    detail = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
    if is_replica_loss(exc):
        return {
            "error": {
                "message": f"the model replica stopped mid-stream ({detail}); retry the request",
                "type": "server_error",
                "param": None,
                "code": "model_unavailable",
            }
        }
    return {
        "error": {
            "message": f"the stream failed: {detail}",
            "type": "server_error",
            "param": None,
            "code": "stream_failed",
        }
    }

"""The error envelope every non-2xx answer carries: OpenAI's ``{"error": {"message", "type",
"param", "code"}}`` (``ErrorResponse`` in OpenAI's OpenAPI description)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str = Field(description="what went wrong, in plain words")
    type: str = Field(
        description="invalid_request_error, authentication_error, model_preparing, model_unavailable, server_error, …"
    )
    param: str | None = Field(None, description="the request field at fault, if any")
    code: str | None = Field(None, description="a stable code, e.g. model_not_found, unsupported_media_type")


class ErrorResponse(BaseModel):
    """The error envelope every non-2xx answer carries."""

    error: ErrorDetail

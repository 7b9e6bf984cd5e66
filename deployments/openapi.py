"""The OpenAPI document (``/openapi.json``) as the endpoint really answers.

FastAPI derives paths and request bodies from the routes; this module adds what it cannot see:

- every status code each operation returns besides 200, each with the error envelope
  (:class:`ErrorResponse`, OpenAI's ``{"error": {"message", "type", "param", "code"}}``), and
  none it never returns (FastAPI's automatic 422: validation errors answer 400 here);
- the real content types: speech is audio (``audio/mpeg`` … ``audio/pcm``) or
  ``text/event-stream``, chat and transcription may stream ``text/event-stream``, transcription
  may answer ``text/plain`` (text, srt, vtt);
- the transcription request bodies (the routes read the form themselves: multipart with
  ``file``, or JSON with ``audio_base64``);
- ``/v1/realtime``: OpenAPI cannot type a WebSocket, so the path names the protocol, its events
  and a link to the README's section; a plain HTTP GET there answers 426.

Checked by schemathesis in ``tests/test_failures.py`` (status code and content type conformance).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from deployments.protocol.audio import CreateTranscriptionRequest
from deployments.protocol.errors import ErrorResponse
from models.audio import CONTENT_TYPES

#: The README's protocol section, relative to the repository root (where README.md lives).
README_REALTIME = "README.md#realtime-voice-v1realtime"


WHY = {
    400: "Invalid request: a bad field, JSON, audio file or parameter combination.",
    401: "Missing or wrong API key (only when API keys are configured).",
    403: "The API key is not an admin key (admin routes).",
    404: "Unknown model (`model_not_found`), or a model that cannot do this.",
    409: "The model has a fixed `num_replicas` or a policy of its own (`model_not_unloadable`).",
    413: "Request body over `server.max_body_bytes`.",
    415: "Wrong Content-Type.",
    426: "Not a WebSocket upgrade.",
    503: "The model is starting (`model_preparing`), at capacity (`model_overloaded`) or lost its "
    "replica (`model_unavailable`); `Retry-After` says when to retry.",
}
_MODEL_CALL = (400, 401, 404, 413, 503)
#: (method, path) -> the error statuses the operation can return
ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/chat/completions"): (*_MODEL_CALL, 415),
    ("post", "/v1/embeddings"): (*_MODEL_CALL, 415),
    ("post", "/v1/audio/speech"): (*_MODEL_CALL, 415),
    ("post", "/v1/audio/transcriptions"): (*_MODEL_CALL, 415),
    ("post", "/v1/audio/translations"): (*_MODEL_CALL, 415),
    ("get", "/v1/audio/voices"): (400, 401, 404, 413, 503),
    ("get", "/v1/models"): (401, 413),
    ("get", "/v1/models/{model}"): (401, 404, 413),
    ("get", "/v1/admin/admission"): (401, 403, 404, 413),
    ("get", "/v1/usage"): (401, 403, 413),
    ("get", "/v1/admin/models"): (401, 403, 413, 503),
    ("get", "/v1/admin/models/{model_id}"): (401, 403, 404, 413, 503),
    ("post", "/v1/admin/models/{model_id}/unload"): (401, 403, 404, 409, 413, 503),
    ("post", "/v1/admin/models/{model_id}/load"): (401, 403, 404, 409, 413, 503),
    ("get", "/livez"): (413,),
    ("get", "/v1/live"): (413,),
    ("get", "/health"): (413,),
    ("get", "/v1/health"): (413,),
    ("get", "/readyz"): (413,),
    ("get", "/v1/ready"): (413,),
    ("get", "/v1/realtime"): (413, 426),
}
SSE = {"text/event-stream": {"schema": {"type": "string", "description": "Server-sent events"}}}


def _transcription_body() -> dict[str, Any]:
    form = CreateTranscriptionRequest.model_json_schema()
    props = {k: v for k, v in form["properties"].items()}
    multipart = {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {
                "type": "string",
                "format": "binary",
                "description": "the audio file (wav, mp3, flac, ogg, webm, m4a…)",
            },
            **props,
        },
    }
    as_json = {
        "type": "object",
        "required": ["audio_base64"],
        "properties": {"audio_base64": {"type": "string", "description": "the audio file, base64"}, **props},
    }
    return {
        "required": True,
        "content": {"multipart/form-data": {"schema": multipart}, "application/json": {"schema": as_json}},
    }


def _realtime_path() -> dict[str, Any]:
    return {
        "get": {
            "tags": ["realtime"],
            "operationId": "realtime_websocket",
            "summary": "Realtime voice session (WebSocket)",
            "description": (
                "A WebSocket, which OpenAPI cannot type: connect with `ws://` / `wss://` to `/v1/realtime` (or `/`). "
                "It speaks the OpenAI Realtime protocol (client events `session.update`, `input_audio_buffer.append`, "
                "`input_audio_buffer.commit`, `conversation.item.create`, `response.create`, `response.cancel`; server "
                "events `session.created`, `input_audio_buffer.speech_started` / `speech_stopped`, "
                "`response.audio.delta`, `response.done`, `error`, … in beta or GA names) with the Naia extensions: "
                "the setup frame, admission events (`session.queued`, `session.preparing`, `session.sold_out`), "
                "`emotion.updated`, `response.cancelled`, and WebSocket close codes 4001–4003. "
                f"The protocol in full: the repository's README, section Realtime voice ({README_REALTIME})."
            ),
            "externalDocs": {"url": README_REALTIME, "description": "omniserve README: Realtime voice"},
            "responses": {"101": {"description": "Switching Protocols: the WebSocket session starts."}},
        }
    }


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The document FastAPI generates for ``app``, completed as described in the module
    docstring. Cached on ``app.openapi_schema`` like FastAPI's own."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorResponse"] = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schemas["ErrorResponse"].pop("$defs", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    paths = doc.setdefault("paths", {})
    paths.setdefault("/v1/realtime", {}).update(_realtime_path())
    envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for path, ops in paths.items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for status in ERRORS.get((method, path), (413,)):
                responses[str(status)] = {"description": WHY[status], "content": envelope}
                if status == 503:
                    responses["503"]["headers"] = {
                        "Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait before retrying"}
                    }
    ok = lambda path, method: paths[path][method]["responses"].setdefault("200", {"description": "OK"})  # noqa: E731
    ok("/v1/chat/completions", "post").setdefault("content", {}).update(SSE)
    speech = ok("/v1/audio/speech", "post")
    speech["content"] = {ctype: {"schema": {"type": "string", "format": "binary"}} for ctype in CONTENT_TYPES.values()}
    speech["content"].update(SSE)
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
        paths[path]["post"]["requestBody"] = _transcription_body()
        paths[path]["post"]["responses"]["200"] = {
            "description": "The transcript: JSON (json, verbose_json), text (text, srt, vtt) or SSE (stream)",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/plain": {"schema": {"type": "string"}},
                **SSE,
            },
        }
    for path in ("/readyz", "/v1/ready"):
        paths[path]["get"]["responses"]["503"] = {
            "description": "Not ready: a deployment runs fewer live replicas than its minimum (named checks)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    app.openapi_schema = doc
    return doc

"""How each traced deployment method is described on its spans, and how a span ends.

:data:`OPERATIONS` maps a deployment method to its :class:`Operation`: its
``gen_ai.operation.name`` and the GenAI attributes read from its arguments and from its result
(or each streamed item). The ingress's CLIENT span (:mod:`deployments.tracing.calls`) and the
replica's SERVER span (:mod:`deployments.tracing.replica`) use the same functions, so both carry
the same attributes, with the RPC ones of the handle call (:func:`rpc_attributes`). No prompt,
transcript or message content is recorded. :func:`end_span` ends every span of
:mod:`deployments.tracing`: an error recorded with ERROR status, a cancellation marked
``omniserve.cancelled``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode


@dataclasses.dataclass(frozen=True)
class Operation:
    """How one deployment method is traced: its ``gen_ai.operation.name`` and the attributes read
    from its arguments (``request(args, kwargs)``) and from its result or each streamed item
    (``result(value)``). Both sides use the same functions: the ingress's CLIENT span and the
    replica's SERVER span carry the same GenAI attributes."""

    name: str
    request: Callable[[tuple, dict], dict[str, Any]] | None = None
    result: Callable[[Any], dict[str, Any]] | None = None


def _arg(args: tuple, kwargs: dict, index: int, name: str) -> Any:
    return kwargs[name] if name in kwargs else (args[index] if len(args) > index else None)


def _chat_request(args: tuple, kwargs: dict) -> dict[str, Any]:
    params = _arg(args, kwargs, 1, "params") or {}
    out: dict[str, Any] = {}
    for key in ("max_tokens", "temperature", "top_p", "seed"):
        if params.get(key) is not None:
            out[f"gen_ai.request.{key}"] = params[key]
    if params.get("stop"):
        out["gen_ai.request.stop_sequences"] = [str(s) for s in params["stop"]]
    tools = _arg(args, kwargs, 2, "tools")
    if tools:
        out["omniserve.chat.tools"] = len(tools)
    return out


def _chat_item(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or not item.get("finish_reason"):
        return {}
    return {
        "gen_ai.usage.input_tokens": int(item.get("prompt_tokens") or 0),
        "gen_ai.usage.output_tokens": int(item.get("completion_tokens") or 0),
        "gen_ai.response.finish_reasons": [str(item["finish_reason"])],
    }


def _embed_request(args: tuple, kwargs: dict) -> dict[str, Any]:
    texts = _arg(args, kwargs, 0, "texts")
    return {"omniserve.embeddings.inputs": len(texts)} if texts is not None else {}


def _embed_result(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        return {}
    out = {"gen_ai.usage.input_tokens": int(result.get("prompt_tokens") or 0)}
    shape = getattr(result.get("vectors"), "shape", None)
    if shape is not None and len(shape) == 2:
        out["gen_ai.embeddings.dimension.count"] = int(shape[1])
    return out


def _transcription_result(result: Any) -> dict[str, Any]:
    if isinstance(result, dict) and result.get("type") == "done":  # transcribe_stream's last item
        result = result.get("transcription")
    if not isinstance(result, dict) or "duration" not in result:
        return {}
    out = {"omniserve.audio.input_seconds": float(result.get("duration") or 0.0)}
    if result.get("language"):
        out["omniserve.stt.language"] = str(result["language"])
    return out


def _speech_request(args: tuple, kwargs: dict) -> dict[str, Any]:
    text = _arg(args, kwargs, 0, "text")
    out: dict[str, Any] = {"gen_ai.output.type": "speech"}
    if isinstance(text, str):
        out["omniserve.tts.input_characters"] = len(text)
    voice = kwargs.get("voice")
    if voice:
        out["omniserve.tts.voice"] = str(voice)
    if kwargs.get("response_format"):
        out["omniserve.tts.format"] = str(kwargs["response_format"])
    return out


def _vad_request(args: tuple, kwargs: dict) -> dict[str, Any]:
    frames = _arg(args, kwargs, 0, "frames")
    return {"omniserve.vad.frames": len(frames)} if frames is not None else {}


def _end_of_turn_result(result: Any) -> dict[str, Any]:
    return {"omniserve.vad.end_of_turn_probability": float(result)} if isinstance(result, (int, float)) else {}


#: Deployment method name -> how it is traced. Only these methods get spans and a carrier; the
#: model servers wrap each of them with :func:`~deployments.tracing.replica.traced`
#: (``tests/test_tracing.py`` checks that).
OPERATIONS: dict[str, Operation] = {
    "chat": Operation("chat", _chat_request, _chat_item),
    "embed": Operation("embeddings", _embed_request, _embed_result),
    "transcribe": Operation("transcription", None, _transcription_result),
    "transcribe_stream": Operation("transcription", None, _transcription_result),
    "speech": Operation("speech", _speech_request),
    "pcm": Operation("speech", _speech_request),
    "score": Operation("voice_activity", _vad_request),
    "end_of_turn": Operation("end_of_turn", None, _end_of_turn_result),
    "speech_timestamps": Operation("voice_activity"),
}


def rpc_attributes(op: Operation, model_id: str, deployment: str, method: str) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": op.name,
        "gen_ai.request.model": model_id,
        "rpc.system": "ray_serve",
        "rpc.service": deployment,
        "rpc.method": method,
    }


def safe_attributes(fn: Callable[..., dict[str, Any]] | None, *args: Any) -> dict[str, Any]:
    """Attributes from an extractor; a tracing bug never fails the call it describes."""
    if fn is None:
        return {}
    try:
        return fn(*args)
    except Exception:  # pragma: no cover - defensive
        return {}


def end_span(span: Span, error: BaseException | None = None, cancelled: bool = False) -> None:
    if cancelled or isinstance(error, asyncio.CancelledError | GeneratorExit):
        span.set_attribute("omniserve.cancelled", True)
    elif error is not None:
        span.record_exception(error)
        span.set_attribute("error.type", type(error).__qualname__)
        span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
    span.end()

"""Backend registry: ``(role, backend name) -> class``, imported lazily.

The values are ``"module:Class"`` strings so that listing or validating a configuration never
imports torch, NeMo or f5-tts; :func:`create_backend` imports only the module it needs.
"""

from __future__ import annotations

import importlib
from typing import Any

from models.base import ROLES

BACKENDS: dict[str, dict[str, str]] = {
    "llm": {
        "transformers": "models.llm.transformers_llm:TransformersChat",
        "scripted": "models.llm.scripted:ScriptedChat",
    },
    "embeddings": {
        "sentence-transformers": "models.embeddings.sentence_transformers_embeddings:SentenceTransformerEmbeddings",
    },
    "stt": {
        "faster-whisper": "models.stt.faster_whisper_stt:FasterWhisperSTT",
        "transformers-whisper": "models.stt.transformers_whisper_stt:TransformersWhisperSTT",
        "nemo": "models.stt.nemo_stt:NemoSTT",
    },
    "tts": {
        "piper": "models.tts.piper_tts:PiperTTS",
        "f5-tts": "models.tts.f5_tts:F5TTS",
    },
    "vad": {
        "silero": "models.vad.silero_vad:SileroVAD",
    },
}


def backend_names(role: str) -> list[str]:
    """Backend names available for ``role``."""
    return sorted(BACKENDS[role])


def backend_class(role: str, backend: str) -> type:
    """Import and return the class implementing ``backend`` for ``role``.

    Raises:
        KeyError: unknown role or backend.
    """
    if role not in ROLES:
        raise KeyError(f"unknown role {role!r}; expected one of {ROLES}")
    try:
        target = BACKENDS[role][backend]
    except KeyError:
        raise KeyError(f"unknown {role} backend {backend!r}; expected one of {backend_names(role)}") from None
    module_name, _, cls_name = target.partition(":")
    return getattr(importlib.import_module(module_name), cls_name)


def create_backend(role: str, backend: str, source: str | None, options: dict[str, Any] | None = None) -> Any:
    """Construct a backend: ``backend_class(role, backend)(source=source, **options)``."""
    cls = backend_class(role, backend)
    return cls(source=source, **(options or {}))

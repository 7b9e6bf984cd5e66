"""The model catalog: which ids are served and which deployment answers each for each role."""

from __future__ import annotations

import time
from dataclasses import dataclass

from deployments.config import AppConfig, ModelConfig
from deployments.errors import APIError, model_not_found

ROLE_WORDS = {
    "llm": "chat",
    "embeddings": "embeddings",
    "stt": "speech-to-text",
    "tts": "text-to-speech",
    "vad": "voice activity detection",
}


@dataclass(frozen=True)
class CatalogEntry:
    """One listed id: a model or the cascade."""

    id: str
    owned_by: str
    created: int


class Catalog:
    """Resolves a request's ``model`` to a configured model for a role.

    - the cascade id or one of its aliases: the cascade's model for that role;
    - a model id or alias: that model, which must have the role (otherwise 400);
    - anything else: 404 ``model_not_found``.
    """

    def __init__(self, config: AppConfig):
        self.config = config
        self.created = int(time.time())
        self._by_name: dict[str, ModelConfig] = {}
        for m in config.models:
            for name in (m.id, *m.aliases):
                self._by_name[name] = m
        self._cascade_names = {config.cascade.id, *config.cascade.aliases}

    def entries(self) -> list[CatalogEntry]:
        """Listed ids: the cascade, then every model, in configuration order."""
        out = [CatalogEntry(self.config.cascade.id, self.config.server.served_by, self.created)]
        out += [CatalogEntry(m.id, m.owned_by, self.created) for m in self.config.models]
        return out

    def lookup(self, name: str) -> CatalogEntry | None:
        """The entry for an id or alias (keeping the name asked for, as OpenAI does), or ``None``."""
        if name in self._cascade_names:
            return CatalogEntry(name, self.config.server.served_by, self.created)
        m = self._by_name.get(name)
        return CatalogEntry(name, m.owned_by, self.created) if m else None

    def resolve(self, name: str | None, role: str) -> ModelConfig:
        """The model that serves ``role`` for ``name`` (``None`` or empty: the cascade's).

        Raises:
            APIError: 404 for an unknown id; 400 when the id names a model of another role, or
                the cascade has no model for ``role``.
        """
        if not name or name in self._cascade_names:
            m = self.config.cascade_model(role)
            if m is None:
                raise APIError(400, f"this server has no {ROLE_WORDS[role]} model", param="model")
            return m
        m = self._by_name.get(name)
        if m is None:
            raise model_not_found(name)
        if m.role != role:
            raise APIError(
                400,
                f"The model '{name}' is a {ROLE_WORDS[m.role]} model, not a {ROLE_WORDS[role]} model.",
                param="model",
                code="model_not_supported",
            )
        return m


#: Broad modalities of each role, in the contract's words (``text_input``, ``audio_output``...).
MODALITIES = {
    "llm": ["text_input", "text_output"],
    "embeddings": ["text_input", "embedding_output"],
    "stt": ["audio_input", "text_output"],
    "tts": ["text_input", "audio_output"],
    "vad": ["audio_input"],
}


def route_capabilities(model: ModelConfig, config: AppConfig) -> dict[str, bool]:
    """The contract's ``route_capabilities`` that apply to omniserve's routes, for ``model``:
    the OpenAI routes it can answer, and the part it plays in realtime voice sessions (the
    cascade is modular: ASR, text model and TTS are separate models). ``openai_embeddings`` is
    omniserve's addition (the contract has no embeddings route)."""
    in_cascade = config.cascade_model(model.role) is model
    return {
        "openai_chat_completions": model.role == "llm",
        "openai_responses": False,
        "openai_audio_speech": model.role == "tts",
        "openai_audio_transcriptions": model.role == "stt",
        "openai_embeddings": model.role == "embeddings",
        "voice_realtime_text_model": in_cascade and model.role == "llm",
        "voice_realtime_modular_asr": in_cascade and model.role == "stt",
        "voice_realtime_modular_tts": in_cascade and model.role == "tts",
        "voice_realtime_unified": False,
    }

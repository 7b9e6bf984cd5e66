"""The application builder: configuration in, bound Serve application out.

``serve run configs/embedded.yaml`` imports ``deployments.app:build_app`` and calls it with the
file's ``args``; so do the Helm chart's ``serveConfigV2`` and the tests.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from deployments.config import AppConfig, DEFAULT_DEPLOYMENT_NAMES
from deployments.ingress import Ingress
from deployments.servers import EmbeddingServer, LLMServer

SERVER_CLASSES = {
    "llm": LLMServer,
    "embeddings": EmbeddingServer,
}


def server_class(role: str):
    """The Serve deployment class that wraps backends of ``role``."""
    if role not in SERVER_CLASSES:
        from deployments import audio_servers

        SERVER_CLASSES.update(audio_servers.SERVER_CLASSES)
    return SERVER_CLASSES[role]


def build_app(args: dict[str, Any] | AppConfig) -> Application:
    """Build the application graph: one deployment per model, one ingress composing them.

    Args:
        args: an :class:`AppConfig` or its dict form (a profile file's ``args``).

    Returns:
        The bound ingress (a Serve ``Application``) ready for ``serve.run``.

    Raises:
        pydantic.ValidationError: the configuration is invalid.
    """
    config = args if isinstance(args, AppConfig) else AppConfig.model_validate(args or {})
    handles = {}
    for model in config.models:
        cls = server_class(model.role)
        opts = model.deployment.serve_options(DEFAULT_DEPLOYMENT_NAMES[model.role], model.role)
        handles[model.id] = cls.options(**opts).bind(model.model_dump(mode="json"))
    ingress_opts = config.ingress.deployment.serve_options("Ingress")
    return Ingress.options(**ingress_opts).bind(config.model_dump(mode="json"), handles)

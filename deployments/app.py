"""The application builder: configuration in, bound Serve application out.

``serve run configs/embedded.yaml`` imports ``deployments.app:build_app`` and calls it with the
file's ``args``; so do the Helm chart's ``serveConfigV2`` and the tests.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from deployments import audio_servers
from deployments.admission.server import AdmissionServer
from deployments.config import DEFAULT_DEPLOYMENT_NAMES, AppConfig
from deployments.ingress import Ingress
from deployments.scaling.options import session_autoscaling
from deployments.servers import EmbeddingServer, LLMServer
from deployments.tracing import provider

#: role -> the Serve deployment class that wraps its backends
SERVER_CLASSES = {
    "llm": LLMServer,
    "embeddings": EmbeddingServer,
    **audio_servers.SERVER_CLASSES,
}


def server_class(role: str):
    """The Serve deployment class that wraps backends of ``role``."""
    return SERVER_CLASSES[role]


def build_app(args: dict[str, Any] | AppConfig) -> Application:
    """Build the application graph: one deployment per model, one ingress composing them.

    Every autoscaled model deployment is driven by the session-aware policy
    (:func:`deployments.scaling.options.session_autoscaling`): waiting realtime sessions raise
    its target, and the admin routes can unload it.

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
        if "autoscaling_config" in opts:
            opts["autoscaling_config"] = session_autoscaling(
                opts["autoscaling_config"], count_waiting=config.admission.scale_on_queue
            )
        handles[model.id] = cls.options(**provider.with_otel_env(opts)).bind(model.model_dump(mode="json"))
    ingress_opts = config.ingress.deployment.serve_options("Ingress")
    admission = _admission(config, handles, ingress_opts["name"]) if config.admission.enabled else None
    ingress = Ingress.options(**provider.with_otel_env(ingress_opts))
    return ingress.bind(config.model_dump(mode="json"), handles, admission)


def _admission(config: AppConfig, handles: dict, ingress_name: str):
    """The admission service, watching the deployments of the cascade's roles and the ingress
    (each carries ``sessions_per_replica`` sessions per RUNNING replica)."""
    roles, role_handles, autoscaling = {}, {}, {}
    for role in ("llm", "stt", "tts", "vad"):
        model = config.cascade_model(role)
        if model is None:
            continue
        roles[role] = model.deployment_name
        role_handles[model.deployment_name] = handles[model.id]
        autoscaling[model.deployment_name] = model.deployment.serve_options(model.deployment_name, role).get(
            "autoscaling_config"
        )
    roles["ingress"] = ingress_name
    autoscaling[ingress_name] = config.ingress.deployment.serve_options(ingress_name).get("autoscaling_config")
    adm = config.admission.model_dump(mode="json")
    per_role = adm["sessions_per_replica"]
    if isinstance(per_role, int):
        per_role = {role: per_role for role in roles if role != "ingress"}
    adm["sessions_per_replica"] = {**per_role, "ingress": per_role.get("ingress", config.ingress.sessions_per_replica)}
    return AdmissionServer.options(**config.admission.serve_options()).bind(
        adm, roles, role_handles, autoscaling, metrics=config.server.metrics
    )

"""The application configuration: what ``build_app(args)`` receives.

A profile file (``configs/*.yaml``) is a Ray Serve config file (``ServeDeploySchema``) whose one
application has ``import_path: deployments.app:build_app`` and whose ``args`` follow
:class:`AppConfig`. The same file is used by ``serve run``, by the Helm chart's
``serveConfigV2`` and by the tests.

Every model becomes its own Serve deployment; :class:`DeploymentOptions` holds the Ray Serve
settings of that deployment (names follow Ray Serve's: ``num_replicas``, ``autoscaling_config``,
``max_ongoing_requests``, ``ray_actor_options.num_gpus``...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployments.admission.config import AdmissionConfig
from models.base import ROLES

Role = Literal["llm", "embeddings", "stt", "tts", "vad"]

#: Deployment name of each role's server when a model does not name its own.
DEFAULT_DEPLOYMENT_NAMES = {
    "llm": "LLMServer",
    "embeddings": "EmbeddingServer",
    "stt": "STTServer",
    "tts": "TTSServer",
    "vad": "VADServer",
}

#: Per-role defaults for a GPU cluster: how many requests one replica works on at once and the
#: per-replica load the autoscaler aims for (Ray Serve's ``target_ongoing_requests``).
ROLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "llm": {"max_ongoing_requests": 32, "target_ongoing_requests": 8},
    "embeddings": {"max_ongoing_requests": 64, "target_ongoing_requests": 16},
    "stt": {"max_ongoing_requests": 16, "target_ongoing_requests": 4},
    "tts": {"max_ongoing_requests": 16, "target_ongoing_requests": 4},
    "vad": {"max_ongoing_requests": 256, "target_ongoing_requests": 64},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeploymentOptions(_Strict):
    """Ray Serve options of one deployment.

    ``num_replicas`` (a fixed count) and ``autoscaling_config`` are exclusive; when neither is
    given the role's default autoscaling applies (1 to 2 replicas). ``autoscaling_config`` is
    Ray Serve's ``AutoscalingConfig`` (``min_replicas`` may be 0: scale to zero).
    """

    name: str | None = Field(None, description="Serve deployment name (default: per role, e.g. LLMServer)")
    num_replicas: int | None = Field(None, ge=0)
    autoscaling_config: dict[str, Any] | None = None
    max_ongoing_requests: int | None = Field(None, ge=1)
    max_queued_requests: int = Field(-1, ge=-1)
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    memory: int | None = Field(None, ge=0, description="bytes of RAM reserved per replica")
    accelerator_type: str | None = None
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources, e.g. a node pool")
    health_check_period_s: float | None = Field(None, gt=0)
    health_check_timeout_s: float | None = Field(None, gt=0)
    graceful_shutdown_timeout_s: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _replicas_xor_autoscaling(self) -> DeploymentOptions:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set either num_replicas or autoscaling_config, not both")
        if self.autoscaling_config is not None:
            from ray.serve.config import AutoscalingConfig

            AutoscalingConfig(**self.autoscaling_config)  # Ray's own validation
        return self

    def serve_options(self, default_name: str, role: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options(...)``."""
        defaults = ROLE_DEFAULTS.get(role or "", {"max_ongoing_requests": 16, "target_ongoing_requests": 4})
        actor: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory is not None:
            actor["memory"] = self.memory
        if self.accelerator_type:
            actor["accelerator_type"] = self.accelerator_type
        if self.resources:
            actor["resources"] = dict(self.resources)
        opts: dict[str, Any] = {
            "name": self.name or default_name,
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests or defaults["max_ongoing_requests"],
            "max_queued_requests": self.max_queued_requests,
        }
        if self.num_replicas is not None:
            opts["num_replicas"] = self.num_replicas
        else:
            opts["autoscaling_config"] = self.autoscaling_config or {
                "min_replicas": 1,
                "max_replicas": 2,
                "target_ongoing_requests": defaults["target_ongoing_requests"],
            }
        for key in ("health_check_period_s", "health_check_timeout_s", "graceful_shutdown_timeout_s"):
            if getattr(self, key) is not None:
                opts[key] = getattr(self, key)
        return opts


class ModelConfig(_Strict):
    """One served model: its role, backend, weights and Serve deployment."""

    id: str = Field(..., min_length=1, description="model id listed by /v1/models")
    role: Role
    backend: str
    source: str | None = Field(None, description="hub id, local path, or package://module/path")
    aliases: list[str] = Field(default_factory=list, description="other ids that resolve to this model")
    options: dict[str, Any] = Field(default_factory=dict, description="backend keyword arguments")
    owned_by: str = "omniserve"
    deployment: DeploymentOptions = Field(default_factory=DeploymentOptions)

    @model_validator(mode="after")
    def _known_backend(self) -> ModelConfig:
        from models.registry import BACKENDS

        if self.backend not in BACKENDS[self.role]:
            raise ValueError(
                f"unknown {self.role} backend {self.backend!r}; expected one of {sorted(BACKENDS[self.role])}"
            )
        if self.source is None and self.backend not in ("scripted", "silero"):
            raise ValueError(f"model {self.id!r} needs a source")
        return self

    @property
    def deployment_name(self) -> str:
        return self.deployment.name or DEFAULT_DEPLOYMENT_NAMES[self.role]


class CascadeConfig(_Strict):
    """The stack served as one model id (e.g. ``naia-0.9-omni-24g``): which model plays each role
    for requests that name the cascade, and for realtime sessions. A role left unset uses the
    first model of that role."""

    id: str = "naia-0.9-omni-24g"
    aliases: list[str] = Field(default_factory=list)
    llm: str | None = None
    embeddings: str | None = None
    stt: str | None = None
    tts: str | None = None
    vad: str | None = None


class IngressConfig(_Strict):
    """The ingress deployment (FastAPI: REST routes and the realtime WebSocket).

    An open WebSocket holds one of the replica's ``max_ongoing_requests`` for its whole life, so
    ``max_ongoing_requests`` must cover ``sessions_per_replica`` plus concurrent REST requests.
    """

    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(num_replicas=1, num_cpus=1, max_ongoing_requests=256)
    )
    sessions_per_replica: int = Field(32, ge=0, description="realtime sessions one ingress replica holds")


class ServerConfig(_Strict):
    """HTTP behaviour shared by every route."""

    max_body_bytes: int = Field(
        26_214_400, ge=1024, description="request body limit (413 above it); 25 MiB like OpenAI's audio uploads"
    )
    cors_allow_origins: list[str] = Field(default_factory=list, description="CORS is off unless origins are listed")
    served_by: str = "omniserve"
    metrics: bool = Field(
        True, description="record omniserve_* Prometheus series through Ray's metrics export (deployments/metrics.py)"
    )
    max_completion_tokens: int = Field(
        4096,
        ge=1,
        description="largest max_tokens / max_completion_tokens one chat request may ask for (400 above it), "
        "so that one request cannot hold a replica of a shared endpoint for minutes",
    )


class RealtimeConfig(_Strict):
    """The realtime WebSocket (``/v1/realtime``): session defaults and limits."""

    max_frame_bytes: int = Field(1_048_576, ge=1024, description="largest client frame; larger ones get an error event")
    max_buffer_s: float = Field(60.0, gt=0, description="longest input audio buffer before the oldest audio is dropped")
    default_instructions: str = Field("", description="persona used when session.update gives no instructions")
    max_response_tokens: int = Field(256, ge=1, description="LLM budget of one spoken reply")
    ref_audio_max_bytes: int = Field(10_485_760, ge=1024, description="largest ref_audio / ref_audio_url download")
    ref_audio_timeout_s: float = Field(10.0, gt=0, description="ref_audio_url fetch time limit")
    ref_audio_allow_private: bool = Field(False, description="allow ref_audio_url on loopback/private/link-local hosts")
    pipeline: Literal["speculative", "sequential"] = Field(
        "speculative",
        description="voice turn pipeline: speculative (STT at the first short silence, LLM started on "
        "the speculative transcript, first TTS at a clause) or sequential (silence window, then STT, LLM, TTS); "
        "a session may pick one with the omniserve extension field session.pipeline",
    )
    pause_ms: int = Field(
        200,
        ge=32,
        le=2000,
        description="silence after speech (ms) at which the speculative "
        "pipeline starts STT and semantic end-of-turn is checked",
    )
    server_vad_semantic_end: bool = Field(
        False,
        description="server_vad sessions that set no silence_duration_ms of their own also end a turn "
        "early when the end-of-turn model calls the utterance complete (needs the VAD's end_of_turn option)",
    )


class AppConfig(_Strict):
    """Everything ``deployments.app:build_app`` needs to build the application graph."""

    models: list[ModelConfig]
    cascade: CascadeConfig = Field(default_factory=CascadeConfig)
    ingress: IngressConfig = Field(default_factory=IngressConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)
    realtime: RealtimeConfig = Field(default_factory=RealtimeConfig)

    @field_validator("models")
    @classmethod
    def _unique(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        seen: dict[str, str] = {}
        names: set[str] = set()
        for m in models:
            for name in (m.id, *m.aliases):
                if name in seen:
                    raise ValueError(f"model id or alias {name!r} is used twice")
                seen[name] = m.id
            if m.deployment_name in names:
                raise ValueError(
                    f"two models share the deployment name {m.deployment_name!r}; set deployment.name on one"
                )
            names.add(m.deployment_name)
        return models

    @model_validator(mode="after")
    def _cascade_refs(self) -> AppConfig:
        ids = {m.id: m for m in self.models}
        for role in ROLES:
            ref = getattr(self.cascade, role)
            if ref is not None and (ref not in ids or ids[ref].role != role):
                raise ValueError(f"cascade.{role} = {ref!r} is not a {role} model of this configuration")
        clash = {self.cascade.id, *self.cascade.aliases} & {n for m in self.models for n in (m.id, *m.aliases)}
        if clash:
            raise ValueError(f"cascade ids {sorted(clash)} clash with model ids")
        return self

    def cascade_model(self, role: str) -> ModelConfig | None:
        """The model playing ``role`` for the cascade, or ``None`` when no model has that role."""
        ref = getattr(self.cascade, role)
        for m in self.models:
            if (ref is None and m.role == role) or m.id == ref:
                return m
        return None

    def models_of(self, role: str) -> list[ModelConfig]:
        return [m for m in self.models if m.role == role]


def load_profile(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a profile file. Returns ``(serve_config, args)``: the whole Serve config file and the
    ``args`` of its application built by ``deployments.app:build_app``.

    Raises:
        ValueError: the file has no application with that import path.
    """
    serve_config = yaml.safe_load(Path(path).read_text())
    for app in serve_config.get("applications", []):
        if app.get("import_path") == "deployments.app:build_app":
            return serve_config, app.get("args") or {}
    raise ValueError(f"{path}: no application with import_path deployments.app:build_app")

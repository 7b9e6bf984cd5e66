"""``/v1/admin/models``: the Izwi contract's model records ("Admin Model Management",
docs/http.md), as omniserve fills them for Serve deployments."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from deployments.protocol.fields import omitted_when_none

#: The contract's status values that a Serve deployment can be in (``not_downloaded`` and
#: ``downloading`` do not occur: weights are installed with the image or as packages).
ModelStatus = Literal["ready", "loading", "downloaded", "error"]


class ReplicaCounts(BaseModel):
    """Serve's replicas of the model's deployment (``serve status``'s ``replica_states``)."""

    running: int
    starting: int = Field(description="STARTING, UPDATING, RECOVERING or PENDING_MIGRATION")
    states: dict[str, int] = Field(description="every replica state Serve reports, with its count")


class AutoscalingBounds(BaseModel):
    """The bounds of the deployment's live ``autoscaling_config`` (which a RayService's
    ``serveConfigV2`` entry may have changed), as the autoscaling policy applies them; the
    configured ones until it has run. The policy keeps ``min_replicas`` unless the model is
    unloaded."""

    min_replicas: int
    max_replicas: int


class AdminModel(BaseModel):
    """One configured model. ``variant`` is the contract's name for the id."""

    variant: str
    id: str
    object: Literal["model"] = "model"
    enabled: bool = True
    status: ModelStatus = Field(
        description="ready: a replica runs; loading: replicas are starting; downloaded: at zero "
        "replicas (unloaded or scaled to zero), weights on disk; error: the deployment failed"
    )
    role: Literal["llm", "embeddings", "stt", "tts", "vad"]
    deployment: str = Field(description="the Serve deployment that serves it")
    modalities: list[str]
    replicas: ReplicaCounts
    num_replicas: int | None = Field(description="fixed replica count, or null when autoscaled")
    autoscaling: AutoscalingBounds | None = Field(description="autoscaling bounds, or null for a fixed count")
    unloaded: bool = Field(description="an admin unloaded it; requests start it again (cold start)")
    can_unload: bool = Field(description="whether unload / load apply (autoscaled by omniserve's policy)")
    route_capabilities: dict[str, bool]
    speech_capabilities: dict[str, bool | int] | None = omitted_when_none(
        description="the contract's speech model capabilities (text-to-speech models that are ready)"
    )


class AdminModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AdminModel]

"""Operator views and actions, for admin keys only:

* ``GET /v1/admin/admission`` lists realtime slots, admitted sessions, the queue, held
  reservations and the counters of each admission outcome;
* ``GET /v1/admin/models`` and ``GET /v1/admin/models/{id}`` give each configured model's record
  in the Izwi contract's shape ("Admin Model Management", docs/http.md): status from Serve's
  replica states, role, modalities, replica counts, autoscaling bounds, route capabilities;
* ``POST /v1/admin/models/{id}/unload`` drops the model's floor to zero replicas and
  ``POST …/load`` restores it, through the autoscaling policy (:mod:`deployments.scaling`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from deployments.admission.cluster import STARTING_STATES, model_status
from deployments.catalog import MODALITIES, route_capabilities
from deployments.config import ModelConfig
from deployments.errors import APIError, model_not_found
from deployments.protocol.admin import AdminModel, AdminModelList, AutoscalingBounds, ReplicaCounts
from deployments.routes import get_state, require_admin
from deployments.scaling.options import unloadable
from deployments.state import IngressState

#: Every route here answers admin keys only (403 for others, 401 without a key).
router = APIRouter(tags=["admin"], dependencies=[Depends(require_admin)])


@router.get("/v1/admin/admission")
async def admission_snapshot(state: IngressState = Depends(get_state)) -> dict:
    """The admission service's view: ``capacity``, ``occupied``, ``free``, ``sessions``,
    ``queue``, ``holds`` (reservations whose slot is held), ``counters`` per outcome,
    ``mean_session_s``; 404 when admission is disabled."""
    if state.admission is None:
        raise APIError(404, "admission is disabled in this configuration", code="admission_disabled")
    return await state.admission.snapshot.remote()


def _configured(state: IngressState, model_id: str) -> ModelConfig:
    """The configured model whose id (or alias) is ``model_id``; 404 ``model_not_found``."""
    for m in state.config.models:
        if model_id == m.id or model_id in m.aliases:
            return m
    raise model_not_found(model_id)


async def _record(state: IngressState, model: ModelConfig) -> AdminModel:
    info = (await state.deployment_states()).get(model.deployment_name)
    replica_states = dict((info or {}).get("replica_states") or {})
    status = model_status(info)
    auto = model.deployment.serve_options(model.deployment_name, model.role).get("autoscaling_config")
    bounds = None
    if auto:
        # the live bounds (a serveConfigV2 entry may have changed them since args were written),
        # else the configured ones
        live = await state.live_bounds(model) if unloadable(auto) else None
        low, high = live or (auto.get("min_replicas", 1), auto["max_replicas"])
        bounds = AutoscalingBounds(min_replicas=low, max_replicas=high)
    speech = None
    if model.role == "tts" and status == "ready":
        tts = await state.model_info(model)
        voices = tts.get("voices") or []
        speech = {
            "supports_builtin_voices": bool(voices),
            "built_in_voice_count": len(voices),
            "supports_reference_voice": bool(tts.get("supports_voice_cloning")),
            "supports_voice_description": False,
            "supports_streaming": True,
            "supports_speed_control": True,
            "supports_auto_long_form": True,
        }
    return AdminModel(
        variant=model.id,
        id=model.id,
        status=status,
        role=model.role,
        deployment=model.deployment_name,
        modalities=MODALITIES[model.role],
        replicas=ReplicaCounts(
            running=replica_states.get("RUNNING", 0),
            starting=sum(replica_states.get(k, 0) for k in STARTING_STATES),
            states=replica_states,
        ),
        num_replicas=model.deployment.num_replicas,
        autoscaling=bounds,
        unloaded=(info or {}).get("unloaded_at") is not None,
        can_unload=unloadable(auto),
        route_capabilities=route_capabilities(model, state.config),
        speech_capabilities=speech,
    )


@router.get("/v1/admin/models", response_model=AdminModelList)
async def list_admin_models(state: IngressState = Depends(get_state)) -> AdminModelList:
    """Every configured model's record, in configuration order."""
    return AdminModelList(data=[await _record(state, m) for m in state.config.models])


@router.get("/v1/admin/models/{model_id}", response_model=AdminModel)
async def get_admin_model(model_id: str, state: IngressState = Depends(get_state)) -> AdminModel:
    """One model's record by id or alias; 404 ``model_not_found``."""
    return await _record(state, _configured(state, model_id))


def _check_unloadable(state: IngressState, model: ModelConfig) -> None:
    auto = model.deployment.serve_options(model.deployment_name, model.role).get("autoscaling_config")
    if state.app_name is None or not unloadable(auto):
        how = "a fixed num_replicas" if auto is None else "an autoscaling policy of its own"
        raise APIError(
            409,
            f"model '{model.id}' has {how}; only models autoscaled by omniserve's policy can be unloaded "
            "(give it an autoscaling_config, or change num_replicas in the Serve config)",
            type="invalid_request_error",
            code="model_not_unloadable",
        )


@router.post("/v1/admin/models/{model_id}/unload", response_model=AdminModel)
async def unload_model(model_id: str, state: IngressState = Depends(get_state)) -> AdminModel:
    """Scale the model's deployment to zero replicas: its floor drops to 0 and Serve stops the
    replicas within about a second. Until ``…/load``, a request for it gets the cold-start answer
    (it waits, or 503 ``model_preparing`` with ``Retry-After``) and starts it again, and a
    realtime session gets ``session.preparing``. 409 ``model_not_unloadable`` for a fixed
    ``num_replicas``."""
    model = _configured(state, model_id)
    _check_unloadable(state, model)
    await state.unload(model)
    return await _record(state, model)


@router.post("/v1/admin/models/{model_id}/load", response_model=AdminModel)
async def load_model(model_id: str, state: IngressState = Depends(get_state)) -> AdminModel:
    """Start the model again: its floor is the configured ``min_replicas`` (a model scaled to
    zero by configuration is woken as a request would). The record's ``status`` is ``loading``
    until a replica runs."""
    model = _configured(state, model_id)
    _check_unloadable(state, model)
    await state.load(model)
    return await _record(state, model)

"""``GET /v1/models`` and ``GET /v1/models/{model}`` (OpenAI ``ListModelsResponse`` / ``Model``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from deployments.errors import model_not_found
from deployments.protocol.models import ListModelsResponse, Model
from deployments.routes import get_state
from deployments.state import IngressState

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ListModelsResponse)
async def list_models(state: IngressState = Depends(get_state)) -> ListModelsResponse:
    """The served ids: the cascade (the whole stack) and each model."""
    return ListModelsResponse(
        data=[Model(id=e.id, created=e.created, owned_by=e.owned_by) for e in state.catalog.entries()]
    )


@router.get("/v1/models/{model:path}", response_model=Model)
async def retrieve_model(model: str, state: IngressState = Depends(get_state)) -> Model:
    """One model by id or alias; unknown ids get 404 ``model_not_found``."""
    entry = state.catalog.lookup(model)
    if entry is None:
        raise model_not_found(model)
    return Model(id=entry.id, created=entry.created, owned_by=entry.owned_by)

"""Operator views: ``GET /v1/admin/admission`` lists realtime slots, admitted sessions, the
queue, held reservations and the counters of each admission outcome."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from deployments.errors import APIError
from deployments.routes import get_state, require_admin
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

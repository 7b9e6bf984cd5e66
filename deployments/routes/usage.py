"""``GET /v1/usage``: the calling key's own totals since the service started; an admin key may
ask for any ``key_id`` (see :mod:`deployments.usage`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from deployments.admission.keys import KeyCheck
from deployments.errors import APIError
from deployments.metrics import ANONYMOUS
from deployments.protocol.usage import AudioSeconds, TokenCounts, UsageReport
from deployments.routes import get_state, require_api_key
from deployments.state import IngressState

router = APIRouter(tags=["usage"])


@router.get("/v1/usage", response_model=UsageReport)
async def get_usage(
    key_id: str | None = Query(None, description="another team's key id (admin keys only)"),
    key: KeyCheck = Depends(require_api_key),
    state: IngressState = Depends(get_state),
) -> UsageReport:
    """Requests, tokens, audio seconds (in: transcribed, out: synthesised) and realtime session
    seconds of a key since the service started.

    Raises:
        APIError: 403 ``permission_error`` for another ``key_id`` without an admin key.
    """
    own = key.key_id if state.api_keys.enabled else ANONYMOUS
    wanted = key_id or own
    if wanted != own and not key.is_admin:
        raise APIError(
            403,
            "only an admin key may read another key's usage",
            type="permission_error",
            code="admin_required",
            param="key_id",
        )
    t = await state.usage.report(wanted)
    return UsageReport(
        key_id=wanted,
        since=int(t["since"]),
        requests=int(t["requests"]),
        tokens=TokenCounts(
            prompt=int(t["prompt_tokens"]),
            completion=int(t["completion_tokens"]),
            total=int(t["prompt_tokens"] + t["completion_tokens"]),
        ),
        audio_seconds=AudioSeconds(input=round(t["audio_in_seconds"], 3), output=round(t["audio_out_seconds"], 3)),
        realtime_session_seconds=round(t["realtime_session_seconds"], 3),
    )

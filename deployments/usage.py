"""Per-team usage totals behind ``GET /v1/usage``: requests, tokens, audio seconds and realtime
session seconds of each ``key_id`` since the service started.

Every ingress replica adds what its requests used to a :class:`UsageMeter`, which sends the sums
to the one admission service every second (:meth:`UsageMeter.flush`); the admission service keeps
the cluster's :class:`UsageLedger`, so any replica answers ``/v1/usage`` with the same totals.
Without admission (``admission.enabled: false``, one ingress replica) the meter keeps them itself.
The figures are the same ones the ``omniserve_*`` metrics count (``deployments.metrics``), kept
per key for the teams themselves, who have no access to Prometheus.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger("ray.serve")

#: The totals kept per key: request count, tokens, audio (s) and realtime session time (s).
FIELDS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "audio_in_seconds",
    "audio_out_seconds",
    "realtime_session_seconds",
)


class UsageLedger:
    """``{key_id: {field: total}}`` since :attr:`started_at` (Unix s); fields: :data:`FIELDS`."""

    def __init__(self) -> None:
        self.started_at = time.time()
        self._totals: dict[str, dict[str, float]] = {}

    def add(self, key_id: str, deltas: Mapping[str, float]) -> None:
        """Add ``deltas`` (a subset of :data:`FIELDS`) to ``key_id``'s totals.

        Raises:
            KeyError: an unknown field.
        """
        totals = self._totals.setdefault(key_id, dict.fromkeys(FIELDS, 0.0))
        for name, value in deltas.items():
            if name not in totals:
                raise KeyError(f"unknown usage field {name!r}")
            totals[name] += float(value)

    def merge(self, batch: Mapping[str, Mapping[str, float]]) -> None:
        """Add a :meth:`drain`-shaped batch ``{key_id: deltas}``."""
        for key_id, deltas in batch.items():
            self.add(key_id, deltas)

    def drain(self) -> dict[str, dict[str, float]]:
        """Everything recorded so far, and an empty ledger after."""
        out, self._totals = self._totals, {}
        return out

    def totals(self, key_id: str) -> dict[str, float]:
        """``key_id``'s totals (zeros for a key that used nothing yet)."""
        return dict(self._totals.get(key_id) or dict.fromkeys(FIELDS, 0.0))

    def key_ids(self) -> list[str]:
        return sorted(self._totals)


class UsageMeter:
    """One ingress replica's usage, sent to the admission service (``record_usage``; read back with
    ``usage_of``) at most
    :attr:`FLUSH_S` after it happened; with no admission service it is the ledger itself.

    Args:
        admission: the admission deployment's handle, or ``None``.
    """

    FLUSH_S = 1.0

    def __init__(self, admission: Any | None = None):
        self.admission = admission
        self.pending = UsageLedger()
        self.local = UsageLedger() if admission is None else None
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    def add(self, key_id: str, **deltas: float) -> None:
        """Record usage of ``key_id`` (fields of :data:`FIELDS`); never blocks."""
        if self.local is not None:
            self.local.add(key_id, deltas)
            return
        self.pending.add(key_id, deltas)
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(self._flush_later())
            except RuntimeError:  # no event loop (a synchronous caller): the next flush sends it
                pass

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.FLUSH_S)
        await self.flush()

    async def flush(self) -> None:
        """Send what is pending to the admission service (kept for the next try if it fails)."""
        if self.admission is None:
            return
        async with self._lock:
            batch = self.pending.drain()
            if not batch:
                return
            try:
                await self.admission.record_usage.remote(batch)
            except Exception as exc:  # noqa: BLE001 - admission restarting: retry with the next batch
                logger.warning("usage: could not reach the admission service (%s); will retry", exc)
                self.pending.merge(batch)

    async def report(self, key_id: str) -> dict[str, Any]:
        """``key_id``'s totals across the cluster, with this replica's latest usage included:
        ``{"key_id", "since" (Unix s), **fields}``."""
        if self.local is not None:
            return {"key_id": key_id, "since": self.local.started_at, **self.local.totals(key_id)}
        await self.flush()
        return await self.admission.usage_of.remote(key_id)

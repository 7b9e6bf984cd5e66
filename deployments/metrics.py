"""omniserve's own Prometheus series, recorded through Ray's metrics system.

They are ``ray.serve.metrics`` Counters, Gauges and Histograms, so they leave through Ray's own
metrics export (the port ``ray start --metrics-export-port`` pins; 8080 in ``scripts/serve.sh``
and on KubeRay, whose PodMonitor and Ray's Grafana dashboards scrape it), with Serve's
``deployment``, ``replica`` and ``application`` tags added. Ray prefixes every name with
``ray_`` on export and a counter gets Prometheus' ``_total`` suffix: ``omniserve_requests`` is
scraped as ``ray_omniserve_requests_total``. Histograms are in seconds.

``key_id`` is the caller's non-secret key id (``deployments.admission.config.ApiKey``), ``anonymous``
when API keys are off, so that the label set stays bounded by the configured keys.

With ``server.metrics: false`` no series is recorded (:class:`Metrics` is built with
``enabled=False``); the benchmarks compare the two. The per-key totals of ``GET /v1/usage``
(:class:`deployments.usage.UsageMeter`) are fed by the same calls, metrics on or off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ray.serve import metrics as serve_metrics

from deployments.usage import UsageMeter

logger = logging.getLogger("ray.serve")

#: Histogram buckets (s): request and model latencies, from 5 ms to 2 min.
LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]
#: The realtime turn's breakdown in ``response.metadata`` (ms) -> the histogram of each stage.
TURN_STAGES = {
    "voice_to_voice_ms": "omniserve_realtime_voice_to_voice_seconds",
    "turn_detector_wait_ms": "omniserve_realtime_turn_detector_wait_seconds",
    "stt_ms": "omniserve_realtime_stt_seconds",
    "llm_first_token_ms": "omniserve_realtime_llm_first_token_seconds",
    "first_clause_ms": "omniserve_realtime_first_clause_seconds",
    "tts_first_chunk_ms": "omniserve_realtime_tts_first_chunk_seconds",
}
#: Admission outcomes as the metric names them (``AdmissionState.decide``'s outcome -> label).
ADMISSION_OUTCOMES = {
    "created": "created",
    "queued": "queued",
    "preparing": "preparing",
    "sold_out": "sold_out",
    "consent_required": "consent_required",
    "auth_failed": "auth_failed",
    "quota_exceeded": "quota",
    "session_error": "session_error",
    "internal_error": "internal_error",
}
ANONYMOUS = "anonymous"


class Metrics:
    """The ``omniserve_*`` series of one replica (see the module docstring).

    Create it inside the replica (its constructor), where Ray is initialised and Serve's replica
    context gives the default tags.

    Args:
        enabled: ``False`` records no series (and creates none).
        usage: where the per-key totals go as well (``None``: nowhere).
    """

    def __init__(self, enabled: bool = True, usage: UsageMeter | None = None):
        self.enabled = enabled
        self.usage = usage
        self._open_sessions = 0
        if not enabled:
            return
        m = serve_metrics
        self._requests = m.Counter(
            "omniserve_requests",
            "HTTP requests answered, by route template, model id, status code and key id",
            tag_keys=("route", "model", "status", "key_id"),
        )
        self._duration = m.Histogram(
            "omniserve_request_duration_seconds",
            "HTTP request duration (s), until the last byte of the response",
            boundaries=LATENCY_BUCKETS_S,
            tag_keys=("route", "model"),
        )
        self._ttft = m.Histogram(
            "omniserve_time_to_first_token_seconds",
            "streamed chat: request start to the first content token (s)",
            boundaries=LATENCY_BUCKETS_S,
            tag_keys=("model",),
        )
        self._tokens = m.Counter(
            "omniserve_tokens", "tokens processed, by model, key id and kind", tag_keys=("model", "key_id", "kind")
        )
        self._audio = m.Counter(
            "omniserve_audio_seconds",
            "seconds of audio transcribed (in) or synthesised (out)",
            tag_keys=("model", "key_id", "direction"),
        )
        self._sessions = m.Gauge(
            "omniserve_realtime_sessions", "realtime sessions open on this replica", tag_keys=("state",)
        )
        self._turns = m.Counter(
            "omniserve_realtime_turns", "realtime responses by outcome", tag_keys=("outcome", "key_id")
        )
        self._stages = {
            key: m.Histogram(name, f"realtime turn: {key[:-3]} (s)", boundaries=LATENCY_BUCKETS_S)
            for key, name in TURN_STAGES.items()
        }
        self._decisions = m.Counter(
            "omniserve_admission_decisions", "admission decisions by outcome", tag_keys=("outcome",)
        )
        self._queue = m.Gauge("omniserve_admission_queue_length", "realtime sessions waiting for a slot")
        self._decision_s = m.Histogram(
            "omniserve_admission_decision_seconds", "time to decide one admission (s)", boundaries=LATENCY_BUCKETS_S
        )

    @property
    def recording(self) -> bool:
        """Whether calls record anything: the series, or the per-key usage totals (which are kept
        with ``server.metrics`` off too)."""
        return self.enabled or self.usage is not None

    # ------------------------------------------------------------------------------ REST
    def request(
        self, route: str, model: str, status: int, key_id: str | None, duration_s: float, keyed: bool = True
    ) -> None:
        """One answered HTTP request (``route`` its template, e.g. ``/v1/chat/completions``);
        ``keyed``: a route behind API keys, counted in the caller's usage (probes are not)."""
        if self.usage is not None and keyed:
            self.usage.add(key_id or ANONYMOUS, requests=1)
        if self.enabled:
            self._requests.inc(
                1, {"route": route, "model": model or "-", "status": str(status), "key_id": key_id or ANONYMOUS}
            )
            self._duration.observe(duration_s, {"route": route, "model": model or "-"})

    def first_token(self, model: str, seconds: float) -> None:
        if self.enabled:
            self._ttft.observe(seconds, {"model": model})

    def tokens(self, model: str, key_id: str | None, prompt: int, completion: int = 0) -> None:
        """Token usage of one call (prompt and completion tokens)."""
        if self.usage is not None and (prompt or completion):
            self.usage.add(key_id or ANONYMOUS, prompt_tokens=prompt, completion_tokens=completion)
        if self.enabled:
            for kind, n in (("prompt", prompt), ("completion", completion)):
                if n:
                    self._tokens.inc(n, {"model": model, "key_id": key_id or ANONYMOUS, "kind": kind})

    def audio(self, model: str, key_id: str | None, direction: str, seconds: float) -> None:
        """Audio processed: ``direction`` ``in`` (transcribed) or ``out`` (synthesised), in s."""
        if self.usage is not None and seconds > 0:
            self.usage.add(key_id or ANONYMOUS, **{f"audio_{direction}_seconds": seconds})
        if self.enabled and seconds > 0:
            self._audio.inc(seconds, {"model": model, "key_id": key_id or ANONYMOUS, "direction": direction})

    # ------------------------------------------------------------------------------ realtime
    def session_opened(self) -> None:
        if self.enabled:
            self._open_sessions += 1
            self._sessions.set(self._open_sessions, {"state": "active"})

    def session_closed(self, seconds: float = 0.0, key_id: str | None = None) -> None:
        """A realtime session ended after ``seconds`` (added to ``key_id``'s session time)."""
        if self.usage is not None and seconds > 0:
            self.usage.add(key_id or ANONYMOUS, realtime_session_seconds=seconds)
        if self.enabled:
            self._open_sessions = max(0, self._open_sessions - 1)
            self._sessions.set(self._open_sessions, {"state": "active"})

    def turn(self, status: str, key_id: str | None, breakdown: Mapping[str, Any]) -> None:
        """One realtime response: ``status`` from ``response.done`` (completed, cancelled,
        incomplete, failed) and its latency breakdown (ms, ``response.metadata``)."""
        if not self.enabled:
            return
        outcome = {"incomplete": "completed"}.get(status, status)
        self._turns.inc(1, {"outcome": outcome, "key_id": key_id or ANONYMOUS})
        for key, histogram in self._stages.items():
            value = breakdown.get(key)
            if isinstance(value, (int, float)):
                histogram.observe(float(value) / 1000.0)

    # ------------------------------------------------------------------------------ admission
    def decision(self, outcome: str, seconds: float, superseded: int = 0, queue_length: int | None = None) -> None:
        """One admission decision (``AdmissionState.decide``'s outcome), how long it took (s),
        the sessions it superseded, and the queue length after it."""
        if not self.enabled:
            return
        self._decisions.inc(1, {"outcome": ADMISSION_OUTCOMES.get(outcome, outcome)})
        if superseded:
            self._decisions.inc(superseded, {"outcome": "superseded"})
        self._decision_s.observe(seconds)
        if queue_length is not None:
            self._queue.set(queue_length)

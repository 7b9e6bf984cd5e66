"""The usage ledger and the per-replica meter (``deployments.usage``), without a cluster."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from deployments.metrics import Metrics
from deployments.realtime.connection import SessionMeter
from deployments.usage import FIELDS, UsageLedger, UsageMeter


def test_ledger_sums_per_key_and_drains():
    ledger = UsageLedger()
    ledger.add("team-a", {"requests": 1, "prompt_tokens": 10})
    ledger.add("team-a", {"requests": 1, "completion_tokens": 5})
    ledger.merge({"team-b": {"audio_in_seconds": 2.5}, "team-a": {"realtime_session_seconds": 3}})
    assert ledger.totals("team-a") == {
        **dict.fromkeys(FIELDS, 0.0),
        "requests": 2,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "realtime_session_seconds": 3,
    }
    assert ledger.totals("nobody") == dict.fromkeys(FIELDS, 0.0)
    assert ledger.key_ids() == ["team-a", "team-b"]
    with pytest.raises(KeyError):
        ledger.add("team-a", {"dollars": 1})
    drained = ledger.drain()
    assert drained["team-b"]["audio_in_seconds"] == 2.5 and ledger.key_ids() == []


class _Admission:
    """Stands in for the admission deployment's handle: ``record_usage`` / ``usage_of`` with
    ``.remote()``, the way a DeploymentHandle is called; the first send fails once."""

    def __init__(self):
        self.ledger = UsageLedger()
        self.fail_next = True
        outer = self

        class _Method:
            def __init__(self, fn):
                self.fn = fn

            def remote(self, *args):
                return self.fn(*args)

        async def record(batch):
            if outer.fail_next:
                outer.fail_next = False
                raise ConnectionError("admission restarting")
            outer.ledger.merge(batch)

        async def usage_of(key_id):
            return {"key_id": key_id, "since": outer.ledger.started_at, **outer.ledger.totals(key_id)}

        self.record_usage = _Method(record)
        self.usage_of = _Method(usage_of)


def test_meter_sends_to_admission_and_keeps_what_failed():
    async def run():
        admission = _Admission()
        meter = UsageMeter(admission)
        meter.add("team-a", requests=1, prompt_tokens=7)
        await meter.flush()  # fails: kept for the next flush
        assert admission.ledger.totals("team-a")["requests"] == 0
        meter.add("team-a", requests=1)
        report = await meter.report("team-a")  # flushes first
        assert report["requests"] == 2 and report["prompt_tokens"] == 7 and report["key_id"] == "team-a"

    asyncio.run(run())


def test_meter_without_admission_is_the_ledger():
    async def run():
        meter = UsageMeter(None)
        meter.add("anonymous", requests=1, audio_out_seconds=1.5)
        report = await meter.report("anonymous")
        assert report["requests"] == 1 and report["audio_out_seconds"] == 1.5

    asyncio.run(run())


def test_usage_is_kept_with_metrics_off():
    """``server.metrics: false`` turns the Prometheus series off, not the teams' usage totals:
    the REST calls and a realtime session's events still reach the meter."""

    async def run():
        meter = UsageMeter(None)
        metrics = Metrics(enabled=False, usage=meter)
        assert metrics.recording
        metrics.request("/v1/chat/completions", "m", 200, "team-a", 0.1)
        metrics.tokens("m", "team-a", 12, 3)
        models = SimpleNamespace(
            llm=SimpleNamespace(id="llm"), stt=SimpleNamespace(id="stt"), tts=SimpleNamespace(id="tts")
        )
        session = SessionMeter(metrics, models, "team-a")
        session.sent({"type": "response.audio.delta", "delta": "A" * 64000})  # 48000 bytes: 1 s of PCM16 at 24 kHz
        session.sent({"type": "conversation.item.input_audio_transcription.completed", "usage": {"seconds": 2.5}})
        session.sent(
            {
                "type": "response.done",
                "response": {"status": "completed", "usage": {"input_tokens": 5, "output_tokens": 7}},
            }
        )
        metrics.session_closed(4.0, "team-a")
        t = await meter.report("team-a")
        assert t["requests"] == 1 and t["prompt_tokens"] == 17 and t["completion_tokens"] == 10
        assert t["audio_out_seconds"] == 1.0 and t["audio_in_seconds"] == 2.5 and t["realtime_session_seconds"] == 4.0
        assert not Metrics(enabled=False).recording

    asyncio.run(run())

"""Admission: many realtime session attempts against the capacity, reconnecting with backoff."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from benchmarks.results import PhaseResult, short_error
from benchmarks.scenario import Input, RequestFailed, Scenario, cascade_id
from benchmarks.scenarios import register

WAIT_EVENTS = ("session.queued", "session.preparing")


@register
class AdmissionScenario(Scenario):
    """``/v1/realtime`` admission (docs/admission.md): ``clients`` clients arrive at once; each
    connects with its own ``instance``, and while it is told ``session.queued`` /
    ``session.preparing`` (close 4503) or ``session.sold_out`` it reconnects with exponential
    backoff (the contract's 5 → 60 s, scaled by ``backoff_scale``); once admitted it holds the
    session for ``hold_s`` and leaves.

    Reported: ``decision_ms`` (socket open → first admission event, every attempt),
    ``wait_s`` (first attempt → ``session.created``, per client), ``queued_to_created_s`` (the
    first ``session.queued`` / ``session.preparing`` → ``session.created``, per client that had
    to wait), ``attempts`` per client, and
    the checks the contract promises: every client admitted; FIFO (``fifo_violations``: pairs
    where client A was told to wait before client B even connected, yet an attempt of A that
    *started* after B
    had received ``session.created`` was still told to wait, so the service decided A after it
    admitted B; a slot held for A while A's reconnect is on its way is not a violation);
    and no reservation lost (``reservations_lost``: a client whose ``reservation_token``
    changed while it waited).

    Bare baseline: the same arrival pattern on the admission core (``AdmissionState.decide``)
    in-process, with the same capacity; the ratio is the serving overhead of the admission path
    (WebSocket, ingress, handle call, persisted state) over the decision itself.
    """

    name = "admission"
    title = "Realtime admission"
    route = "WS /v1/realtime (admission)"
    metrics = ("decision_ms", "wait_s", "queued_to_created_s", "attempts")
    ratio_metrics = ("decision_ms",)
    headline = "decision_ms"
    baseline_role = None

    def settings_for_run(self) -> dict:
        s = self.settings
        clients, hold = s.admission_clients, s.admission_hold_s
        return {
            "clients": clients if clients is not None else (16 if s.smoke else 200),
            "capacity_expected": 4,
            "backoff_scale": 0.05 if s.smoke else 0.1,
            "hold_s": hold if hold is not None else (0.2 if s.smoke else 0.5),
        }

    def inputs(self) -> list[Input]:
        return [Input("attempt", None)]

    def describe(self) -> dict:
        return {**self.settings_for_run(), "backoff": "min(60, 5 * 2**k) s x backoff_scale (docs/admission.md)"}

    def _url(self) -> str:
        base = self.ctx.base_url.rstrip("/").replace("http://", "ws://").replace("https://", "wss://")
        return f"{base}/v1/realtime?model={cascade_id(self.ctx)}"

    def _client(self, idx: int, results: list, decisions: list, conf: dict, deadline: float) -> None:
        from websockets.sync.client import connect

        instance = f"bench{idx}:{idx:04d}"
        t_first = time.perf_counter()
        attempts, tokens, first_wait, last_wait = 0, [], None, None
        k = 0
        try:
            while time.perf_counter() < deadline:
                attempts += 1
                t0 = time.perf_counter()
                with connect(f"{self._url()}&instance={instance}", open_timeout=30) as ws:
                    ev = json.loads(ws.recv(timeout=30))
                    decisions.append((time.perf_counter() - t0) * 1000.0)
                    kind = ev.get("type")
                    if kind == "session.created":
                        created_at = time.perf_counter()
                        results[idx] = {
                            "ok": True,
                            "wait_s": created_at - t_first,
                            "attempts": attempts,
                            "arrived": t_first,
                            "first_wait": first_wait,
                            "last_wait": last_wait,
                            "created_at": created_at,
                            "reservations_lost": int(len(set(tokens)) > 1),
                        }
                        if first_wait is not None:
                            results[idx]["queued_to_created_s"] = created_at - first_wait
                        time.sleep(conf["hold_s"])
                        return
                    if kind in WAIT_EVENTS:
                        tokens.append(ev.get("reservation_token"))
                        last_wait = t0  # this attempt started (so was decided) no earlier than t0
                        if first_wait is None:
                            first_wait = time.perf_counter()
                    elif kind != "session.sold_out":
                        raise RequestFailed(f"unexpected {kind}: {ev}")
                delay = min(60.0, 5.0 * 2**k) * conf["backoff_scale"]
                if kind == "session.sold_out":
                    delay = max(delay, float(ev.get("retry_after_s", 5)) * conf["backoff_scale"])
                k += 1
                time.sleep(delay)
            raise RequestFailed("not admitted before the deadline")
        except Exception as exc:
            results[idx] = {"ok": False, "error": short_error(exc), "attempts": attempts}

    def run_endpoint(self) -> dict:
        conf = self.settings_for_run()
        n = conf["clients"]
        results: list[dict | None] = [None] * n
        decisions: list[float] = []
        deadline = time.perf_counter() + max(self.settings.duration_s * 10, 120.0)
        t0 = time.perf_counter()
        threads = []
        for i in range(n):  # arrivals in index order, 20 ms apart, so "first come" is observable
            th = threading.Thread(target=self._client, args=(i, results, decisions, conf, deadline), daemon=True)
            th.start()
            threads.append(th)
            time.sleep(0.02)
        for th in threads:
            th.join(timeout=max(0.0, deadline - time.perf_counter()) + 30)
        wall = time.perf_counter() - t0
        samples = []
        for r in results:
            r = r or {"ok": False, "error": "did not finish"}
            samples.append(
                {
                    "input": "attempt",
                    **{k: v for k, v in r.items() if k not in ("arrived", "first_wait", "last_wait", "created_at")},
                }
            )
        # FIFO: nobody who started waiting later is admitted while an earlier waiter is still
        # told to wait after that
        # (A was surely queued first: A's first wait answer came back before B even connected)
        waited = [r for r in results if r and r.get("ok") and r.get("first_wait")]
        pairs = [(a, b) for a in waited for b in waited if a["first_wait"] < b["arrived"]]
        violations = sum(1 for a, b in pairs if b["created_at"] < a["last_wait"])
        phase = PhaseResult(samples=samples, wall_s=wall, users=n)
        block = phase.report(self)
        from benchmarks.stats import summarize

        block["metrics"]["decision_ms"] = summarize(decisions)
        block.update(
            {
                "clients": n,
                "admitted": sum(1 for r in results if r and r.get("ok")),
                "all_admitted": all(r and r.get("ok") for r in results),
                "fifo_violations": violations,
                "fifo_checked_pairs": len(pairs),
                "fifo_order": "no client admitted while an earlier waiter is still told to wait afterwards",
                "reservations_lost": sum(int(r.get("reservations_lost", 0)) for r in results if r),
                "attempts_total": sum(int(r.get("attempts", 0)) for r in results if r),
            }
        )
        return {"sequential": block, "load": {"arrivals": block}}

    # ------------------------------------------------------------------ bare decision
    def baseline_unavailable(self) -> str | None:
        return None

    def baseline_model(self) -> dict | None:
        return {"id": "AdmissionState (in-process core)"}

    def baseline_setup(self) -> Any:
        return None

    def baseline_call(self, model: Any, inp: Input) -> dict:
        """The same arrival pattern on a fresh core: every client decides once, then the
        admitted leave one by one and every waiter reconnects once; returns the mean time of
        one ``decide`` in ms (the sample's ``decision_ms``)."""
        from deployments.admission.config import AdmissionConfig
        from deployments.admission.core import AdmissionState, BackendView

        conf = self.settings_for_run()
        state = AdmissionState(
            AdmissionConfig(
                capacity=conf["capacity_expected"], max_queue=conf["clients"] + 16, api_keys_env=None, persist=False
            )
        )
        state.set_backend(BackendView(capacity=conf["capacity_expected"]))
        times = []
        live = []
        for i in range(conf["clients"]):
            t = time.perf_counter()
            d = state.decide({"instance": f"bench{i}:{i:04d}", "replica_id": "bench"})
            times.append(time.perf_counter() - t)
            if d["outcome"] == "created":
                live.append(d["session_id"])
        for sid in live:
            state.release(sid)
        for i in range(conf["clients"]):
            t = time.perf_counter()
            state.decide({"instance": f"bench{i}:{i:04d}", "replica_id": "bench"})
            times.append(time.perf_counter() - t)
        return {"decision_ms": 1000.0 * sum(times) / len(times)}

    def baseline_info(self, model: Any) -> dict:
        return {"what": "deployments.admission.core.AdmissionState.decide, no I/O"}

"""Drive the endpoint with Locust used as a library (``locust.env.Environment`` + ``LocalRunner``).

Importing this module imports Locust, which monkey-patches the standard library with gevent:
import it before any HTTP client (``benchmarks.__main__`` does so first thing for ``run``), and
never in a process that also runs Ray or the model libraries (the baseline runs in its own
process).

Each phase builds one Locust ``User`` class whose single task sends one request through the
scenario (:meth:`benchmarks.scenario.Scenario.request`) and records a raw sample; the samples,
not Locust's rounded histograms, give the percentiles. Every request is also reported to
Locust's ``request`` event, so Locust's own counters (kept in the phase's ``locust`` block) see
the same traffic.

Bounds: a phase stops starting requests once its ``duration_s`` has passed or ``max_requests``
have been started, lets the requests in flight finish, and is stopped hard (in-flight requests
killed and counted as ``cut``) ``timeout_s + 5`` seconds after that.
"""

from __future__ import annotations

import logging
import time

import gevent
import locust  # noqa: F401  (gevent monkey-patching happens here, before any socket use)
from locust import User, constant, task
from locust.env import Environment
from locust.exception import StopUser

from benchmarks.results import PhaseResult, measure
from benchmarks.scenario import Input, Scenario

logging.getLogger("locust").setLevel(logging.WARNING)

#: Poll interval of the phase supervisor (seconds).
TICK_S = 0.02


class _PhaseState:
    def __init__(self, inputs: list[Input], duration_s: float | None, max_requests: int):
        self.inputs = inputs
        self.duration_s = duration_s
        self.max_requests = max_requests
        self.started = 0
        self.in_flight = 0
        self.samples: list[dict] = []
        self.t0 = time.perf_counter()
        self.t_last = self.t0

    def closed(self) -> bool:
        if self.started >= self.max_requests:
            return True
        return self.duration_s is not None and time.perf_counter() - self.t0 >= self.duration_s


def run_phase(
    scenario: Scenario, inputs: list[Input], users: int, duration_s: float | None, max_requests: int
) -> PhaseResult:
    """Run ``users`` closed-loop Locust users against the scenario's route.

    Args:
        scenario: sends the requests (:meth:`Scenario.request`) and makes one client per user.
        inputs: used round-robin in request order.
        users: concurrent users, all spawned at once.
        duration_s: stop starting requests after this many seconds (``None``: count-bound only).
        max_requests: stop starting requests after this many.

    Returns:
        The phase's raw samples; ``wall_s`` runs from the start to the last answer.
    """
    state = _PhaseState(inputs, duration_s, max_requests)
    request_type = scenario.route.split()[0] if " " in scenario.route else "REQUEST"

    class PhaseUser(User):
        wait_time = constant(0)

        def on_start(self) -> None:
            self.bench_client = scenario.new_client()

        def on_stop(self) -> None:
            scenario.close_client(self.bench_client)

        @task
        def one_request(self) -> None:
            if state.closed():
                raise StopUser()
            i = state.started
            state.started += 1
            inp = state.inputs[i % len(state.inputs)]
            state.in_flight += 1
            try:
                sample = measure(scenario, self.bench_client, inp)
            finally:
                state.in_flight -= 1
            state.t_last = time.perf_counter()
            sample["t_start_s"] = round(state.t_last - sample["elapsed_s"] - state.t0, 4)
            state.samples.append(sample)
            self.environment.events.request.fire(
                request_type=request_type,
                name=f"{scenario.name}:{inp.key}",
                response_time=sample["elapsed_s"] * 1000.0,
                response_length=int(sample.get("bytes") or 0),
                exception=None if sample["ok"] else RuntimeError(sample.get("error")),
                context={},
            )

    env = Environment(user_classes=[PhaseUser])
    runner = env.create_local_runner()
    timeout_s = scenario.settings.timeout_s
    hard_limit = (duration_s if duration_s is not None else max_requests * timeout_s) + timeout_s + 5.0
    state.t0 = time.perf_counter()
    state.t_last = state.t0
    runner.start(users, spawn_rate=min(max(users, 1), 100))
    hard_stopped = False
    while True:
        gevent.sleep(TICK_S)
        if state.closed() and state.in_flight == 0:
            break
        if time.perf_counter() - state.t0 > hard_limit:
            hard_stopped = True
            break
    cut = state.in_flight
    runner.quit()
    total = env.stats.total
    locust_block = {
        "num_requests": total.num_requests,
        "num_failures": total.num_failures,
        "median_response_time_ms": total.median_response_time,
        "avg_response_time_ms": round(total.avg_response_time, 2),
        "p95_response_time_ms": total.get_response_time_percentile(0.95) if total.num_requests else None,
    }
    return PhaseResult(
        samples=state.samples,
        wall_s=state.t_last - state.t0,
        users=users,
        duration_s=duration_s,
        extra={
            "cut": cut,
            "hard_stopped": hard_stopped,
            "client_cpu_warning": bool(getattr(runner, "cpu_warning_emitted", False)),
            "locust": locust_block,
        },
    )

"""The standard flow of a scenario (see :mod:`benchmarks.scenario`): warm-up, the paired
sequential phase against the bare library, then the load phases through Locust.

Imported by the load process only (:mod:`benchmarks.run`): it imports :mod:`benchmarks.load`, and
so Locust and gevent's monkey-patching, which the baseline process must not see.
"""

from __future__ import annotations

from benchmarks.baseline import BareLibrary
from benchmarks.load import run_phase
from benchmarks.results import PhaseResult, measure
from benchmarks.scenario import Input, RequestFailed, Scenario


def run_scenario(scenario: Scenario, bare: BareLibrary | None = None) -> dict:
    """Warm-up, paired sequential phase and load phases; with a :meth:`Scenario.run_endpoint`
    hook, that hook and then ``repeats`` unpaired bare calls per input; then the blocks of
    :meth:`Scenario.extra_blocks`.

    Args:
        scenario: the scenario to run.
        bare: the baseline process, or ``None`` to skip the baseline.

    Returns:
        ``{"endpoint": {"sequential": phase, "load": {name: phase}}, "baseline": block, **extra}``
        (phase blocks: :meth:`benchmarks.results.PhaseResult.report`; the baseline block is
        ``None`` without ``bare``).

    Raises:
        RequestFailed: every warm-up request failed.
    """
    outcome = _standard(scenario, bare)
    outcome.update(scenario.extra_blocks())
    return outcome


def _standard(scenario: Scenario, bare: BareLibrary | None) -> dict:
    settings = scenario.settings
    inputs = scenario.inputs()
    custom = scenario.run_endpoint()
    if custom is not None:
        return {"endpoint": custom, "baseline": _unpaired_baseline(scenario, bare, inputs)}
    client = scenario.new_client()
    baseline: dict | None = None
    endpoint_samples: list[dict] = []
    bare_samples: list[dict] = []
    try:
        warm = [measure(scenario, client, inp) for inp in inputs]
        if not any(w["ok"] for w in warm):
            raise RequestFailed(f"every warm-up request failed: {warm[0].get('error')}")
        if bare is not None:
            baseline = bare.setup(scenario, inputs)  # loads the model, one warm-up call per input
        paired = baseline is not None and baseline.get("status") == "ok"
        for r in range(max(1, settings.repeats)):
            for i, inp in enumerate(inputs):
                bare_first = paired and (r + i) % 2 == 1
                if bare_first:
                    bare_samples.append(bare.call(i, inp.key))
                endpoint_samples.append(measure(scenario, client, inp))
                if paired and not bare_first:
                    bare_samples.append(bare.call(i, inp.key))
    finally:
        scenario.close_client(client)
        if bare is not None:
            bare.release()
    busy = sum(s.get("elapsed_s", 0.0) for s in endpoint_samples)
    sequential = PhaseResult(samples=endpoint_samples, wall_s=busy, users=1).report(scenario)
    if baseline is not None and baseline.get("status") == "ok":
        bare_busy = sum(s.get("elapsed_s", 0.0) for s in bare_samples)
        baseline["sequential"] = PhaseResult(samples=bare_samples, wall_s=bare_busy, users=1).report(scenario)
    load = {}
    for phase in scenario.load_phases():
        load[phase.name] = run_phase(
            scenario,
            phase.inputs,
            users=settings.concurrency,
            duration_s=phase.duration_s,
            max_requests=settings.max_requests,
        ).report(scenario)
    return {"endpoint": {"sequential": sequential, "load": load}, "baseline": baseline}


def _unpaired_baseline(scenario: Scenario, bare: BareLibrary | None, inputs: list[Input]) -> dict | None:
    if bare is None:
        return None
    try:
        baseline = bare.setup(scenario, inputs)
        if baseline.get("status") != "ok":
            return baseline
        samples = [
            bare.call(i, inp.key) for _ in range(max(1, scenario.settings.repeats)) for i, inp in enumerate(inputs)
        ]
    finally:
        bare.release()
    busy = sum(s.get("elapsed_s", 0.0) for s in samples)
    baseline["sequential"] = PhaseResult(samples=samples, wall_s=busy, users=1).report(scenario)
    return baseline

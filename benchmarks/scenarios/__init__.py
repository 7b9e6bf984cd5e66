"""Scenario registry and the base class every scenario derives from.

A scenario measures one route of the endpoint. The default flow (:meth:`Scenario.run`) is the
same for every REST scenario:

1. warm-up: one request per input to the endpoint, and one bare-library call per input, neither
   recorded;
2. *sequential* (paired): ``repeats`` rounds over the inputs, one request at a time; each
   endpoint request is paired with one bare-library call on the same input in the baseline
   process, alternating which goes first, so both sides see the same background load on the
   machine — these pairs give the overhead ratio;
3. *load*: ``concurrency`` closed-loop users (each sends its next request as soon as its last
   one is answered) for ``duration_s`` seconds per load phase, through Locust; the baseline
   process has released the model and sits idle.

Adding a scenario: subclass :class:`Scenario`, decorate it with :func:`register`, and import its
module in :func:`load_all` (:data:`SCENARIO_MODULES`). A request/response scenario implements
:meth:`Scenario.inputs` and :meth:`Scenario.request` (plus ``new_client``/``close_client`` for,
e.g., one WebSocket session per user) and gets the whole flow. One that measures its own way
(e.g. ``admission``: session attempts against a capacity) overrides :meth:`Scenario.run_endpoint`
to return the endpoint block itself — it may call :func:`benchmarks.load.run_phase` — and the
baseline then runs ``repeats`` calls per input after it, unpaired; or it overrides
:meth:`Scenario.run` for full control. Without a baseline (:attr:`Scenario.baseline_role`
``None`` and no :meth:`Scenario.baseline_unavailable` override) the overhead ratio is reported
as ``null`` with the reason.

Scenario modules import only the standard library at module level: the load process imports
Locust (which monkey-patches the standard library with gevent) before any HTTP client, and the
baseline process imports the heavy model libraries only inside :meth:`Scenario.baseline_setup`.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from benchmarks.baseline import BareLibrary

#: name -> scenario class, filled by :func:`register`.
REGISTRY: dict[str, type[Scenario]] = {}

#: Scenarios reserved for later work: accepted names that are not implemented yet.
PLANNED: dict[str, str] = {}

#: Modules that define the implemented scenarios, in report order.
SCENARIO_MODULES = ("chat", "transcription", "speech", "embeddings", "realtime", "admission")


def cascade_id(ctx: Context) -> str:
    """The id that names the whole stack (the profile's ``cascade.id``; realtime sessions)."""
    return ((ctx.profile or {}).get("cascade")) or "naia-0.9-omni-24g"


def register(cls: type[Scenario]) -> type[Scenario]:
    """Class decorator: add a scenario to :data:`REGISTRY` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    REGISTRY[cls.name] = cls
    return cls


def load_all() -> dict[str, type[Scenario]]:
    """Import every scenario module and return :data:`REGISTRY`."""
    for module in SCENARIO_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return REGISTRY


class RequestFailed(Exception):
    """One request did not produce a valid answer (HTTP error, malformed or empty body)."""


@dataclass
class Settings:
    """How hard and how long to drive the endpoint.

    Attributes:
        duration_s: length of each scenario's load phase(s) in seconds (a scenario with several
            load phases, e.g. embeddings by batch size, splits it between them).
        concurrency: concurrent closed-loop users in the load phase.
        repeats: sequential requests per input for the overhead comparison (endpoint and bare).
        max_requests: most requests one load phase sends (a count bound besides the time bound).
        timeout_s: per-request timeout in seconds.
        smoke: shorter inputs (e.g. fewer generated tokens) for a quick check.
    """

    duration_s: float = 30.0
    concurrency: int = 4
    repeats: int = 5
    max_requests: int = 1000
    timeout_s: float = 120.0
    smoke: bool = False


@dataclass
class Context:
    """What a scenario needs to know about the run.

    Attributes:
        base_url: endpoint root without ``/v1`` (``None`` in the baseline process).
        settings: load settings.
        profile: :func:`benchmarks.environment.read_profile` of the configuration file, or ``None``.
        model_ids: role -> model id sent in requests (``llm``, ``stt``, ``tts``, ``embeddings``).
        audio_files: speech clips for the transcription scenario.
        baseline_threads: intra-op threads of the bare libraries: ``"replica"`` (what Ray gives
            the model's replica, see :meth:`Scenario.baseline_threads`), ``"default"`` (the
            libraries' own defaults) or a number.
    """

    base_url: str | None
    settings: Settings
    profile: dict | None = None
    model_ids: dict[str, str] = field(default_factory=dict)
    audio_files: list[Path] = field(default_factory=list)
    baseline_threads: str = "replica"


@dataclass
class Input:
    """One input a scenario sends: ``key`` names it in the report, ``data`` is its payload,
    ``about`` describes it in the report (e.g. its audio duration)."""

    key: str
    data: Any
    about: dict = field(default_factory=dict)


@dataclass
class Phase:
    """One load phase: these inputs (round-robin) at ``Settings.concurrency`` for ``duration_s``."""

    name: str
    inputs: list[Input]
    duration_s: float


class Scenario:
    """Base class of a benchmark scenario (see the module docstring for the flow).

    Class attributes:
        name: registry name, used by ``--scenarios``.
        title: one line for the chart and the README.
        route: the HTTP route it drives.
        metrics: sample keys summarised with p50/p95/p99; the unit is the key's suffix
            (``_ms`` milliseconds, ``_per_s`` per second, ``rtf`` a real-time factor = processing
            time ÷ audio duration).
        ratio_metrics: time metrics compared endpoint ÷ bare (p50 of the sequential runs).
        headline: the metric whose ratio is the scenario's ``overhead.ratio``.
        rates: report key -> sample key summed over a phase and divided by its wall time
            (e.g. ``tokens_per_s`` from ``tokens``).
        baseline_role: profile role whose model the bare baseline loads (``None``: no baseline).
        baseline_backends: profile backends the bare baseline knows how to run.
        baseline_modules: modules that must be importable for the baseline.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    route: ClassVar[str] = ""
    metrics: ClassVar[tuple[str, ...]] = ("latency_ms",)
    ratio_metrics: ClassVar[tuple[str, ...]] = ("latency_ms",)
    headline: ClassVar[str] = "latency_ms"
    rates: ClassVar[dict[str, str]] = {}
    baseline_role: ClassVar[str | None] = None
    baseline_backends: ClassVar[tuple[str, ...]] = ()
    baseline_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.settings = ctx.settings

    # ------------------------------------------------------------------ inputs and settings
    def inputs(self) -> list[Input]:
        """The inputs, identical for the endpoint and the baseline."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Scenario-specific settings recorded in the report (prompt, max_tokens, format...)."""
        return {}

    def load_phases(self) -> list[Phase]:
        """Load phases; by default one phase over all inputs for the whole duration."""
        return [Phase("load", self.inputs(), self.settings.duration_s)]

    # ------------------------------------------------------------------ endpoint side
    def new_client(self) -> Any:
        """A client for one load user (default: a ``requests.Session``)."""
        import requests

        return requests.Session()

    def close_client(self, client: Any) -> None:
        close = getattr(client, "close", None)
        if close:
            close()

    def request(self, client: Any, inp: Input) -> dict:
        """Send one request for ``inp`` and return its sample (keys of :attr:`metrics` and
        :attr:`rates`).

        Raises:
            RequestFailed: the answer is an error or malformed.
        """
        raise NotImplementedError

    def url(self, path: str) -> str:
        return f"{self.ctx.base_url.rstrip('/')}{path}"

    def run_endpoint(self) -> dict | None:
        """Hook for scenarios that measure the endpoint their own way: return the ``endpoint``
        block (``{"sequential": phase, "load": {name: phase}}``, phase blocks as
        :meth:`benchmarks.results.PhaseResult.report` makes them), or ``None`` (the default) for
        the standard flow of :meth:`run`."""
        return None

    def run(self, bare: BareLibrary | None = None) -> dict:
        """Warm-up, paired sequential phase and load phases (see the module docstring); with a
        :meth:`run_endpoint` hook, that hook and then ``repeats`` unpaired bare calls per input.

        Args:
            bare: the baseline process, or ``None`` to skip the baseline.

        Returns:
            ``{"endpoint": {"sequential": phase, "load": {name: phase}}, "baseline": block}``
            (phase blocks: :meth:`benchmarks.results.PhaseResult.report`; the baseline block is
            ``None`` without ``bare``).

        Raises:
            RequestFailed: every warm-up request failed.
        """
        from benchmarks.load import run_phase
        from benchmarks.results import PhaseResult, measure

        inputs = self.inputs()
        custom = self.run_endpoint()
        if custom is not None:
            return {"endpoint": custom, "baseline": self._unpaired_baseline(bare, inputs)}
        client = self.new_client()
        baseline: dict | None = None
        endpoint_samples: list[dict] = []
        bare_samples: list[dict] = []
        try:
            warm = [measure(self, client, inp) for inp in inputs]
            if not any(w["ok"] for w in warm):
                raise RequestFailed(f"every warm-up request failed: {warm[0].get('error')}")
            if bare is not None:
                baseline = bare.setup(self, inputs)  # loads the model, one warm-up call per input
            paired = baseline is not None and baseline.get("status") == "ok"
            for r in range(max(1, self.settings.repeats)):
                for i, inp in enumerate(inputs):
                    bare_first = paired and (r + i) % 2 == 1
                    if bare_first:
                        bare_samples.append(bare.call(i, inp.key))
                    endpoint_samples.append(measure(self, client, inp))
                    if paired and not bare_first:
                        bare_samples.append(bare.call(i, inp.key))
        finally:
            self.close_client(client)
            if bare is not None:
                bare.release()
        busy = sum(s.get("elapsed_s", 0.0) for s in endpoint_samples)
        sequential = PhaseResult(samples=endpoint_samples, wall_s=busy, users=1).report(self)
        if baseline is not None and baseline.get("status") == "ok":
            bare_busy = sum(s.get("elapsed_s", 0.0) for s in bare_samples)
            baseline["sequential"] = PhaseResult(samples=bare_samples, wall_s=bare_busy, users=1).report(self)
        load = {}
        for phase in self.load_phases():
            load[phase.name] = run_phase(
                self,
                phase.inputs,
                users=self.settings.concurrency,
                duration_s=phase.duration_s,
                max_requests=self.settings.max_requests,
            ).report(self)
        return {"endpoint": {"sequential": sequential, "load": load}, "baseline": baseline}

    def _unpaired_baseline(self, bare: BareLibrary | None, inputs: list[Input]) -> dict | None:
        from benchmarks.results import PhaseResult

        if bare is None:
            return None
        try:
            baseline = bare.setup(self, inputs)
            if baseline.get("status") != "ok":
                return baseline
            samples = [
                bare.call(i, inp.key) for _ in range(max(1, self.settings.repeats)) for i, inp in enumerate(inputs)
            ]
        finally:
            bare.release()
        busy = sum(s.get("elapsed_s", 0.0) for s in samples)
        baseline["sequential"] = PhaseResult(samples=samples, wall_s=busy, users=1).report(self)
        return baseline

    # ------------------------------------------------------------------ baseline side
    def baseline_model(self) -> dict | None:
        """The profile's model for :attr:`baseline_role` (``{"id", "backend", "source", "options"}``)."""
        if not self.baseline_role or not self.ctx.profile:
            return None
        return self.ctx.profile["by_role"].get(self.baseline_role)

    def baseline_unavailable(self) -> str | None:
        """Why the bare baseline cannot run in this environment, or ``None`` when it can.
        Checks without importing anything heavy."""
        if not self.baseline_role:
            return "this scenario has no bare-library baseline"
        model = self.baseline_model()
        if model is None:
            return f"the profile has no {self.baseline_role} model"
        if model["backend"] not in self.baseline_backends:
            return f"no bare-library baseline for backend {model['backend']!r}"
        for module in self.baseline_modules:
            if importlib.util.find_spec(module) is None:
                return f"module {module!r} is not importable"
        if model.get("source"):
            from models.sources import SourceNotFound, is_local, resolve_source

            try:
                resolve_source(model["source"])
            except SourceNotFound as exc:
                return str(exc)
            if not is_local(model["source"]):
                return f"weights {model['source']!r} are not on this machine"
        return None

    def baseline_threads(self) -> int | None:
        """Intra-op threads the bare library should use (``None``: its own default).

        ``"replica"`` mirrors the served model: Ray sets ``OMP_NUM_THREADS`` of a replica to
        ``max(1, floor(num_cpus))`` of its deployment (1 for every model of the embedded
        default), which torch and CTranslate2 follow; without this the bare library would use
        every core and the ratio would mostly measure the thread count.
        """
        mode = str(self.ctx.baseline_threads or "default")
        if mode == "default":
            return None
        if mode == "replica":
            model = self.baseline_model() or {}
            return max(1, int(model.get("num_cpus", 1.0) // 1))
        return max(1, int(mode))

    def baseline_setup(self) -> Any:
        """Load the bare model (in the baseline process) and return it."""
        raise NotImplementedError

    def baseline_call(self, model: Any, inp: Input) -> dict:
        """Run the bare library once on ``inp``; same sample keys as :meth:`request`."""
        raise NotImplementedError

    def baseline_info(self, model: Any) -> dict:
        """How the bare library was configured (recorded in the report)."""
        return {}


def resolve_model_path(model: dict) -> str:
    """Local path of a profile model's ``source``."""
    from models.sources import resolve_source

    return resolve_source(model["source"])

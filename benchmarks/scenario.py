"""The base types of the benchmarks: a :class:`Scenario` and what it is given (:class:`Settings`,
:class:`Context`, :class:`Input`, :class:`Phase`). A leaf: it imports nothing else of
``benchmarks``, so the results, the load runner, the baseline and the flow can all import it.

A scenario measures one route of the endpoint. The default flow (:func:`benchmarks.flow.run_scenario`)
is the same for every REST scenario:

1. warm-up: one request per input to the endpoint, and one bare-library call per input, neither
   recorded;
2. *sequential* (paired): ``repeats`` rounds over the inputs, one request at a time; each
   endpoint request is paired with one bare-library call on the same input in the baseline
   process, alternating which goes first, so both sides see the same background load on the
   machine — these pairs give the overhead ratio;
3. *load*: ``concurrency`` closed-loop users (each sends its next request as soon as its last
   one is answered) for ``duration_s`` seconds per load phase, through Locust; the baseline
   process has released the model and sits idle.

A request/response scenario implements :meth:`Scenario.inputs` and :meth:`Scenario.request`
(plus ``new_client``/``close_client`` for, e.g., one WebSocket session per user) and gets the whole
flow. One that measures its own way (e.g. ``admission``: session attempts against a capacity)
overrides :meth:`Scenario.run_endpoint` to return the endpoint block itself, and the baseline then
runs ``repeats`` calls per input after it, unpaired. One that measures more after the standard
flow (e.g. ``realtime``: two pipelines compared) returns its extra report blocks from
:meth:`Scenario.extra_blocks`. Without a baseline (:attr:`Scenario.baseline_role` ``None`` and no
:meth:`Scenario.baseline_unavailable` override) the overhead ratio is reported as ``null`` with the
reason. Registering a scenario: :mod:`benchmarks.scenarios`.

Scenario modules import only the standard library, this module and :mod:`benchmarks.results` at
module level: the load process imports Locust (which monkey-patches the standard library with
gevent) before any HTTP client, and the baseline process imports the heavy model libraries only
inside :meth:`Scenario.baseline_setup`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from models.sources import SourceNotFound, is_local, resolve_source


def cascade_id(ctx: Context) -> str:
    """The id that names the whole stack (the profile's ``cascade.id``; realtime sessions)."""
    return ((ctx.profile or {}).get("cascade")) or "naia-0.9-omni-24g"


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
        admission_clients: clients of the ``admission`` scenario (``None``: its default).
        admission_hold_s: seconds each admitted ``admission`` client holds its session
            (``None``: its default).
    """

    duration_s: float = 30.0
    concurrency: int = 4
    repeats: int = 5
    max_requests: int = 1000
    timeout_s: float = 120.0
    smoke: bool = False
    admission_clients: int | None = None
    admission_hold_s: float | None = None


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
        the standard flow (:func:`benchmarks.flow.run_scenario`)."""
        return None

    def extra_blocks(self) -> dict:
        """Hook run after the standard flow: more report blocks of this scenario, by key
        (default none)."""
        return {}

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
    return resolve_source(model["source"])

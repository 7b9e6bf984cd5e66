"""OpenTelemetry traces across the deployments (``deployments/tracing/``).

The end-to-end tests run a real OTLP/HTTP receiver in the test process (a stdlib HTTP server
accepting ``POST /v1/traces`` and decoding ``ExportTraceServiceRequest`` with
``opentelemetry-proto``; no collector can be installed here), point a small application of their
own at it through the standard ``OTEL_*`` variables only (the scripted chat model and the real
STT and VAD; the app builder forwards the variables to the replicas), and check that a chat completion
sent with the official OpenAI SDK and a client-chosen ``traceparent`` yields the ingress's SERVER
span (child of the client's span), its CLIENT span and the LLM replica's own span (exported by
another process) in one trace, with the GenAI attributes; then a transcription, a realtime
text turn (its own trace, linked to the session's connect-and-admission trace) and a realtime
voice turn (VAD, STT and LLM calls, speculative ones included, in the turn's one trace).

The first tests need no Ray: the switch (which variables turn traces on), the env forwarding, the
method wrappers (every traced method of every model server is wrapped; the carrier is popped when
traces are off) and the spans an in-memory exporter receives in-process.
"""

from __future__ import annotations

import asyncio
import gzip
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from openai import OpenAI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from deployments.tracing import calls, operations, provider, replica, scopes
from tests.conftest import SHARED, scripted_args
from tests.realtime_client import RealtimeClient, load_pcm16, silence

APP, PREFIX = "tracing", "/tracing-app"
SERVICE = "omniserve-tracing-test"
#: proto ``Span.SpanKind`` values
INTERNAL, SERVER, CLIENT = 1, 2, 3


# ---------------------------------------------------------------------------------- without Ray
@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "x"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ["otlp"]),
    ],
)
def test_only_an_exporter_variable_turns_traces_on(env, expected):
    assert provider.exporter_names(env) == expected
    assert provider.configured(env) is bool(expected)


def test_otel_variables_are_forwarded_to_replicas_only_when_set():
    opts = {"name": "LLMServer", "ray_actor_options": {"num_cpus": 0}}
    assert provider.with_otel_env(opts, {"PATH": "/bin"}) is opts
    own = {"ray_actor_options": {"runtime_env": {"env_vars": {"OTEL_SERVICE_NAME": "mine", "A": "1"}}}}
    out = provider.with_otel_env(own, {"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert out["ray_actor_options"]["runtime_env"]["env_vars"] == {
        "OTEL_SERVICE_NAME": "mine",  # the deployment's own setting wins
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
        "A": "1",
    }
    assert own["ray_actor_options"]["runtime_env"]["env_vars"] == {"OTEL_SERVICE_NAME": "mine", "A": "1"}


def test_every_traced_operation_is_wrapped_on_the_model_servers():
    from deployments.app import SERVER_CLASSES

    seen = set()
    for deployment in SERVER_CLASSES.values():
        cls = deployment.func_or_class
        for name in operations.OPERATIONS:
            method = getattr(cls, name, None)
            if method is not None:
                seen.add(name)
                assert getattr(method, "__omniserve_traced__", None), f"{cls.__name__}.{name} is not traced()"
    assert seen == set(operations.OPERATIONS)


class _Server:
    """A model server's shape, as :func:`replica.traced` reads it."""

    model_id = "m1"
    config = SimpleNamespace(deployment_name="LLMServer", backend="scripted")

    @replica.traced
    async def chat(self, messages, params, tools=None):
        for _ in range(3):
            yield {"text": "a "}
        yield {"text": "", "finish_reason": "stop", "prompt_tokens": 5, "completion_tokens": 3}

    @replica.traced
    async def embed(self, texts):
        return {"prompt_tokens": 4}


class _Stream:
    """A handle stream's shape: ``__anext__`` and ``cancel()``."""

    def __init__(self, gen):
        self.gen, self.cancelled = gen, False

    async def __anext__(self):
        return await self.gen.__anext__()

    def cancel(self):
        self.cancelled = True


def test_traces_off_cost_one_check_and_the_carrier_is_still_popped():
    assert not provider.active()
    model = SimpleNamespace(id="m1", deployment_name="LLMServer")
    assert calls.start_call(model, "chat", (), {}) is None
    assert scopes.start_turn("text", "sess", "omni") is None
    assert scopes.within(None) is scopes.fallback(None)  # the shared no-op

    async def run():
        carrier = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}
        gen = await _Server().chat([], {}, **{calls.CARRIER_KWARG: carrier})
        return [i async for i in gen], await _Server().embed(["x"], **{calls.CARRIER_KWARG: {}})

    items, result = asyncio.run(run())
    assert len(items) == 4 and result == {"prompt_tokens": 4}


@pytest.fixture
def memory_spans(monkeypatch):
    """Traces on in this process, into an in-memory exporter (the global provider untouched)."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(provider, "_tracer", tracer_provider.get_tracer("test"))
    monkeypatch.setattr(provider, "_enabled", True)
    yield exporter
    tracer_provider.shutdown()


def test_client_and_replica_spans_nest_in_a_turn(memory_spans):
    model = SimpleNamespace(id="m1", deployment_name="LLMServer")

    async def run():
        server = _Server()
        turn = scopes.start_turn("text", "sess_1", "omni")
        assert calls.start_call(model, "chat", (), {}) is None  # no current span: a background call
        with scopes.within(turn):
            call = calls.start_call(model, "chat", ([], {"max_tokens": 7, "temperature": None}), {})
            gen = await server.chat([], {"max_tokens": 7}, **call.with_carrier({}))
            stream = calls.TracedStream(_Stream(gen), call)
            assert len([i async for i in stream]) == 4
            stream.cancel()  # after the end: the span stays a completed one
            assert calls.start_call(model, "info", (), {}) is None  # not an operation: no span
            with scopes.fallback(None), scopes.fallback(scopes.start_turn("voice", "s", "m")):
                pass  # a scope is current: fallback attaches nothing
            scopes.annotate_response({"id": "resp_1", "status": "completed", "usage": {"output_tokens": 3}})
        turn.end("responded")

    asyncio.run(run())
    spans = {(s.name, s.kind.name): s for s in memory_spans.get_finished_spans()}
    root, client, served = spans["realtime.turn", "SERVER"], spans["chat m1", "CLIENT"], spans["chat m1", "SERVER"]
    assert root.parent is None and client.parent.span_id == root.context.span_id
    assert served.parent.span_id == client.context.span_id
    assert {s.context.trace_id for s in (root, client, served)} == {root.context.trace_id}
    for span in (client, served):
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.request.max_tokens"] == 7 and "gen_ai.request.temperature" not in span.attributes
        assert span.attributes["gen_ai.usage.input_tokens"] == 5 and span.attributes["gen_ai.usage.output_tokens"] == 3
        assert span.attributes["gen_ai.response.model"] == "m1"
        assert "omniserve.cancelled" not in span.attributes
    assert root.attributes["omniserve.realtime.response.status"] == "completed"
    assert root.attributes["gen_ai.conversation.id"] == "sess_1" and root.attributes["omniserve.outcome"] == "responded"


def test_a_server_class_pickled_by_value_reads_the_replicas_tracing_state(monkeypatch):
    """Serve ships a deployment class by value: its traced methods must see the state ``setup()``
    gives the replica, not the one of the process that pickled them (traces off there)."""
    import cloudpickle

    def make_class():  # a local class: cloudpickle pickles it, and its methods, by value
        class Server(_Server):
            @replica.traced
            async def embed(self, texts):
                return {"prompt_tokens": 2}

        return Server

    shipped = cloudpickle.dumps(make_class())  # traces off here, as in the driver
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(provider, "_tracer", tracer_provider.get_tracer("test"))
    monkeypatch.setattr(provider, "_enabled", True)  # the replica's setup()
    server = cloudpickle.loads(shipped)()
    carrier = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}
    assert asyncio.run(server.embed(["x"], **{calls.CARRIER_KWARG: carrier})) == {"prompt_tokens": 2}
    (span,) = exporter.get_finished_spans()
    assert span.name == "embeddings m1" and format(span.parent.span_id, "016x") == "2" * 16


def test_a_cancelled_stream_ends_its_span_marked(memory_spans):
    model = SimpleNamespace(id="m1", deployment_name="LLMServer")

    async def run():
        turn = scopes.start_turn("text", "sess_1", "omni")
        with scopes.within(turn):
            call = calls.start_call(model, "chat", ([], {}), {})
            gen = await _Server().chat([], {}, **call.with_carrier({}))
            stream = calls.TracedStream(_Stream(gen), call)
            await stream.__anext__()
            stream.cancel()
            await gen.aclose()  # the replica's generator is closed when the caller cancels
        turn.end()

    asyncio.run(run())
    for span in memory_spans.get_finished_spans():
        if span.name == "chat m1":
            assert span.attributes.get("omniserve.cancelled") is True, span.kind


# ---------------------------------------------------------------------------------- end to end
def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class OTLPReceiver:
    """An OTLP/HTTP traces endpoint: ``POST /v1/traces`` with a protobuf
    ``ExportTraceServiceRequest`` (gzip or not); every span is kept as a dict with its resource's
    attributes."""

    def __init__(self):
        self.spans: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver.add(ExportTraceServiceRequest.FromString(body))
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            for rs in request.resource_spans:
                resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append(
                            {
                                "trace_id": s.trace_id.hex(),
                                "span_id": s.span_id.hex(),
                                "parent": s.parent_span_id.hex() or None,
                                "name": s.name,
                                "kind": s.kind,
                                "attributes": {a.key: _value(a.value) for a in s.attributes},
                                "links": [(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                                "resource": resource,
                            }
                        )

    def wait(self, predicate, timeout_s: float = 60.0) -> list[dict]:
        """The spans received, once ``predicate(spans)`` holds (or at the timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                spans = list(self.spans)
            if predicate(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)

    def close(self) -> None:
        self.httpd.shutdown()


def _one(spans: list[dict], **match) -> dict:
    found = [s for s in spans if all(s.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s["name"], s["kind"], s["resource"].get("omniserve.deployment")) for s in spans])
    return found[0]


def _holds(trace_id: str, *wanted: tuple[str, int, str]):
    """Predicate for ``OTLPReceiver.wait``: the trace holds a span of every (name, kind, deployment) in
    ``wanted``. Each process (ingress, every replica) exports on its own schedule, so a test waits for
    every span it asserts on, never for one process's as a sign of the others'."""

    def complete(spans):
        have = {(s["name"], s["kind"], _deployment(s)) for s in spans if s["trace_id"] == trace_id}
        return all(w in have for w in wanted)

    return complete


def _deployment(span: dict) -> str | None:
    return span["resource"].get("omniserve.deployment")


def _is_descendant(span: dict, ancestor: dict, spans: list[dict]) -> bool:
    by_id = {s["span_id"]: s for s in spans}
    parent = span["parent"]
    while parent is not None:
        if parent == ancestor["span_id"]:
            return True
        parent = by_id[parent]["parent"] if parent in by_id else None
    return False


@pytest.fixture(scope="module")
def receiver():
    r = OTLPReceiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def traced_app(ray_cluster, receiver):
    """The scripted chat model and the real STT and VAD, with traces sent to ``receiver``: configured by
    ``OTEL_*`` variables alone, set while the app is built (the builder forwards them)."""
    from ray import serve

    from deployments.app import build_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{receiver.url}/v1/traces")
        mp.setenv("OTEL_SERVICE_NAME", SERVICE)
        mp.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # ms: spans leave quickly
        app = build_app(scripted_args({"default": "Paris is the capital."}, ("stt", "vad")))
    serve.run(app, name=APP, route_prefix=PREFIX)
    yield f"{ray_cluster['base_url']}{PREFIX}"
    serve.delete(APP)


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def _client(base: str, traceparent: str) -> OpenAI:
    return OpenAI(
        base_url=f"{base}/v1",
        api_key="naia",
        max_retries=0,
        timeout=120,
        default_headers={"traceparent": traceparent},
    )


def test_a_chat_completion_is_one_trace_from_the_client_to_the_llm_replica(traced_app, receiver):
    trace_id, client_span_id, traceparent = _traceparent()
    reply = _client(traced_app, traceparent).chat.completions.create(
        model="scripted-chat", messages=[{"role": "user", "content": "Capital of France?"}], max_tokens=32
    )
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0

    complete = _holds(
        trace_id,
        ("POST /v1/chat/completions", SERVER, "Ingress"),
        ("chat scripted-chat", CLIENT, "Ingress"),
        ("chat scripted-chat", SERVER, "LLMServer"),
    )
    spans = [s for s in receiver.wait(complete) if s["trace_id"] == trace_id]
    server = _one(spans, kind=SERVER, name="POST /v1/chat/completions")
    client = _one(spans, kind=CLIENT, name="chat scripted-chat")
    llm = _one(spans, kind=SERVER, name="chat scripted-chat")
    # the ingress's server span continues the client's traceparent
    assert server["parent"] == client_span_id and _deployment(server) == "Ingress"
    a = server["attributes"]
    assert a["http.request.method"] == "POST" and a["http.route"] == "/v1/chat/completions"
    assert a["http.response.status_code"] == 200 and a["url.path"].endswith("/v1/chat/completions")
    assert a["gen_ai.request.model"] == "scripted-chat"
    # the ingress's client span around the handle call, then the LLM replica's own span
    assert client["parent"] == server["span_id"] and _deployment(client) == "Ingress"
    assert llm["parent"] == client["span_id"] and _is_descendant(llm, server, spans)
    assert _deployment(llm) == "LLMServer"
    assert llm["resource"]["service.instance.id"] != server["resource"]["service.instance.id"]  # another replica
    assert {s["resource"]["service.name"] for s in spans} == {SERVICE}
    for span in (client, llm):
        g = span["attributes"]
        assert g["gen_ai.operation.name"] == "chat" and g["gen_ai.request.model"] == "scripted-chat"
        assert g["gen_ai.response.model"] == "scripted-chat" and g["gen_ai.request.max_tokens"] == 32
        assert g["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
        assert g["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
        assert g["gen_ai.response.finish_reasons"] == ["stop"]
        assert g["rpc.system"] == "ray_serve" and g["rpc.service"] == "LLMServer" and g["rpc.method"] == "chat"
    assert llm["attributes"]["omniserve.backend"] == "scripted"


def test_a_transcription_reaches_the_stt_replica_in_the_same_trace(traced_app, receiver):
    trace_id, client_span_id, traceparent = _traceparent()
    clip = (SHARED / "audio" / "basic_ref_en.wav").read_bytes()
    text = _client(traced_app, traceparent).audio.transcriptions.create(model="whisper-1", file=("a.wav", clip)).text
    assert text

    # each process exports its own spans: wait for the ingress's and the replica's alike
    complete = _holds(
        trace_id,
        ("POST /v1/audio/transcriptions", SERVER, "Ingress"),
        ("transcription whisper-tiny.en", SERVER, "STTServer"),
    )
    spans = [s for s in receiver.wait(complete) if s["trace_id"] == trace_id]
    server = _one(spans, kind=SERVER, name="POST /v1/audio/transcriptions")
    stt = _one(spans, kind=SERVER, name="transcription whisper-tiny.en")
    assert server["parent"] == client_span_id and _is_descendant(stt, server, spans)
    assert stt["attributes"]["gen_ai.operation.name"] == "transcription"
    assert stt["attributes"]["omniserve.audio.input_seconds"] > 4.0  # the 5.3 s clip
    assert stt["attributes"]["omniserve.backend"] == "faster-whisper"


def test_a_realtime_text_turn_is_a_trace_of_its_own(traced_app, receiver):
    _, _, traceparent = _traceparent()
    c = RealtimeClient(
        traced_app.replace("http://", "ws://") + "/v1/realtime", additional_headers={"traceparent": traceparent}
    )
    try:
        session_id = c.wait_for("session.created", 60)[1]["session"]["id"]
        c.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Capital?"}]},
            }
        )
        c.send({"type": "response.create"})
        done = c.wait_for("response.done", 120)[1]["response"]
        assert done["status"] == "completed"
    finally:
        c.close()

    received = receiver.wait(_turn_answered(session_id))
    turn = _turn_of(received, session_id)
    spans = [s for s in received if s["trace_id"] == turn["trace_id"]]
    assert turn["parent"] is None and turn["kind"] == SERVER
    t = turn["attributes"]
    assert t["gen_ai.conversation.id"] == session_id and t["omniserve.realtime.turn.kind"] == "text"
    assert t["omniserve.realtime.response.status"] == "completed" and t["omniserve.outcome"] == "responded"
    assert t["gen_ai.usage.output_tokens"] == done["usage"]["output_tokens"] > 0
    client = _one(spans, kind=CLIENT, name="chat scripted-chat")
    llm = _one(spans, kind=SERVER, name="chat scripted-chat")
    assert client["parent"] == turn["span_id"] and llm["parent"] == client["span_id"]
    # the turn links to the session's connect trace, which holds the admission call
    (link,) = turn["links"]
    connect = _one(received, name="realtime.connect", span_id=link[1])
    assert link[0] == connect["trace_id"] and connect["parent"] == traceparent.split("-")[2]
    assert connect["attributes"]["omniserve.outcome"] == "created"
    assert connect["attributes"]["gen_ai.conversation.id"] == session_id
    admit = _one(received, name="admission.admit", parent=connect["span_id"])
    assert admit["kind"] == CLIENT and admit["attributes"]["omniserve.admission.outcome"] == "created"


def test_a_realtime_voice_turn_holds_its_vad_stt_and_llm_calls(traced_app, receiver):
    c = RealtimeClient(traced_app.replace("http://", "ws://") + "/v1/realtime")
    try:
        session_id = c.wait_for("session.created", 60)[1]["session"]["id"]
        # the clip pauses 0.8 s between its two phrases: one turn needs a longer silence window
        c.send(
            {
                "type": "session.update",
                "session": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 1000}},
            }
        )
        c.wait_for("session.updated", 10)
        speech = load_pcm16(SHARED / "audio" / "basic_ref_en.wav")
        c.stream_audio(silence(0.3) + speech + silence(1.5), realtime=False)
        done = c.wait_for("response.done", 90)[1]["response"]
        assert done["status"] == "completed"
    finally:
        c.close()

    received = receiver.wait(
        _turn_answered(
            session_id,
            ("voice_activity silero-vad", SERVER, "VADServer"),
            ("transcription whisper-tiny.en", SERVER, "STTServer"),
        )
    )
    turn = _turn_of(received, session_id)
    spans = [s for s in received if s["trace_id"] == turn["trace_id"]]
    assert turn["parent"] is None and turn["attributes"]["omniserve.realtime.turn.kind"] == "voice"
    assert turn["attributes"]["omniserve.outcome"] == "responded"
    assert float(turn["attributes"]["omniserve.realtime.stt_ms"]) > 0  # the voice turn's breakdown
    by_name = {}
    for span in spans:
        by_name.setdefault((span["name"], span["kind"], _deployment(span)), []).append(span)
    # speech scored while the user spoke, the turn's transcription, then the reply
    assert by_name[("voice_activity silero-vad", CLIENT, "Ingress")]
    assert by_name[("voice_activity silero-vad", SERVER, "VADServer")]
    assert by_name[("transcription whisper-tiny.en", SERVER, "STTServer")]
    (llm,) = by_name[("chat scripted-chat", SERVER, "LLMServer")]
    assert _is_descendant(llm, turn, spans) and llm["attributes"]["gen_ai.usage.output_tokens"] > 0
    assert all(_is_descendant(s, turn, spans) for s in spans if s is not turn)


def _turn_answered(session_id: str, *also: tuple[str, int, str]):
    """Predicate: the session's turn trace holds the LLM replica's span and a span of every (name, kind,
    deployment) in ``also`` (see :func:`_holds`)."""

    def complete(spans):
        traces = {
            s["trace_id"]
            for s in spans
            if s["name"] == "realtime.turn" and s["attributes"].get("gen_ai.conversation.id") == session_id
        }
        return any(_holds(t, ("chat scripted-chat", SERVER, "LLMServer"), *also)(spans) for t in traces)

    return complete


def _turn_of(spans: list[dict], session_id: str) -> dict:
    """The session's one ``realtime.turn`` span."""
    turns = [
        s for s in spans if s["name"] == "realtime.turn" and s["attributes"].get("gen_ai.conversation.id") == session_id
    ]
    assert len(turns) == 1, turns
    return turns[0]

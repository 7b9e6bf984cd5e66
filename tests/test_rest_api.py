"""The OpenAI REST surface on the embedded default, through the official OpenAI SDK and raw HTTP."""

from __future__ import annotations

import base64
import json
import time

import httpx
import numpy as np
import openai
import pytest

from tests.oai_schema import validate


# ------------------------------------------------------------------------------------- models
def test_models_list_and_retrieve(client):
    listed = client.models.list()
    ids = [m.id for m in listed.data]
    assert ids[0] == "naia-0.9-omni-24g"
    assert "smollm2-135m-instruct" in ids and "all-minilm-l6-v2" in ids
    validate(listed.model_dump(), "ListModelsResponse")
    for name in ("smollm2-135m-instruct", "gpt-4o-mini", "naia-0.9-omni-24g"):
        m = client.models.retrieve(name)
        assert m.id == name and m.object == "model"
        validate(m.model_dump(), "Model")


def test_unknown_model_is_404_envelope(client, http):
    with pytest.raises(openai.NotFoundError) as exc:
        client.models.retrieve("no-such-model")
    assert exc.value.status_code == 404
    body = http.get("/v1/models/no-such-model").json()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "model_not_found"
    assert body["error"]["param"] == "model"
    validate(body, "ErrorResponse")


# --------------------------------------------------------------------------------------- chat
def test_chat_capital_of_france(client):
    resp = client.chat.completions.create(
        model="naia-0.9-omni-24g",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=40,
    )
    validate(resp.model_dump(exclude_unset=True), "CreateChatCompletionResponse")
    answer = resp.choices[0].message.content
    assert "Paris" in answer
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens > 5 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_chat_alias_and_max_tokens_length(client):
    resp = client.chat.completions.create(
        model="gpt-4o-mini",  # an OpenAI id clients hard-code, aliased to the served LLM
        messages=[{"role": "user", "content": "Write a long poem about the sea."}],
        max_completion_tokens=5,
        temperature=0,
    )
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 5


def test_unset_sampling_follows_the_model_generation_config(client):
    """SmolLM2's generation config does not sample: a request that leaves temperature and top_p
    unset is decoded greedily (the reply of temperature 0, every time) instead of sampled at
    OpenAI's temperature 1, at which this small model babbles."""
    ask = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "Tell me a short story."}], max_tokens=24)
    unset = [client.chat.completions.create(**ask).choices[0].message.content for _ in range(2)]
    greedy = client.chat.completions.create(**ask, temperature=0).choices[0].message.content
    assert unset[0] == unset[1] == greedy and greedy
    sampled = {
        client.chat.completions.create(**ask, temperature=1.5, seed=s).choices[0].message.content for s in (1, 2)
    }
    assert len(sampled) == 2  # asked for, sampling still happens


def test_chat_seed_is_reproducible_and_stop_cuts(client):
    kwargs = dict(
        model="naia-0.9-omni-24g",
        messages=[{"role": "user", "content": "Tell me a short story."}],
        temperature=1.0,
        top_p=0.9,
        seed=1234,
        max_tokens=16,
    )
    a = client.chat.completions.create(**kwargs).choices[0].message.content
    b = client.chat.completions.create(**kwargs).choices[0].message.content
    assert a == b and a
    counted = client.chat.completions.create(
        model="naia-0.9-omni-24g",
        temperature=0,
        max_tokens=60,
        stop=["5"],
        messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
    ).choices[0]
    assert "5" not in counted.message.content and "4" in counted.message.content
    assert counted.finish_reason == "stop"


def test_chat_stream_chunks_and_usage(client):
    stream = client.chat.completions.create(
        model="naia-0.9-omni-24g",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    for c in chunks:
        validate(c.model_dump(exclude_unset=True), "CreateChatCompletionStreamResponse")
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) >= 3
    assert "Paris" in "".join(c.choices[0].delta.content for c in content)
    finished = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finished) == 1 and finished[0].choices[0].finish_reason == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.completion_tokens >= len(content)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_chat_stream_raw_sse_ends_with_done(http):
    with http.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "naia-0.9-omni-24g",
            "stream": True,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "Say hello."}],
        },
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        data = [line[len("data: ") :] for line in r.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert all(json.loads(d)["object"] == "chat.completion.chunk" for d in data[:-1])


def _llm_handle():
    from ray import serve

    return serve.get_deployment_handle("LLMServer", app_name="omniserve")


def test_client_disconnect_cancels_generation(omni):
    """A streaming client that goes away stops the decode loop on the LLM replica."""
    handle = _llm_handle()
    assert handle.info.remote().result()["active_generations"] == 0
    with httpx.Client(base_url=omni["base_url"], timeout=60) as h:
        with h.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "naia-0.9-omni-24g",
                "stream": True,
                "max_tokens": 2000,
                "temperature": 0.8,
                "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
            },
        ) as r:
            lines = r.iter_lines()
            got = 0
            for line in lines:
                if line.startswith("data: "):
                    got += 1
                if got >= 4:
                    break
            assert handle.info.remote().result()["active_generations"] == 1
    # 2000 tokens would take minutes at this model's speed: the loop must stop within seconds
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if handle.info.remote().result()["active_generations"] == 0:
            break
        time.sleep(0.25)
    assert handle.info.remote().result()["active_generations"] == 0


# --------------------------------------------------------------------------------- embeddings
def _cos(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_embeddings_semantics(client):
    resp = client.embeddings.create(
        model="naia-0.9-omni-24g", input=["a cat sits", "a kitten is sitting", "the stock market fell sharply"]
    )
    validate(resp.model_dump(exclude_unset=True), "CreateEmbeddingResponse")
    vecs = [d.embedding for d in resp.data]
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert all(len(v) == 384 for v in vecs)
    assert _cos(vecs[0], vecs[1]) > _cos(vecs[0], vecs[2]) + 0.3
    assert resp.usage.prompt_tokens > 0


def test_embeddings_single_string_and_base64(http, client):
    plain = http.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hello world"}).json()
    b64 = http.post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hello world", "encoding_format": "base64"}
    ).json()
    decoded = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
    assert decoded.shape == (384,)
    np.testing.assert_allclose(decoded, plain["data"][0]["embedding"], rtol=1e-6)
    # the SDK asks for base64 by default and decodes it itself
    sdk = client.embeddings.create(model="text-embedding-3-small", input="hello world")
    np.testing.assert_allclose(sdk.data[0].embedding, plain["data"][0]["embedding"], rtol=1e-6)


# ------------------------------------------------------------------------------------- errors
def _envelope(r: httpx.Response, status: int, param: str | None = "unset") -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    validate(body, "ErrorResponse")
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param != "unset":
        assert err["param"] == param
    return err


CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "naia-0.9-omni-24g"}, "messages"),
        ({"model": "naia-0.9-omni-24g", "messages": []}, "messages"),
        ({"model": "naia-0.9-omni-24g", "messages": HELLO, "n": 2}, "n"),
        ({"model": "naia-0.9-omni-24g", "messages": HELLO, "temperature": 3}, "temperature"),
        ({"model": "naia-0.9-omni-24g", "messages": HELLO, "top_p": 0}, "top_p"),
        ({"model": "naia-0.9-omni-24g", "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        # one request must not hold a shared replica for minutes: above server.max_completion_tokens
        ({"model": "naia-0.9-omni-24g", "messages": HELLO, "max_tokens": 100_000_000}, "max_tokens"),
        ({"model": "gpt-4o-mini", "messages": HELLO, "max_completion_tokens": 100_000_000}, "max_completion_tokens"),
        ({"model": "naia-0.9-omni-24g", "messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": "naia-0.9-omni-24g", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        (
            {
                "model": "naia-0.9-omni-24g",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}
                ],
            },
            "messages.0.content",
        ),
        ({"model": "all-minilm-l6-v2", "messages": HELLO}, "model"),
    ],
)
def test_chat_bad_fields_are_400(http, body, param):
    err = _envelope(http.post(CHAT, json=body), 400, param)
    assert err["type"] == "invalid_request_error"


def test_chat_unknown_model_404(http):
    err = _envelope(http.post(CHAT, json={"model": "gpt-9", "messages": HELLO}), 404, "model")
    assert err["code"] == "model_not_found"


def test_bad_json_400_and_wrong_content_type_415(http):
    _envelope(http.post(CHAT, content=b"{not json", headers={"content-type": "application/json"}), 400)
    err = _envelope(
        http.post(CHAT, content=b"model=x", headers={"content-type": "application/x-www-form-urlencoded"}), 415
    )
    assert "application/json" in err["message"]
    _envelope(http.post("/v1/embeddings", content=b"hello", headers={"content-type": "text/plain"}), 415)


def test_body_over_limit_413(http):
    big = {"model": "naia-0.9-omni-24g", "messages": [{"role": "user", "content": "x" * 27_000_000}]}
    err = _envelope(http.post(CHAT, json=big), 413)
    assert err["type"] == "request_too_large"


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "all-minilm-l6-v2", "input": ""}, "input"),
        ({"model": "all-minilm-l6-v2", "input": []}, "input"),
        ({"model": "all-minilm-l6-v2", "input": [1, 2, 3]}, "input"),
        ({"model": "all-minilm-l6-v2", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "smollm2-135m-instruct", "input": "x"}, "model"),
        ({"input": "x"}, "model"),
    ],
)
def test_embeddings_bad_fields_are_400(http, body, param):
    _envelope(http.post("/v1/embeddings", json=body), 400, param)


def test_completion_that_cannot_fit_the_context_window_is_400(http):
    """Within the server's bound, but the messages leave fewer tokens than asked for in
    SmolLM2's 8192-token window: refused before any token is generated, as OpenAI does."""
    long = [{"role": "user", "content": "word " * 6000}]
    err = _envelope(http.post(CHAT, json={"model": "gpt-4o-mini", "messages": long, "max_tokens": 4000}), 400)
    assert err["param"] == "max_tokens" and err["type"] == "invalid_request_error"
    assert "context window is 8192 tokens" in err["message"], err
    # left to the server, the same messages get a completion that fits
    ok = http.post(CHAT, json={"model": "gpt-4o-mini", "messages": long, "max_tokens": 3, "temperature": 0})
    assert ok.status_code == 200, ok.text


def test_embeddings_input_over_the_model_limit_is_400(http, client):
    """MiniLM reads at most 256 tokens: a longer input is refused, naming the limit, instead of
    being silently truncated."""
    err = _envelope(http.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": "word " * 100_000}), 400)
    assert err["param"] == "input" and "256 tokens" in err["message"], err
    many = ["a short one", "word " * 300]
    err = _envelope(http.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": many}), 400)
    assert "input[1]" in err["message"] and "256 tokens" in err["message"], err
    assert len(client.embeddings.create(model="all-minilm-l6-v2", input="word " * 200).data[0].embedding) == 384


def test_errors_leave_server_healthy(client, http):
    for _ in range(3):
        http.post(CHAT, content=b"\x00\xff", headers={"content-type": "application/json"})
    assert client.embeddings.create(model="all-minilm-l6-v2", input="still fine").data[0].embedding


def test_request_id_echoed_or_generated(http):
    r = http.get("/v1/models", headers={"x-request-id": "demo-123"})
    assert r.headers["x-request-id"] == "demo-123"
    generated = http.get("/v1/models").headers["x-request-id"]
    assert len(generated) >= 16
    assert (
        http.post(CHAT, json={"model": "gpt-9", "messages": HELLO}, headers={"x-request-id": "err-1"}).headers[
            "x-request-id"
        ]
        == "err-1"
    )


def test_cors_off_by_default(http):
    r = http.options(CHAT, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers


# ------------------------------------------------------------------------------------- probes
def test_readyz_was_503_before_ready_then_200(omni, http):
    statuses = [s for s, _ in omni["readyz_seen"]]
    assert 503 in statuses, statuses
    first_503 = next(body for s, body in omni["readyz_seen"] if s == 503)
    assert first_503["ready"] is False and first_503["checks"]
    assert any(not c["ok"] for c in first_503["checks"].values())
    assert statuses.index(503) < statuses.index(200)
    r = http.get("/readyz")
    assert r.status_code == 200
    checks = r.json()["checks"]
    assert {"lifecycle", "deployment:LLMServer", "deployment:EmbeddingServer"} <= set(checks)
    assert all(c["ok"] for c in checks.values())
    assert http.get("/v1/ready").status_code == 200


def test_health_shape_and_liveness(http):
    health = http.get("/health").json()
    assert health["ready"] is True
    assert health["services"]["llm"] is True and health["services"]["embeddings"] is True
    assert isinstance(health["vad"], bool)
    assert http.get("/livez").json()["status"] == "alive"
    assert http.get("/v1/live").status_code == 200


def test_openapi_and_docs(http):
    spec = http.get("/openapi.json").json()
    paths = spec["paths"]
    assert "/v1/chat/completions" in paths and "/v1/embeddings" in paths
    assert http.get("/docs").status_code == 200
    # every error status a route returns is documented with the error envelope; no 422
    chat = paths["/v1/chat/completions"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "415", "503"} <= set(chat) and "422" not in chat
    assert chat["400"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ErrorResponse"
    assert "text/event-stream" in chat["200"]["content"]
    # speech answers audio (or SSE), not JSON
    speech = paths["/v1/audio/speech"]["post"]["responses"]["200"]["content"]
    assert {"audio/mpeg", "audio/wav", "audio/pcm", "text/event-stream"} <= set(
        speech
    ) and "application/json" not in speech
    assert "multipart/form-data" in paths["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
    # the realtime WebSocket is described, and a plain GET there is told to upgrade
    realtime = paths["/v1/realtime"]["get"]
    assert "101" in realtime["responses"] and "README" in realtime["description"]
    r = http.get("/v1/realtime")
    assert r.status_code == 426 and r.json()["error"]["code"] == "upgrade_required"


def test_concurrent_embeddings_all_succeed(omni):
    """Concurrent requests to one embedding replica (its tokenizer is shared) all succeed."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [[f"sentence {i} number {j} " * (1 + (i + j) % 7) for j in range(8)] for i in range(24)]

    def one(batch):
        with httpx.Client(base_url=omni["base_url"], timeout=60) as h:
            return h.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": batch}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, texts)) == [200] * len(texts)

"""The official `openai` Python client, unchanged, against the real memproxy binary and the fake upstream."""

from __future__ import annotations

import json
import urllib.request

import openai
import pytest
from openai import OpenAI

from conftest import unique


def client_for(proxy, session: str | None = None, **kwargs) -> OpenAI:
    headers = {"X-Session-Id": session} if session else None
    return OpenAI(base_url=proxy.base_url, api_key="sk-test-key", default_headers=headers, timeout=30, **kwargs)


def user_msg(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_chat_completion_is_answered_and_stored(proxy):
    session = unique("chat")
    text = f"My cat is called Tom {session}"
    raw = client_for(proxy, session).chat.completions.with_raw_response.create(
        model="gpt-test", messages=user_msg(text)
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == f"echo: {text}"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens > 0
    assert raw.headers["x-memory-session"] == session
    exchange = proxy.wait_stored(raw.headers["x-memproxy-request-id"])
    assert proxy.memories(session) == [
        ("user", text, "{}", exchange),
        ("assistant", f"echo: {text}", "{}", exchange),
    ]


@pytest.mark.parametrize("include_usage", [False, True])
def test_streaming(proxy, include_usage):
    session = unique("stream")
    text = f"Tell me about the Andromeda galaxy please {session}"
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    raw = client_for(proxy, session).chat.completions.with_raw_response.create(
        model="gpt-test", messages=user_msg(text), stream=True, **extra
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == f"echo: {text}"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3, "the reply was not streamed"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    usage_chunks = [c for c in chunks if c.usage is not None]
    if include_usage:
        assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
        assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    else:
        assert usage_chunks == [], "a usage chunk the client did not ask for leaked"
    exchange = proxy.wait_stored(raw.headers["x-memproxy-request-id"])
    assert [(r, c) for r, c, _, e in proxy.memories(session) if e == exchange] == [
        ("user", text),
        ("assistant", f"echo: {text}"),
    ]


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_round_trip(proxy, stream):
    session = unique("tools")
    question = f"What is the weather in Lisbon {session}?"
    client = client_for(proxy, session)
    messages = user_msg(question)

    # 1. The model asks for a tool call.
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=messages, tools=[WEATHER_TOOL], stream=stream
    )
    if stream:
        chunks = list(raw.parse())
        fragments = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        assert len(fragments) > 2, "tool call arguments were not streamed in fragments"
        call_id = next(f.id for f in fragments if f.id)
        name = next(f.function.name for f in fragments if f.function and f.function.name)
        arguments = "".join(f.function.arguments or "" for f in fragments if f.function)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["tool_calls"]
        assistant = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}],
        }
    else:
        completion = raw.parse()
        assert completion.choices[0].finish_reason == "tool_calls"
        message = completion.choices[0].message
        assert message.content is None
        call = message.tool_calls[0]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
        assistant = message.model_dump(exclude_none=True)
    assert name == "get_weather"
    assert json.loads(arguments) == {"query": question}
    first_exchange = proxy.wait_stored(raw.headers["x-memproxy-request-id"])

    # 2. The client runs the tool and sends its result; the model answers with it.
    messages = messages + [assistant, {"role": "tool", "tool_call_id": call_id, "content": "22 degrees and sunny"}]
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=messages, stream=stream)
    if stream:
        answer = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        answer = raw.parse().choices[0].message.content
    assert answer == "tool result: 22 degrees and sunny"
    second_exchange = proxy.wait_stored(raw.headers["x-memproxy-request-id"])

    stored = {(e, r): c for r, c, _, e in proxy.memories(session)}
    assert stored[(first_exchange, "user")] == question
    assert stored[(first_exchange, "assistant")] == f"tool_call get_weather({arguments})"
    assert stored[(second_exchange, "assistant")] == "tool result: 22 degrees and sunny"


def _teach_and_ask(proxy, fake_upstream, client, fact_word: str, session: str, **create_kwargs) -> int:
    """Tells `client`'s session a fact, then asks about it; returns the number of memories injected."""
    fact = f"My favourite colour is {fact_word}"
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=user_msg(fact), **create_kwargs)
    proxy.wait_stored(raw.headers["x-memproxy-request-id"])
    question = f"What is my favourite colour? ({session})"
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=user_msg(question), **create_kwargs
    )
    assert raw.parse().choices[0].message.content == f"echo: {question}"
    _, [forwarded] = fake_upstream.requests(last=1)
    body = json.loads(forwarded["body"])
    assert body["messages"][-1]["content"] == question
    assert "x-session-id" not in forwarded["headers"], "the session header was forwarded upstream"
    if int(raw.headers["x-memory-injected"]) > 0:
        assert body["messages"][0]["role"] == "system"
        assert "<memory>" in body["messages"][0]["content"] and fact in body["messages"][0]["content"]
    else:
        assert fact_word not in forwarded["body"].decode()
    return int(raw.headers["x-memory-injected"])


def test_default_headers_and_extra_headers_both_give_memory(proxy, fake_upstream):
    colour = unique("teal")
    session = unique("default-headers")
    assert _teach_and_ask(proxy, fake_upstream, client_for(proxy, session), colour, session) >= 1

    colour = unique("amber")
    session = unique("extra-headers")
    plain = client_for(proxy)
    assert _teach_and_ask(proxy, fake_upstream, plain, colour, session, extra_headers={"X-Session-Id": session}) >= 1


def test_a_second_session_does_not_see_the_first_sessions_memories(proxy, fake_upstream):
    colour = unique("violet")
    first = unique("first")
    assert _teach_and_ask(proxy, fake_upstream, client_for(proxy, first), colour, first) >= 1

    second = unique("second")
    client = client_for(proxy, second)
    question = f"What is my favourite colour? {colour}"
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=user_msg(question))
    assert raw.headers["x-memory-session"] == second
    assert raw.headers["x-memory-injected"] == "0"
    _, [forwarded] = fake_upstream.requests(last=1)
    assert "<memory>" not in forwarded["body"].decode()
    # extra_headers override the client's default session for one call: still isolated.
    raw = client_for(proxy, first).chat.completions.with_raw_response.create(
        model="gpt-test", messages=user_msg(question), extra_headers={"X-Session-Id": unique("third")}
    )
    assert raw.headers["x-memory-injected"] == "0"


def test_upstream_401_becomes_authentication_error_from_the_upstream(proxy, fake_upstream):
    session = unique("auth")
    client = client_for(proxy, session)
    marker = unique("secret-question")
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(
            model="gpt-test", messages=user_msg(marker), extra_headers={"X-Fake-Status": "401"}
        )
    error = caught.value
    assert error.status_code == 401
    assert "fake upstream error 401" in error.message
    assert error.code == "fake_401" and error.type == "fake_error"
    assert error.request_id == "req_fake_401"
    failed_request_id = error.response.headers["x-memproxy-request-id"]
    # 401 is not retried, and the failed exchange is never stored.
    _, recent = fake_upstream.requests(last=50)
    assert sum(marker.encode() in r["body"] for r in recent) == 1
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=user_msg("ok now"))
    proxy.wait_stored(raw.headers["x-memproxy-request-id"])  # the writer commits in order
    assert failed_request_id not in proxy.stored_ids()
    assert [c for _, c, _, _ in proxy.memories(session)] == ["ok now", "echo: ok now"]


def test_429_with_retry_after_is_retried_by_the_client_and_stored_once(proxy, fake_upstream):
    session = unique("ratelimit")
    text = f"Remember my locker code 4711 {session}"
    client = client_for(proxy, session, max_retries=2)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=user_msg(text), extra_headers={"X-Fake-Fail-Once": "429"}
    )
    assert raw.parse().choices[0].message.content == f"echo: {text}"
    assert raw.retries_taken == 1
    _, recent = fake_upstream.requests(last=50)
    attempts = [r for r in recent if text.encode() in r["body"]]
    assert len(attempts) == 2, "the client did not retry through memproxy"
    assert attempts[0]["body"] == attempts[1]["body"]
    assert attempts[1]["headers"].get("x-stainless-retry-count") == "1"
    proxy.wait_stored(raw.headers["x-memproxy-request-id"])
    assert [(r, c) for r, c, _, _ in proxy.memories(session)] == [("user", text), ("assistant", f"echo: {text}")]


def test_models_list_passes_through(proxy):
    models = client_for(proxy).models.list()
    assert [m.id for m in models.data] == ["fake-model"]
    assert models.data[0].owned_by == "memproxy"


def _fake_vectors(fake_upstream, texts: list[str]) -> list[list[float]]:
    """The fake upstream's own vectors for `texts`, asked directly (not through memproxy)."""
    body = json.dumps({"input": texts, "model": "direct", "encoding_format": "float"}).encode()
    request = urllib.request.Request(
        f"{fake_upstream.url}/v1/embeddings", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        data = json.load(response)["data"]
    return [item["embedding"] for item in sorted(data, key=lambda item: item["index"])]


@pytest.mark.parametrize("encoding", [None, "float"])
def test_embeddings_pass_through(proxy, fake_upstream, encoding):
    client = client_for(proxy, unique("emb"))
    kwargs = {"encoding_format": encoding} if encoding else {}
    texts = ["hello", "memproxy world"]
    result = client.embeddings.create(model="text-embedding-test", input=texts, **kwargs)
    assert [d.index for d in result.data] == [0, 1]
    assert result.model == "text-embedding-test"
    _, [forwarded] = fake_upstream.requests(target="/v1/embeddings", last=1)
    sent = json.loads(forwarded["body"])
    expected = _fake_vectors(fake_upstream, texts)
    assert [len(v) for v in expected] == [64, 64]
    assert result.data[0].embedding == pytest.approx(expected[0], abs=1e-6)
    assert result.data[1].embedding == pytest.approx(expected[1], abs=1e-6)
    # With no encoding_format the client silently asks for base64 and decodes it itself.
    assert sent["encoding_format"] == (encoding or "base64")

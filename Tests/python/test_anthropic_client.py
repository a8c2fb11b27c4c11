"""The official `anthropic` client (`messages.create`, `messages.stream`), unchanged, through the real memproxy binary.

memproxy forwards `/v1/messages` to `upstream.anthropic_url`, which defaults to `upstream.url`: the fake upstream,
which answers "echo: <newest user text>"; with `tools` and a last user message with text, one `tool_use` block
(input `{"query": <user text>}`); after `tool_result` blocks, "tool result: <their content>". Every test checks what
reached the fake and exactly which memories were stored.
"""

from __future__ import annotations

import json

import anthropic
import pytest
from anthropic.types import Message

from conftest import block_lines, http, json_members, memory_block, parse_tool_call, unique

TARGET = "/v1/messages"
MODEL = "claude-test"
BETA = "prompt-caching-2024-07-31"

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}

LONG_SYSTEM = "You are a meticulous travel assistant who answers with facts about the weather. " * 40


def client_for(proxy, session: str | None = None, sent: list | None = None, **kwargs) -> anthropic.Anthropic:
    """A client for memproxy; with `sent`, every request it makes (headers and exact body bytes) is appended there."""
    headers = {"X-Session-Id": session} if session else None
    http_client = anthropic.DefaultHttpxClient(event_hooks={"request": [sent.append]}) if sent is not None else None
    return anthropic.Anthropic(
        base_url=proxy.url, api_key="sk-ant-test", default_headers=headers, timeout=30, http_client=http_client, **kwargs
    )


def send(client: anthropic.Anthropic, api: str, **kwargs):
    """`messages.create` or `messages.stream`: (response headers, final Message, streamed events or [])."""
    if api == "create":
        raw = client.messages.with_raw_response.create(**kwargs)
        return raw.headers, raw.parse(), []
    with client.messages.stream(**kwargs) as stream:
        headers = stream.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        events = list(stream)
        return headers, stream.get_final_message(), events


def forwarded_since(fake_upstream, before: int, expected: int) -> list[dict]:
    requests = fake_upstream.since(TARGET, before)
    assert len(requests) == expected, f"{len(requests)} requests reached the upstream, expected {expected}"
    return requests


def assert_memory_headers(headers, session: str) -> int:
    """Checks the X-Memory-* response headers; returns the number of memories injected."""
    assert headers["x-memory-session"] == session
    assert int(headers["x-memory-tokens"]) >= 0
    assert float(headers["x-memory-recall-ms"]) >= 0
    assert headers["x-memproxy-request-id"]
    return int(headers["x-memory-injected"])


def tool_use_param(block) -> dict:
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}


@pytest.mark.parametrize("api", ["create", "stream"])
def test_message_is_answered_and_stored(proxy, fake_upstream, api):
    session = unique("messages")
    text = f"My cat is called Tom {session}"
    sent: list = []
    before = fake_upstream.count(TARGET)
    headers, message, events = send(
        client_for(proxy, session, sent),
        api,
        model=MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": text}],
        extra_headers={"anthropic-beta": BETA},
    )
    if api == "stream":
        deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
        assert len(deltas) > 3, "the reply was not streamed"
        assert "".join(deltas) == f"echo: {text}"
        assert events[-1].type == "message_stop"
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_fake_")
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == f"echo: {text}"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    assert assert_memory_headers(headers, session) == 0

    # Nothing to inject yet: the body reaches the upstream as sent; the Anthropic headers pass through untouched.
    # (anthropic 2.x sends its key as `Authorization: Bearer`; older versions and raw clients send `x-api-key`.)
    [forwarded] = forwarded_since(fake_upstream, before, 1)
    [request] = sent
    assert json.loads(forwarded["body"]) == json.loads(request.content)
    credentials = [name for name in ("x-api-key", "authorization") if name in request.headers]
    assert credentials and all("sk-ant-test" in request.headers[name] for name in credentials)
    for name in credentials + ["anthropic-version", "anthropic-beta"]:
        assert forwarded["headers"].get(name) == request.headers[name], name
    assert forwarded["headers"]["anthropic-beta"] == BETA
    assert "x-session-id" not in forwarded["headers"]

    exchange = proxy.wait_stored(headers["x-memproxy-request-id"])
    assert proxy.memories(session) == [
        ("user", text, "{}", exchange),
        ("assistant", f"echo: {text}", "{}", exchange),
    ]


def test_stream_events_reach_the_client_in_order_with_pings(proxy, fake_upstream):
    """The wire itself (the SDK hides `ping`): every event relayed, `ping` included, ending with `message_stop`;
    `x-api-key` and `anthropic-version` as a raw client sends them reach the upstream untouched."""
    session = unique("messages-wire")
    before = fake_upstream.count(TARGET)
    text = f"Count the stars tonight {session}"
    body = json.dumps(
        {"model": MODEL, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": text}]}
    ).encode()
    status, headers, reply = http(
        "POST",
        f"{proxy.url}/v1/messages",
        body,
        {
            "content-type": "application/json",
            "x-api-key": "sk-ant-test",
            "anthropic-version": "2023-06-01",
            "X-Session-Id": session,
        },
    )
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    frames = [f for f in reply.decode().split("\n\n") if f.strip()]
    names = []
    for frame in frames:
        lines = frame.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        names.append(lines[0][len("event: ") :])
        assert json.loads(lines[1][len("data: ") :])["type"] == names[-1]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert "[DONE]" not in reply.decode()
    [forwarded] = forwarded_since(fake_upstream, before, 1)
    assert json.loads(forwarded["body"]) == json.loads(body)
    assert forwarded["headers"]["x-api-key"] == "sk-ant-test"
    assert forwarded["headers"]["anthropic-version"] == "2023-06-01"
    assert "x-session-id" not in forwarded["headers"]
    exchange = proxy.wait_stored(headers["x-memproxy-request-id"])
    assert proxy.memories(session) == [
        ("user", text, "{}", exchange),
        ("assistant", f"echo: {text}", "{}", exchange),
    ]


@pytest.mark.parametrize("api", ["create", "stream"])
def test_tool_use_round_trip(proxy, fake_upstream, api):
    session = unique("messages-tools")
    question = f"What is the weather in Lisbon {session}?"
    client = client_for(proxy, session)
    messages = [{"role": "user", "content": question}]

    # 1. The model asks for a tool.
    before = fake_upstream.count(TARGET)
    headers, message, events = send(client, api, model=MODEL, max_tokens=256, messages=messages, tools=[WEATHER_TOOL])
    if api == "stream":
        fragments = [e for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        assert len(fragments) > 2, "the tool input was not streamed in fragments"
    assert message.stop_reason == "tool_use"
    [tool_use] = message.content
    assert tool_use.type == "tool_use" and tool_use.name == "get_weather"
    assert tool_use.id.startswith("toolu_fake_")
    assert tool_use.input == {"query": question}
    assert assert_memory_headers(headers, session) == 0
    first_exchange = proxy.wait_stored(headers["x-memproxy-request-id"])

    # 2. The client runs the tool and sends its result; the model answers with it.
    messages = messages + [
        {"role": "assistant", "content": [tool_use_param(tool_use)]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "22 degrees and sunny"}],
        },
    ]
    headers, message, _ = send(client, api, model=MODEL, max_tokens=256, messages=messages, tools=[WEATHER_TOOL])
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "tool result: 22 degrees and sunny"
    assert message.stop_reason == "end_turn"
    injected = assert_memory_headers(headers, session)
    second_exchange = proxy.wait_stored(headers["x-memproxy-request-id"])

    first, second = forwarded_since(fake_upstream, before, 2)
    assert json.loads(first["body"])["messages"] == messages[:1]
    body = json.loads(second["body"])
    # No cache_control: the messages stay as sent, a memory block (if any) goes into `system`.
    assert body["messages"] == messages
    assert body["tools"] == [WEATHER_TOOL]
    if injected:
        assert body["system"] == memory_block(body["system"])
        assert len(block_lines(body["system"])) == injected
    else:
        assert "system" not in body
    assert "x-session-id" not in second["headers"]

    # One user memory for the loop, one assistant memory per round.
    rows = proxy.memories(session)
    assert len(rows) == 3, rows
    assert rows[0] == ("user", question, "{}", first_exchange)
    role, content, metadata, exchange = rows[1]
    assert (role, metadata, exchange) == ("assistant", "{}", first_exchange)
    assert parse_tool_call(content) == ("get_weather", {"query": question})
    assert rows[2] == ("assistant", "tool result: 22 degrees and sunny", "{}", second_exchange)


@pytest.mark.parametrize("api", ["create", "stream"])
def test_cache_control_on_system_keeps_system_and_tools_byte_identical(proxy, fake_upstream, api):
    session = unique("messages-cache")
    word = unique("wolfsburg")
    fact = f"My sister lives in {word} since last spring"
    client = client_for(proxy, session)
    headers, _, _ = send(client, "create", model=MODEL, max_tokens=256, messages=[{"role": "user", "content": fact}])
    fact_exchange = proxy.wait_stored(headers["x-memproxy-request-id"])

    sent: list = []
    client = client_for(proxy, session, sent)
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    history = [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
    ]
    question = f"What is the weather where my sister lives, {word}?"
    messages = history + [{"role": "user", "content": question}]

    # 1. A new user turn: the block becomes the last text block of the last user message.
    before = fake_upstream.count(TARGET)
    kwargs = dict(model=MODEL, max_tokens=256, system=system, tools=[WEATHER_TOOL])
    headers, message, _ = send(client, api, messages=messages, **kwargs)
    injected = assert_memory_headers(headers, session)
    assert injected >= 1, "the fact was not injected"
    assert message.stop_reason == "tool_use"
    [tool_use] = message.content
    first_exchange = proxy.wait_stored(headers["x-memproxy-request-id"])
    [forwarded] = forwarded_since(fake_upstream, before, 1)
    original = json_members(sent[-1].content)
    relayed = json_members(forwarded["body"])
    assert relayed.keys() == original.keys(), "a top-level field was added or removed"
    assert relayed["system"] == original["system"], "system was changed"
    assert relayed["tools"] == original["tools"], "tools were changed"
    body = json.loads(forwarded["body"])
    assert body["messages"][:2] == history
    last = body["messages"][2]
    assert last["role"] == "user"
    assert last["content"][0] == {"type": "text", "text": question}
    assert len(last["content"]) == 2
    added = last["content"][1]
    assert added.keys() == {"type", "text"}, "the memory block carries fields of its own (cache_control?)"
    assert added["type"] == "text"
    block = added["text"]
    assert block == memory_block(block) and fact in block
    assert len(block_lines(block)) == injected

    # 2. The tool result round trip: the block comes after the tool_result block (text before it is a 400 upstream).
    # The fake echoes the injected block into its tool input; a real model would not, so the client replays a clean one.
    tool_result = {"type": "tool_result", "tool_use_id": tool_use.id, "content": "22 degrees and sunny"}
    replayed = {"type": "tool_use", "id": tool_use.id, "name": tool_use.name, "input": {"query": question}}
    messages = messages + [{"role": "assistant", "content": [replayed]}, {"role": "user", "content": [tool_result]}]
    before = fake_upstream.count(TARGET)
    headers, message, _ = send(client, api, messages=messages, **kwargs)
    assert message.content[0].text == "tool result: 22 degrees and sunny"
    assert assert_memory_headers(headers, session) >= 1
    second_exchange = proxy.wait_stored(headers["x-memproxy-request-id"])
    [forwarded] = forwarded_since(fake_upstream, before, 1)
    original = json_members(sent[-1].content)
    relayed = json_members(forwarded["body"])
    assert relayed.keys() == original.keys()
    assert relayed["system"] == original["system"] and relayed["tools"] == original["tools"]
    body = json.loads(forwarded["body"])
    assert body["messages"][:-1] == messages[:-1]
    [result, added] = body["messages"][-1]["content"]
    assert result == tool_result
    assert added.keys() == {"type", "text"} and added["type"] == "text"
    assert fact in memory_block(added["text"])

    rows = proxy.memories(session)
    assert len(rows) == 5, rows
    assert rows[:3] == [
        ("user", fact, "{}", fact_exchange),
        ("assistant", f"echo: {fact}", "{}", fact_exchange),
        ("user", question, "{}", first_exchange),  # the client's text, without the block
    ]
    role, content, metadata, exchange = rows[3]
    assert (role, metadata, exchange) == ("assistant", "{}", first_exchange)
    name, arguments = parse_tool_call(content)
    assert name == "get_weather" and arguments["query"].startswith(question)
    assert rows[4] == ("assistant", "tool result: 22 degrees and sunny", "{}", second_exchange)


def test_a_fact_told_first_is_injected_into_system(proxy, fake_upstream):
    session = unique("messages-fact")
    word = unique("quillon")
    fact = f"The name of my boat is {word}"
    client = client_for(proxy, session)
    headers, _, _ = send(client, "create", model=MODEL, max_tokens=256, messages=[{"role": "user", "content": fact}])
    proxy.wait_stored(headers["x-memproxy-request-id"])
    question = f"What is the name of my boat {word}?"
    messages = [{"role": "user", "content": question}]

    def ask(**kwargs) -> tuple[int, dict]:
        before = fake_upstream.count(TARGET)
        headers, message, _ = send(client, "create", model=MODEL, max_tokens=256, messages=messages, **kwargs)
        assert message.content[0].text == f"echo: {question}"
        injected = assert_memory_headers(headers, session)
        [forwarded] = forwarded_since(fake_upstream, before, 1)
        assert "x-session-id" not in forwarded["headers"]
        proxy.wait_stored(headers["x-memproxy-request-id"])
        body = json.loads(forwarded["body"])
        assert body["messages"] == messages, "without cache_control the messages stay as sent"
        return injected, body

    # A string system prompt: the block is appended after a blank line.
    injected, body = ask(system="You are terse.")
    assert injected >= 1
    assert body["system"].startswith("You are terse.\n\n")
    block = body["system"][len("You are terse.\n\n") :]
    assert block == memory_block(block) and fact in block
    assert len(block_lines(block)) == injected

    # No system prompt: it is set to the block.
    injected, body = ask()
    assert injected >= 1
    assert body["system"] == memory_block(body["system"]) and fact in body["system"]

    # An array system prompt: one more text block.
    injected, body = ask(system=[{"type": "text", "text": "You are terse."}])
    assert injected >= 1
    assert body["system"][0] == {"type": "text", "text": "You are terse."}
    assert len(body["system"]) == 2 and body["system"][1]["type"] == "text"
    assert fact in memory_block(body["system"][1]["text"])

    # Another session does not see the fact.
    other = unique("messages-other")
    before = fake_upstream.count(TARGET)
    headers, _, _ = send(client_for(proxy, other), "create", model=MODEL, max_tokens=256, messages=messages)
    assert assert_memory_headers(headers, other) == 0
    [forwarded] = forwarded_since(fake_upstream, before, 1)
    assert "system" not in json.loads(forwarded["body"])


@pytest.mark.parametrize("ending", ["error_event", "cut"])
def test_a_reply_that_did_not_complete_is_stored_incomplete_and_never_injected(proxy, fake_upstream, ending):
    session = unique(f"messages-{ending}")
    word = unique("xylocarp")
    fact = f"{word} is the code of my locker at the gym"
    full_reply = f"echo: {fact}"
    client = client_for(proxy, session, max_retries=0)
    # error_event: the fake sends its first delta, then an overloaded_error `error` event. cut: the connection
    # breaks after message_start, content_block_start, ping and two deltas.
    script = {"X-Fake-Final": "error"} if ending == "error_event" else {"X-Fake-Drop-After": "5"}
    with client.messages.stream(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": fact}], extra_headers=script
    ) as stream:
        headers = stream.response.headers
        # memproxy relays the error event, or turns the cut into one: the SDK raises it, not a connection error.
        with pytest.raises(anthropic.APIStatusError) as caught:
            for _ in stream:
                pass
    error = caught.value
    assert error.body["type"] == "error"
    assert isinstance(error.body["error"]["type"], str) and isinstance(error.body["error"]["message"], str)
    if ending == "error_event":
        assert error.type == "overloaded_error"
    exchange = proxy.wait_stored(headers["x-memproxy-request-id"])
    rows = proxy.memories(session)
    assert len(rows) == 2, rows
    assert rows[0] == ("user", fact, "{}", exchange)
    role, content, metadata, stored_exchange = rows[1]
    assert (role, stored_exchange) == ("assistant", exchange)
    assert json.loads(metadata).get("incomplete") is True
    assert content.strip() and full_reply.startswith(content.strip()) and len(content.strip()) < len(full_reply)
    if ending == "cut":
        assert word in content

    # The next request of the session gets the user's message, never the reply that did not complete.
    question = f"What is the code of my locker {word}?"
    before = fake_upstream.count(TARGET)
    headers, _, _ = send(client, "create", model=MODEL, max_tokens=256, messages=[{"role": "user", "content": question}])
    assert assert_memory_headers(headers, session) == 1
    [forwarded] = forwarded_since(fake_upstream, before, 1)
    system = json.loads(forwarded["body"])["system"]
    [line] = block_lines(memory_block(system))
    assert line.endswith(f"user: {fact}")
    assert "echo:" not in system


def test_errors_memproxy_makes_on_messages_are_anthropic_shaped(proxy, fake_upstream):
    before = fake_upstream.count(TARGET)

    # A body that is not JSON.
    client = client_for(proxy, unique("messages-bad-json"), max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.post(
            "/v1/messages",
            cast_to=Message,
            content=b'{"model": "claude-test", "messages": [',
            options={"headers": {"Content-Type": "application/json"}},
        )
    error = caught.value
    assert error.status_code == 400
    assert error.body["type"] == "error"
    assert set(error.body) <= {"type", "error", "request_id"}
    assert error.body["error"]["type"] == "invalid_request_error" == error.type
    assert isinstance(error.body["error"]["message"], str) and error.body["error"]["message"]

    # A session id that is too long (201 characters).
    with pytest.raises(anthropic.BadRequestError) as caught:
        client_for(proxy, "s" * 201, max_retries=0).messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hello"}]
        )
    error = caught.value
    assert error.status_code == 400
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "invalid_request_error"
    assert "X-Session-Id" in error.body["error"]["message"]
    assert fake_upstream.count(TARGET) == before, "an invalid request reached the upstream"


def test_upstream_error_is_relayed_and_nothing_is_stored(proxy, fake_upstream):
    session = unique("messages-401")
    marker = unique("secret-question")
    client = client_for(proxy, session)
    before = fake_upstream.count(TARGET)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(
            model=MODEL,
            max_tokens=64,
            messages=[{"role": "user", "content": marker}],
            extra_headers={"X-Fake-Status": "401"},
        )
    error = caught.value
    assert error.status_code == 401
    assert error.body == {"type": "error", "error": {"type": "authentication_error", "message": "fake upstream error 401"}}
    assert error.request_id == "req_fake_401"
    failed_request_id = error.response.headers["x-memproxy-request-id"]
    assert len(fake_upstream.since(TARGET, before)) == 1, "a 401 was retried"
    headers, _, _ = send(client, "create", model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "ok now"}])
    proxy.wait_stored(headers["x-memproxy-request-id"])  # the writer commits in order
    assert failed_request_id not in proxy.stored_ids()
    assert [(r, c) for r, c, _, _ in proxy.memories(session)] == [("user", "ok now"), ("assistant", "echo: ok now")]

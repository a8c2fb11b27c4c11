"""The official `openai` client's Responses API (`client.responses`), unchanged, through the real memproxy binary.

The fake upstream answers `/v1/responses` with "echo: <newest user text>"; with a function tool and a last input item
from the user, one `function_call` (arguments `{"query": <user text>}`); after a `function_call_output`,
"tool result: <output>". Every test checks what reached the fake and exactly which memories were stored.
"""

from __future__ import annotations

import json

import openai
import pytest
from openai import OpenAI

from conftest import block_lines, memory_block, unique

TARGET = "/v1/responses"

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
        "additionalProperties": False,
    },
    "strict": True,
}


def client_for(proxy, session: str | None = None, **kwargs) -> OpenAI:
    headers = {"X-Session-Id": session} if session else None
    return OpenAI(base_url=proxy.base_url, api_key="sk-test-key", default_headers=headers, timeout=30, **kwargs)


def forwarded_since(fake_upstream, before: int, expected: int) -> list[tuple[dict, dict]]:
    """The (parsed body, headers) of the requests that reached the fake's /v1/responses since `before`."""
    requests = fake_upstream.since(TARGET, before)
    assert len(requests) == expected, f"{len(requests)} requests reached the upstream, expected {expected}"
    return [(json.loads(r["body"]), r["headers"]) for r in requests]


def assert_memory_headers(headers, session: str) -> int:
    """Checks the X-Memory-* response headers; returns the number of memories injected."""
    assert headers["x-memory-session"] == session
    assert int(headers["x-memory-tokens"]) >= 0
    assert float(headers["x-memory-recall-ms"]) >= 0
    assert headers["x-memproxy-request-id"]
    return int(headers["x-memory-injected"])


def create(client: OpenAI, stream: bool, **kwargs):
    """`responses.create`, plain or streamed: (raw response, final Response, stream events or [])."""
    raw = client.responses.with_raw_response.create(stream=stream, **kwargs)
    if not stream:
        return raw, raw.parse(), []
    events = list(raw.parse())
    assert events[-1].type == "response.completed", [e.type for e in events]
    return raw, events[-1].response, events


@pytest.mark.parametrize("form", ["string", "message_item"])
def test_response_is_answered_and_stored(proxy, fake_upstream, form):
    session = unique("responses")
    text = f"My cat is called Tom {session}"
    sent_input = text if form == "string" else [{"role": "user", "content": [{"type": "input_text", "text": text}]}]
    before = fake_upstream.count(TARGET)
    raw = client_for(proxy, session).responses.with_raw_response.create(model="gpt-test", input=sent_input)
    response = raw.parse()
    assert response.object == "response"
    assert response.status == "completed"
    assert response.id.startswith("resp_fake_")
    assert [item.type for item in response.output] == ["message"]
    assert response.output_text == f"echo: {text}"
    assert response.usage.total_tokens > 0
    assert assert_memory_headers(raw.headers, session) == 0
    [(body, headers)] = forwarded_since(fake_upstream, before, 1)
    # Nothing to inject yet: the request reaches the upstream as the client sent it, without the session header.
    assert body == {"model": "gpt-test", "input": sent_input}
    assert "x-session-id" not in headers
    assert headers["authorization"] == "Bearer sk-test-key"
    exchange = proxy.wait_stored(raw.headers["x-memproxy-request-id"])
    assert proxy.memories(session) == [
        ("user", text, "{}", exchange),
        ("assistant", f"echo: {text}", "{}", exchange),
    ]


def test_streamed_response(proxy, fake_upstream):
    session = unique("responses-stream")
    text = f"Tell me about the Andromeda galaxy please {session}"
    before = fake_upstream.count(TARGET)
    raw = client_for(proxy, session).responses.with_raw_response.create(model="gpt-test", input=text, stream=True)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert assert_memory_headers(raw.headers, session) == 0
    events = list(raw.parse())
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed" and types.count("response.completed") == 1
    assert "error" not in types and "response.failed" not in types
    assert [e.sequence_number for e in events] == list(range(len(events))), "events were lost, added or reordered"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 3, "the reply was not streamed"
    assert "".join(deltas) == f"echo: {text}"
    assert events[-1].response.output_text == f"echo: {text}"
    [(body, headers)] = forwarded_since(fake_upstream, before, 1)
    assert body == {"model": "gpt-test", "input": text, "stream": True}
    assert "x-session-id" not in headers
    exchange = proxy.wait_stored(raw.headers["x-memproxy-request-id"])
    assert proxy.memories(session) == [
        ("user", text, "{}", exchange),
        ("assistant", f"echo: {text}", "{}", exchange),
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_function_tool_round_trip_with_previous_response_id(proxy, fake_upstream, stream):
    session = unique("responses-tools")
    word = unique("zanzibar")
    client = client_for(proxy, session)

    # 0. A fact, so that the tool loop has a memory block to carry.
    fact = f"I am travelling to {word} next week"
    raw = client.responses.with_raw_response.create(model="gpt-test", input=fact)
    fact_exchange = proxy.wait_stored(raw.headers["x-memproxy-request-id"])

    # 1. The model asks for a tool call.
    question = f"What is the weather in {word} today?"
    before = fake_upstream.count(TARGET)
    raw, first, events = create(client, stream, model="gpt-test", input=question, tools=[WEATHER_TOOL])
    if stream:
        assert "response.function_call_arguments.delta" in [e.type for e in events]
        assert "response.function_call_arguments.done" in [e.type for e in events]
    assert first.id.startswith("resp_fake_")
    [call] = first.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert call.call_id.startswith("call_fake_")
    assert json.loads(call.arguments) == {"query": question}
    injected = assert_memory_headers(raw.headers, session)
    assert injected >= 1, "the fact told before the tool loop was not injected"
    first_exchange = proxy.wait_stored(raw.headers["x-memproxy-request-id"])

    # 2. The client runs the tool and continues the stored response with only its output.
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "22 degrees and sunny"}
    raw, second, _ = create(
        client, stream, model="gpt-test", previous_response_id=first.id, input=[output], tools=[WEATHER_TOOL]
    )
    assert second.output_text == "tool result: 22 degrees and sunny"
    assert second.id != first.id
    # A continuation gets the same memories as the request that produced the previous response.
    assert assert_memory_headers(raw.headers, session) == injected
    second_exchange = proxy.wait_stored(raw.headers["x-memproxy-request-id"])

    [(sent_first, _), (sent_second, headers)] = forwarded_since(fake_upstream, before, 2)
    assert sent_first["input"] == question and sent_first["tools"] == [WEATHER_TOOL]
    assert "previous_response_id" not in sent_first
    block = memory_block(sent_first["instructions"])
    assert sent_first["instructions"] == block, "instructions the client did not send hold more than the block"
    assert fact in block
    assert len(block_lines(block)) == injected
    assert sent_second["previous_response_id"] == first.id
    assert sent_second["input"] == [output], "the continuation's input was changed"
    assert sent_second["instructions"] == sent_first["instructions"], "the continuation got another memory block"
    assert "x-session-id" not in headers

    # One user memory for the loop, one assistant memory per round.
    assert proxy.memories(session) == [
        ("user", fact, "{}", fact_exchange),
        ("assistant", f"echo: {fact}", "{}", fact_exchange),
        ("user", question, "{}", first_exchange),
        ("assistant", f"tool_call get_weather({call.arguments})", "{}", first_exchange),
        ("assistant", "tool result: 22 degrees and sunny", "{}", second_exchange),
    ]


def test_a_fact_told_first_is_injected_into_instructions(proxy, fake_upstream):
    session = unique("responses-fact")
    word = unique("quillon")
    client = client_for(proxy, session)
    fact = f"The name of my boat is {word}"
    raw = client.responses.with_raw_response.create(model="gpt-test", input=fact)
    told = raw.parse()
    proxy.wait_stored(raw.headers["x-memproxy-request-id"])
    question = f"What is the name of my boat {word}?"

    # Stateless, with instructions: the block is appended to them.
    before = fake_upstream.count(TARGET)
    raw = client.responses.with_raw_response.create(
        model="gpt-test", input=question, instructions="Answer in one sentence."
    )
    assert raw.parse().output_text == f"echo: {question}"
    injected = assert_memory_headers(raw.headers, session)
    assert injected >= 1
    [(body, headers)] = forwarded_since(fake_upstream, before, 1)
    assert body["input"] == question
    assert body["instructions"].startswith("Answer in one sentence.")
    block = memory_block(body["instructions"])
    assert body["instructions"].endswith(block)
    assert fact in block and len(block_lines(block)) == injected
    assert "x-session-id" not in headers
    proxy.wait_stored(raw.headers["x-memproxy-request-id"])

    # Stateless, without instructions: they are set to the block.
    before = fake_upstream.count(TARGET)
    raw = client.responses.with_raw_response.create(model="gpt-test", input=question)
    assert assert_memory_headers(raw.headers, session) >= 1
    [(body, _)] = forwarded_since(fake_upstream, before, 1)
    assert body["input"] == question
    assert body["instructions"] == memory_block(body["instructions"])
    assert fact in body["instructions"]
    proxy.wait_stored(raw.headers["x-memproxy-request-id"])

    # Stateful (previous_response_id): the block goes into instructions, never into the stored input.
    before = fake_upstream.count(TARGET)
    raw = client.responses.with_raw_response.create(model="gpt-test", input=question, previous_response_id=told.id)
    assert assert_memory_headers(raw.headers, session) >= 1
    [(body, _)] = forwarded_since(fake_upstream, before, 1)
    assert body["previous_response_id"] == told.id
    assert body["input"] == question
    assert body["instructions"] == memory_block(body["instructions"])
    assert fact in body["instructions"]
    proxy.wait_stored(raw.headers["x-memproxy-request-id"])

    # Another session does not see the fact.
    other = unique("responses-other")
    before = fake_upstream.count(TARGET)
    raw = client_for(proxy, other).responses.with_raw_response.create(model="gpt-test", input=question)
    assert assert_memory_headers(raw.headers, other) == 0
    [(body, _)] = forwarded_since(fake_upstream, before, 1)
    assert body == {"model": "gpt-test", "input": question}


@pytest.mark.parametrize("ending", ["failed", "incomplete", "cut"])
def test_a_reply_that_did_not_complete_is_stored_incomplete_and_never_injected(proxy, fake_upstream, ending):
    session = unique(f"responses-{ending}")
    word = unique("xylocarp")
    client = client_for(proxy, session, max_retries=0)
    fact = f"{word} is the code of my locker at the gym"
    full_reply = f"echo: {fact}"
    # The cut comes after response.created, .in_progress, .output_item.added, .content_part.added and two deltas.
    script = {"X-Fake-Drop-After": "6"} if ending == "cut" else {"X-Fake-Final": ending}
    raw = client.responses.with_raw_response.create(model="gpt-test", input=fact, stream=True, extra_headers=script)
    events, raised = [], None
    try:
        for event in raw.parse():
            events.append(event)
    except openai.APIError as error:
        raised = error
    types = [e.type for e in events]
    assert "response.completed" not in types
    if ending == "cut":
        # memproxy ends a stream its upstream cut with a Responses `error` event (which the SDK raises when the
        # error is nested), not with a broken connection.
        assert not isinstance(raised, openai.APIConnectionError), raised
        assert raised is not None or types[-1] == "error", types
    else:
        assert raised is None, raised
        assert types[-1] == f"response.{ending}"
    exchange = proxy.wait_stored(raw.headers["x-memproxy-request-id"])
    rows = proxy.memories(session)
    assert len(rows) == 2, rows
    assert rows[0] == ("user", fact, "{}", exchange)
    role, content, metadata, stored_exchange = rows[1]
    assert (role, stored_exchange) == ("assistant", exchange)
    assert json.loads(metadata).get("incomplete") is True
    if ending == "cut":
        assert word in content and full_reply.startswith(content.strip()) and len(content.strip()) < len(full_reply)
    else:
        assert content == full_reply

    # The next request of the session gets the user's message, never the reply that did not complete.
    question = f"What is the code of my locker {word}?"
    before = fake_upstream.count(TARGET)
    raw = client.responses.with_raw_response.create(model="gpt-test", input=question)
    assert assert_memory_headers(raw.headers, session) == 1
    [(body, _)] = forwarded_since(fake_upstream, before, 1)
    [line] = block_lines(memory_block(body["instructions"]))
    assert line.endswith(f"user: {fact}")
    assert "echo:" not in body["instructions"]


def test_errors_memproxy_makes_on_responses_are_openai_shaped(proxy, fake_upstream):
    before = fake_upstream.count(TARGET)
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(proxy, "s" * 201, max_retries=0).responses.create(model="gpt-test", input="hello")
    error = caught.value
    assert error.status_code == 400
    assert error.code == "invalid_session_id"
    assert error.type == "invalid_request_error"
    assert "X-Session-Id" in error.message
    assert fake_upstream.count(TARGET) == before, "an invalid request reached the upstream"


def test_upstream_error_is_relayed_and_nothing_is_stored(proxy, fake_upstream):
    session = unique("responses-401")
    marker = unique("secret-question")
    client = client_for(proxy, session)
    before = fake_upstream.count(TARGET)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.responses.create(model="gpt-test", input=marker, extra_headers={"X-Fake-Status": "401"})
    error = caught.value
    assert error.status_code == 401
    assert error.code == "fake_401" and error.type == "fake_error"
    assert error.request_id == "req_fake_401"
    failed_request_id = error.response.headers["x-memproxy-request-id"]
    assert len(fake_upstream.since(TARGET, before)) == 1, "a 401 was retried"
    raw = client.responses.with_raw_response.create(model="gpt-test", input="ok now")
    proxy.wait_stored(raw.headers["x-memproxy-request-id"])  # the writer commits in order
    assert failed_request_id not in proxy.stored_ids()
    assert [(r, c) for r, c, _, _ in proxy.memories(session)] == [("user", "ok now"), ("assistant", "echo: ok now")]

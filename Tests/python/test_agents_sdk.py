"""The OpenAI Agents SDK (`openai-agents`), unchanged, with its default runner and model (the Responses API), through
the real memproxy binary: an agent with one function tool runs a full tool loop against the fake upstream, which
answers the user's message with a `function_call` and the tool's output with "tool result: <output>".
"""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled
from openai import AsyncOpenAI

from conftest import block_lines, memory_block, unique

set_tracing_disabled(True)  # no trace export: there is no network here

INSTRUCTIONS = "You are a helpful travel assistant. Use the weather tool when asked about the weather."
TOOL_OUTPUT = "22 degrees and sunny"


def make_agent(calls: list[str]) -> Agent:
    @function_tool
    def lookup_weather(query: str) -> str:
        """Looks up the current weather.

        Args:
            query: What to look up.
        """
        calls.append(query)
        return TOOL_OUTPUT

    return Agent(name="Weather agent", instructions=INSTRUCTIONS, model="gpt-test", tools=[lookup_weather])


def run_agent(proxy, session: str, text: str, streamed: bool, calls: list[str]) -> tuple[object, list[dict]]:
    """Runs the agent on `text` in `session`; returns the run result and the memproxy response headers of each
    model request, in order."""
    responses: list[dict] = []

    async def record(response) -> None:
        if response.request.url.path.endswith("/responses"):
            responses.append({k.lower(): v for k, v in response.headers.items()})

    async def main():
        client = AsyncOpenAI(
            base_url=proxy.base_url,
            api_key="sk-test",
            default_headers={"X-Session-Id": session},
            timeout=30,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(event_hooks={"response": [record]}),
        )
        set_default_openai_client(client, use_for_tracing=False)
        try:
            agent = make_agent(calls)
            if streamed:
                result = Runner.run_streamed(agent, text)
                async for _ in result.stream_events():
                    pass
                return result
            return await Runner.run(agent, text)
        finally:
            await client.close()

    return asyncio.run(main()), responses


def forwarded_since(fake_upstream, before: int, expected: int) -> list[tuple[dict, dict]]:
    requests = fake_upstream.since("/v1/responses", before)
    assert len(requests) == expected, f"{len(requests)} requests reached the upstream, expected {expected}"
    return [(json.loads(r["body"]), r["headers"]) for r in requests]


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
def test_agent_with_a_function_tool(proxy, fake_upstream, streamed):
    session = unique("agent")
    text = f"What is the weather in Lisbon {session}?"
    calls: list[str] = []
    before = fake_upstream.count("/v1/responses")
    chat_before = fake_upstream.count("/v1/chat/completions")

    result, responses = run_agent(proxy, session, text, streamed, calls)

    assert result.final_output == f"tool result: {TOOL_OUTPUT}"
    assert calls == [text], "the tool did not get the model's arguments"
    assert fake_upstream.count("/v1/chat/completions") == chat_before, "the agent did not use the Responses API"
    assert len(responses) == 2
    for headers in responses:
        assert headers["x-memory-session"] == session
    assert responses[0]["x-memory-injected"] == "0"

    [(first, first_headers), (second, second_headers)] = forwarded_since(fake_upstream, before, 2)
    for headers in (first_headers, second_headers):
        assert "x-session-id" not in headers
        assert headers["authorization"] == "Bearer sk-test"
    # 1. The user's message and the tool; nothing to inject yet, so the agent's instructions are unchanged.
    assert first["instructions"] == INSTRUCTIONS
    assert first["input"][-1]["role"] == "user" and first["input"][-1]["content"] == text
    assert [(t["type"], t["name"]) for t in first["tools"]] == [("function", "lookup_weather")]
    assert first.get("stream", False) is streamed
    # 2. The agent resends the conversation with the call and its output (no previous_response_id).
    assert second["instructions"].startswith(INSTRUCTIONS)
    [call] = [item for item in second["input"] if item.get("type") == "function_call"]
    assert call["name"] == "lookup_weather" and json.loads(call["arguments"]) == {"query": text}
    output = second["input"][-1]
    assert (output["type"], output["call_id"], output["output"]) == ("function_call_output", call["call_id"], TOOL_OUTPUT)
    assert [i for i in second["input"] if i.get("role") == "user"] == [first["input"][-1]]

    # A tool loop of two rounds: one user memory, one assistant memory per round.
    first_exchange = proxy.wait_stored(responses[0]["x-memproxy-request-id"])
    second_exchange = proxy.wait_stored(responses[1]["x-memproxy-request-id"])
    assert proxy.memories(session) == [
        ("user", text, "{}", first_exchange),
        ("assistant", f"tool_call lookup_weather({call['arguments']})", "{}", first_exchange),
        ("assistant", f"tool result: {TOOL_OUTPUT}", "{}", second_exchange),
    ]


def test_an_agent_remembers_a_fact_from_an_earlier_run(proxy, fake_upstream):
    session = unique("agent-fact")
    word = unique("marrakesh")
    fact = f"I am flying to {word} on Friday"
    calls: list[str] = []
    _, responses = run_agent(proxy, session, fact, False, calls)
    for headers in responses:
        proxy.wait_stored(headers["x-memproxy-request-id"])

    question = f"Will it rain in {word} when I land?"
    before = fake_upstream.count("/v1/responses")
    result, responses = run_agent(proxy, session, question, False, calls)
    assert result.final_output == f"tool result: {TOOL_OUTPUT}"
    injected = int(responses[0]["x-memory-injected"])
    assert injected >= 1, "the fact told in the earlier run was not injected"
    first, _ = forwarded_since(fake_upstream, before, 2)[0]
    # The agent's instructions come first, byte for byte; the block is appended to them.
    assert first["instructions"].startswith(INSTRUCTIONS)
    block = memory_block(first["instructions"][len(INSTRUCTIONS) :])
    assert first["instructions"].endswith(block)
    assert fact in block and len(block_lines(block)) == injected
    assert first["input"][-1]["content"] == question

    # Another session's agent does not see it.
    other = unique("agent-other")
    before = fake_upstream.count("/v1/responses")
    _, responses = run_agent(proxy, other, question, False, calls)
    assert responses[0]["x-memory-injected"] == "0"
    first, _ = forwarded_since(fake_upstream, before, 2)[0]
    assert first["instructions"] == INSTRUCTIONS

#!/usr/bin/env python3
"""Prompt-cache benchmark: how much of each upstream request a prefix cache could reuse (issue 11).

    MEMPROXY_BIN=.build/release/memproxy python3 Benchmarks/proxy/cache.py     (default: .build/debug/memproxy)

For each memory placement (`system`, `last_user`) and each API (chat completions, Responses, Anthropic Messages,
and Anthropic Messages with `cache_control` on its system block), a fresh memproxy with a fresh database, in front
of one `memproxy fake-upstream`, serves one session:

1. An earlier conversation: 12 single-turn requests, each telling one fact. memproxy stores them.
2. The measured conversation: 20 turns, the client resending the whole history each turn (its own messages as it
   wrote them, and the assistant replies as it got them back), behind a fixed ~8,000-character (~2,000-token)
   system prompt. Each user turn tells something new and asks about a fact of the earlier conversation.

Why the earlier conversation: memproxy never injects a memory whose text the request already contains, and a
client that resends its history already contains everything said in this conversation; what memory adds on a
turn is what the conversation does not hold.

After each turn the script fetches the body the upstream received (`GET /v1/test/requests`) and computes, for turn
n >= 2, the share of its bytes equal to the previous upstream request's prefix (longest common prefix in bytes /
request length): what an exact-prefix cache (OpenAI's automatic caching, Anthropic's up to a breakpoint) could
reuse. The fake upstream answers with filler text of 200-560 bytes (`X-Fake-Reply-Bytes`), not its usual echo:
echoing the newest user message would echo the injected block too with `last_user`, and the history would grow by
a block per turn.

The table: mean and min share over turns 3-20 and how many of those turns reach 90%, mean memories injected per
turn (`X-Memory-Injected`, turns 1-20), the block's mean size as sent, and where the two requests first differ (the
JSON path in the previous request at the first differing byte, the most frequent over turns 3-20; `[last]` is an
array's last element; a bare array name means the previous request is a prefix up to that array's end). The "off"
rows replay the same conversation with `X-Memory-Mode: off`: the ceiling the conversation's own growth allows.
Progress, per-turn shares and the worst turn's first difference (bytes around it) go to stderr, the table to stdout.
Only loopback is used; the fake upstream and every memproxy started here are stopped on exit.
"""
from __future__ import annotations

import base64
import collections
import json
import os
import pathlib
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("MEMPROXY_BIN", ROOT / ".build" / "debug" / "memproxy"))
if not BIN.is_absolute():
    BIN = (pathlib.Path.cwd() / BIN).resolve()
SESSION = "cache-bench"
TURNS = 20
PLACEMENTS = ("system", "last_user")
# "off": the same conversation with `X-Memory-Mode: off` (no earlier facts, nothing injected or stored): what the
# conversation's own growth allows, the ceiling for the placements.
ROWS = PLACEMENTS + ("off",)
APIS = ("chat.completions", "responses", "messages", "messages+cache_control")
STARTED = time.monotonic()


def progress(text: str) -> None:
    print(f"[cache {time.monotonic() - STARTED:5.1f}s] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the conversation

def system_prompt() -> str:
    """A fixed, deterministic system prompt of ~8,000 characters (~2,000 tokens), like an agent's."""
    topics = ["travel plans", "family events", "health and training", "home projects", "work projects",
              "money and budgets", "food and recipes", "pets", "cars and commuting", "music lessons"]
    rules = [
        "When the user asks about {t}, answer from what they told you before you suggest anything new, and say "
        "plainly when you do not know something instead of guessing.",
        "Keep answers about {t} short: two to five sentences unless the user asks for detail, then use a numbered "
        "list with one idea per line.",
        "If a question about {t} depends on a date, restate the date you are assuming and the time zone, and point "
        "out conflicts with anything already scheduled.",
        "For {t}, never invent names, prices, addresses or opening hours; when a detail matters, suggest where the "
        "user can check it and what to ask.",
    ]
    lines = ["You are Atlas, a careful personal assistant for one user. You help them remember and plan their "
             "life. Follow these guidelines in every answer."]
    n = 0
    while sum(len(line) + 1 for line in lines) < 8000:
        topic, rule = topics[n % len(topics)], rules[(n // len(topics)) % len(rules)]
        n += 1
        lines.append(f"{n}. " + rule.format(t=topic))
    return "\n".join(lines)


SEED_FACTS = [
    "My sister Ingrid moved to Lisbon last spring and teaches marine biology at the university there.",
    "Our dog Biscuit is a three-year-old border collie who is terrified of thunderstorms.",
    "I am allergic to cashews and pistachios, so keep them out of any recipe you suggest.",
    "My car is a 2014 Subaru Outback; the left rear tyre keeps losing pressure.",
    "I am training for the Rotterdam marathon in April; my long runs are on Sunday mornings.",
    "The project I lead at work is called Halyard, a billing migration from Oracle to Postgres.",
    "My daughter Mette plays the cello and has her grade five exam on the twelfth of June.",
    "We are repainting the kitchen in a colour called Sage Whisper; the ceiling stays white.",
    "My favourite café in Zürich is Café Schober near the Niederdorf; I go there every Friday.",
    "I take the 7:42 train from Haarlem to Amsterdam Centraal on weekdays.",
    "My landlord Mr Okafor wants the balcony railing fixed before the inspection in March.",
    "I keep sourdough starter named Gertrude in the fridge and feed her on Wednesdays.",
]

TURN_TEXTS = [
    "Hi again! I just booked flights to visit Ingrid in Lisbon for the first week of May. What does she teach there?",
    "Biscuit chewed a sofa cushion during last night's storm. Any ideas for a collie that is scared of thunderstorms?",
    "I want to bake something for Friday. Suggest a cake, and remember my allergies: which nuts must I avoid?",
    "The tyre warning light came on again this morning. Which tyre on the Subaru was the one losing pressure?",
    "I ran 28 km yesterday and my knee feels fine. Remind me: which marathon am I training for, and when?",
    "Halyard hit a snag: the Oracle export truncates long invoice notes. What was Halyard migrating to again?",
    "Mette practised her scales for an hour today. When is her cello exam, and which grade is it?",
    "The paint shop is out of the kitchen colour. What was the name of the colour we picked for the kitchen?",
    "I'm flying to Zürich on business next month. Which café did I say I like there, and where is it?",
    "Trains were cancelled today because of a strike. Which train do I usually take, and from where?",
    "The inspection date moved to the 14th. What did Mr Okafor want fixed before the inspection?",
    "It is Wednesday: what is my sourdough starter called, and what do I need to do today?",
    "I also started learning Portuguese on an app, twenty minutes a day. Could I practise with Ingrid in Lisbon?",
    "We adopted a second dog, a beagle called Pixel. Will Biscuit cope with a beagle, given the storms issue?",
    "For the marathon, should my Sunday long runs get longer or shorter in the last three weeks before Rotterdam?",
    "My manager wants a Halyard status update by Thursday. Draft three bullet points for the Postgres migration.",
    "Mette asked whether the cello exam includes sight reading. What should she practise this week for grade five?",
    "The kitchen painter can come on Saturday. Does the ceiling need the Sage Whisper too, or does it stay white?",
    "Pixel ate a bag of pistachios at the park. Should I worry, and is the allergy thing relevant for dogs too?",
    "Summing up: list everything I have planned for May and June, including Lisbon and the cello exam.",
]


def reply_bytes(turn: int) -> int:
    """The fake's reply size for a turn: 200-560 bytes of filler, varying like real answers."""
    return 200 + (turn * 137) % 361


# ---------------------------------------------------------------- one API's wire shape

class Conversation:
    """The client of one API: builds each request from its history and appends what it got back."""

    def __init__(self, api: str, system: str):
        self.api = api
        self.system = system
        self.history: list[dict] = []

    @property
    def target(self) -> str:
        return {"chat.completions": "/v1/chat/completions", "responses": "/v1/responses"}.get(self.api, "/v1/messages")

    def headers(self) -> dict[str, str]:
        if self.api.startswith("messages"):
            return {"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"}
        return {"Authorization": "Bearer sk-bench"}

    def request(self, user_text: str, history: bool = True) -> dict:
        past = self.history if history else []
        if self.api == "chat.completions":
            return {"model": "gpt-4o-mini",
                    "messages": [{"role": "system", "content": self.system}, *past,
                                 {"role": "user", "content": user_text}],
                    "temperature": 0.2, "max_tokens": 600}
        if self.api == "responses":
            # Stateless (no previous_response_id, store false): the client resends the input, as the Agents SDK
            # and pydantic-ai do with store disabled.
            return {"model": "gpt-4o-mini", "instructions": self.system,
                    "input": [*past, {"role": "user", "content": user_text}],
                    "store": False, "temperature": 0.2, "max_output_tokens": 600}
        system: object = self.system
        if self.api == "messages+cache_control":
            system = [{"type": "text", "text": self.system, "cache_control": {"type": "ephemeral"}}]
        return {"model": "claude-sonnet-4-5", "max_tokens": 600, "system": system,
                "messages": [*past, {"role": "user", "content": user_text}]}

    def append(self, user_text: str, response: dict) -> None:
        """The turn as a client keeps it: its own user message, then the reply as it came back."""
        if self.api == "chat.completions":
            message = response["choices"][0]["message"]
            self.history += [{"role": "user", "content": user_text},
                             {"role": "assistant", "content": message["content"]}]
        elif self.api == "responses":
            # The response's output items go back into the input verbatim (openai-python: `input += response.output`).
            self.history += [{"role": "user", "content": user_text}, *response["output"]]
        else:
            self.history += [{"role": "user", "content": user_text},
                             {"role": "assistant", "content": response["content"]}]


def encode(body: dict) -> bytes:
    # httpx's (hence the openai and anthropic SDKs') JSON encoding.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


# ---------------------------------------------------------------- processes and HTTP

def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


class Child:
    """A child process whose output lines are collected by a reader thread."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: pathlib.Path, name: str):
        self.name = name
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if m := re.search(pattern, line):
                        return m
                if self.proc.poll() is not None or time.monotonic() > end:
                    raise SystemExit(f"{self.name}: no /{pattern}/ (exit {self.proc.poll()}):\n" + "\n".join(self.lines[-20:]))
                self.cond.wait(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MEMPROXY_", "OPENAI_", "ANTHROPIC_"))}


def start_fake(workdir: pathlib.Path) -> tuple[Child, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = Child([str(BIN), "fake-upstream", "--listen", f"127.0.0.1:{port}"], clean_env(), workdir, "fake-upstream")
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 30
    while True:
        try:
            if http("GET", f"{url}/v1/models", timeout=2)[0] == 200:
                return child, url
        except OSError:
            pass
        if child.proc.poll() is not None or time.monotonic() > end:
            raise SystemExit("fake upstream did not start:\n" + "\n".join(child.lines[-20:]))
        time.sleep(0.05)


def start_proxy(workdir: pathlib.Path, upstream: str, placement: str) -> tuple[Child, str, pathlib.Path]:
    workdir.mkdir(parents=True)
    db = workdir / "memproxy.db"
    env = clean_env() | {
        "MEMPROXY_MEMORY_DATABASE": str(db),
        "MEMPROXY_LOG_FORMAT": "json",
        "MEMPROXY_MEMORY_PLACEMENT": placement,
        # A debug binary on a loaded machine must not fail open (no block) because recall was slow.
        "MEMPROXY_MEMORY_RECALL_TIMEOUT_MS": "30000",
    }
    child = Child([str(BIN), "serve", "--listen", "127.0.0.1:0", "--upstream", upstream], env, workdir, "memproxy")
    port = child.wait_for(r"listening on http://127\.0\.0\.1:(\d+)", 30).group(1)
    return child, f"http://127.0.0.1:{port}", db


def stored_memories(db: pathlib.Path) -> int:
    if not db.exists():
        return 0
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute("SELECT count(*) FROM memories WHERE session_id = ?", (SESSION,)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        connection.close()


def wait_stored(db: pathlib.Path, expected: int, timeout: float = 20.0) -> None:
    """Waits until the session holds `expected` memories, so every turn recalls against the same store."""
    end = time.monotonic() + timeout
    while (n := stored_memories(db)) < expected:
        if time.monotonic() > end:
            raise SystemExit(f"only {n} of {expected} memories stored after {timeout} s")
        time.sleep(0.02)


def upstream_requests(fake: str, target: str, last: int) -> tuple[int, list[bytes]]:
    status, _, body = http("GET", f"{fake}/v1/test/requests?target={target}&last={last}")
    assert status == 200, body
    data = json.loads(body)
    return data["count"], [base64.b64decode(r["body_base64"]) for r in data["requests"]]


# ---------------------------------------------------------------- analysis

def common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    low, high = 0, n  # binary search on slice equality: fast for 10-100 KB bodies
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def json_path_at(body: bytes, offset: int) -> str:
    """The JSON path of the innermost value of `body` spanning byte `offset` (`messages[last].content`)."""
    text = body.decode("utf-8")
    char_offset = len(body[:offset].decode("utf-8", "ignore"))
    best: list[str] = []

    def skip(i: int) -> int:
        while text[i] in " \t\r\n":
            i += 1
        return i

    def string_end(i: int) -> int:  # i at the opening quote
        i += 1
        while text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        return i + 1

    def value(i: int, path: list[str]) -> int:
        nonlocal best
        i = skip(i)
        start = i
        c = text[i]
        if c == "{":
            i = skip(i + 1)
            while text[i] != "}":
                key_end = string_end(i)
                key = json.loads(text[i:key_end])
                i = skip(key_end)
                i = value(i + 1, path + [f".{key}"])
                i = skip(i)
                if text[i] == ",":
                    i = skip(i + 1)
            end = i + 1
        elif c == "[":
            items: list[tuple[int, int]] = []
            i = skip(i + 1)
            index = 0
            while text[i] != "]":
                item_start = i
                i = skip(value(i, path + [f"[{index}]"]))
                items.append((item_start, i))
                index += 1
                if text[i] == ",":
                    i = skip(i + 1)
            end = i + 1
            if best[: len(path)] == path and len(best) > len(path) and best[len(path)] == f"[{index - 1}]":
                best = best[: len(path)] + ["[last]"] + best[len(path) + 1:]
        elif c == '"':
            end = string_end(i)
        else:
            end = i
            while end < len(text) and text[end] not in ",]} \t\r\n":
                end += 1
        if start <= char_offset < end and len(path) >= len(best):
            best = path
        return end

    value(0, [])
    return "".join(best).lstrip(".") or "(top level)"


# ---------------------------------------------------------------- one row

def run_row(fake: str, workdir: pathlib.Path, placement: str, api: str, system: str) -> dict:
    off = placement == "off"
    child, url, db = start_proxy(workdir, fake, "system" if off else placement)
    try:
        conversation = Conversation(api, system)
        base_headers = {"Content-Type": "application/json", "X-Session-Id": SESSION, **conversation.headers()}
        if off:
            base_headers["X-Memory-Mode"] = "off"

        def send(body: dict, turn: int) -> tuple[dict, int]:
            headers = base_headers | {"X-Fake-Reply-Bytes": str(reply_bytes(turn))}
            status, response_headers, raw = http("POST", url + conversation.target, encode(body), headers)
            if status != 200:
                raise SystemExit(f"{placement}/{api} turn {turn}: HTTP {status}: {raw[:500]!r}")
            if "x-memory-injected" not in response_headers and not off:
                raise SystemExit(f"{placement}/{api} turn {turn}: no X-Memory-Injected header (memory off?)")
            return json.loads(raw), int(response_headers.get("x-memory-injected", 0))

        # The earlier conversation: one fact per request, no history.
        if not off:
            for i, fact in enumerate(SEED_FACTS):
                send(conversation.request(fact, history=False), 100 + i)
            wait_stored(db, 2 * len(SEED_FACTS))

        bodies: list[bytes] = []
        injected: list[int] = []
        for turn, text in enumerate(TURN_TEXTS, start=1):
            before, _ = upstream_requests(fake, conversation.target, 0)
            response, count = send(conversation.request(text), turn)
            after, last = upstream_requests(fake, conversation.target, 1)
            if after != before + 1:
                raise SystemExit(f"{placement}/{api} turn {turn}: the upstream got {after - before} requests")
            bodies.append(last[0])
            injected.append(count)
            conversation.append(text, response)
            # Every turn recalls against the same store whatever the writer's pace: wait for this exchange.
            if not off:
                wait_stored(db, 2 * (len(SEED_FACTS) + turn))
    finally:
        child.stop()

    shares, paths = {}, {}
    for n in range(2, len(bodies) + 1):
        previous, current = bodies[n - 2], bodies[n - 1]
        lcp = common_prefix(previous, current)
        shares[n] = lcp / len(current)
        paths[n] = json_path_at(previous, lcp) if lcp < len(previous) else "(none: previous is a prefix)"
    measured = [shares[n] for n in range(3, TURNS + 1)]
    # The block's bytes as sent (JSON-escaped), from "<memory>" to "</memory>".
    blocks = [b.index(b"</memory>") + len(b"</memory>") - b.index(b"<memory>") for b in bodies if b"<memory>" in b]
    where = collections.Counter(paths[n] for n in range(3, TURNS + 1)).most_common(1)[0]
    worst = min(range(3, TURNS + 1), key=lambda n: shares[n])
    return {
        "placement": placement, "api": api, "bodies": bodies, "shares": shares, "paths": paths,
        "mean": sum(measured) / len(measured), "min": min(measured), "worst": worst,
        "injected": sum(injected) / len(injected), "injected_turns": sum(1 for c in injected if c > 0),
        "block_bytes": sum(blocks) / len(blocks) if blocks else 0, "at_90": sum(1 for x in measured if x >= 0.90),
        "where": f"{where[0]} ({where[1]}/{TURNS - 2})", "bytes": len(bodies[-1]),
    }


def explain(row: dict) -> None:
    """On stderr: the first difference between the worst turn's request and the one before it."""
    n = row["worst"]
    previous, current = row["bodies"][n - 2], row["bodies"][n - 1]
    lcp = common_prefix(previous, current)
    context = lambda body: body[max(0, lcp - 80): lcp + 80].decode("utf-8", "replace")
    print(f"  {row['placement']}/{row['api']}: turn {n} vs {n - 1}: first difference at byte {lcp:,} of "
          f"{len(current):,} ({row['paths'][n]})\n    turn {n - 1}: …{context(previous)!r}…\n"
          f"    turn {n}: …{context(current)!r}…", file=sys.stderr)


def main() -> None:
    if not BIN.exists():
        raise SystemExit(f"no memproxy binary at {BIN}: build it or set MEMPROXY_BIN")
    system = system_prompt()
    progress(f"binary {BIN}; system prompt {len(system):,} characters; {len(SEED_FACTS)} earlier facts, {TURNS} turns")
    with tempfile.TemporaryDirectory(prefix="memproxy-cache-") as tmp:
        fake_child, fake = start_fake(pathlib.Path(tmp))
        rows = []
        try:
            for placement in ROWS:
                for api in APIS:
                    row = run_row(fake, pathlib.Path(tmp) / f"{placement}-{api}", placement, api, system)
                    rows.append(row)
                    progress(f"{placement:9} {api:22} mean {row['mean']:.1%} min {row['min']:.1%} "
                             f"injected {row['injected']:.2f}/turn; first difference: {row['where']}")
                    progress("  share per turn 2-20: " + " ".join(f"{row['shares'][n]:.0%}" for n in range(2, TURNS + 1)))
        finally:
            fake_child.stop()

    print("Worst turn of each row: where its upstream request first differs from the previous turn's:", file=sys.stderr)
    for row in rows:
        explain(row)
    print()
    print(f"| placement | API | mean share turns 3–{TURNS} | min share turns 3–{TURNS} | turns ≥ 90% | "
          f"mean memories injected (turns with a block) | mean block bytes | turn {TURNS} request bytes | "
          f"first difference (most turns) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        placement = "off (X-Memory-Mode)" if row["placement"] == "off" else row["placement"]
        print(f"| {placement} | {row['api']} | {row['mean']:.1%} | {row['min']:.1%} | {row['at_90']}/{TURNS - 2} | "
              f"{row['injected']:.2f} ({row['injected_turns']}/{TURNS}) | {row['block_bytes']:,.0f} | "
              f"{row['bytes']:,} | `{row['where']}` |")
    print()
    target = [r for r in rows if r["placement"] == "last_user"]
    met = all(r["min"] >= 0.90 for r in target)
    print(f"Target (issue 11): with last_user, >= 90% from turn 3 on: {'met' if met else 'NOT met'} "
          f"(min over APIs {min(r['min'] for r in target):.1%}).")
    progress("done")


if __name__ == "__main__":
    main()

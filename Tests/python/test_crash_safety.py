"""Crash safety of the real binary: SIGKILL at a random moment of a write-heavy load loses nothing that was
acknowledged, and SIGTERM lets every in-flight exchange finish and be stored."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass

from conftest import deadline_loop, http as http_request, unique


@dataclass
class Outcome:
    session: str
    text: str
    stream: bool
    request_id: str | None = None
    completed: bool = False


def send_chat(port: int, outcome: Outcome, headers: dict[str, str] | None = None, timeout: float = 60) -> None:
    """One chat completion over its own connection; marks `outcome.completed` once the whole answer arrived."""
    body = json.dumps(
        {"model": "gpt-test", "stream": outcome.stream, "messages": [{"role": "user", "content": outcome.text}]}
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            body,
            {"Content-Type": "application/json", "X-Session-Id": outcome.session, **(headers or {})},
        )
        response = conn.getresponse()
        outcome.request_id = response.getheader("X-Memproxy-Request-Id")
        payload = response.read()
        if response.status != 200:
            return
        reply = f"echo: {outcome.text}"
        if outcome.stream:
            events = [json.loads(e[6:]) for e in payload.decode().split("\n\n") if e.startswith("data: {")]
            content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
            outcome.completed = payload.endswith(b"data: [DONE]\n\n") and content == reply
        else:
            outcome.completed = json.loads(payload)["choices"][0]["message"]["content"] == reply
    finally:
        conn.close()


def exchanges_by_id(db, exchange_ids: list[str]) -> dict[str, dict[str, tuple[str, str]]]:
    """exchange id → role → (content, metadata), read after the server is gone."""
    connection = sqlite3.connect(db)
    try:
        found: dict[str, dict[str, tuple[str, str]]] = {}
        for exchange_id in exchange_ids:
            rows = connection.execute(
                "SELECT role, content, metadata FROM memories WHERE exchange_id = ?", (exchange_id,)
            ).fetchall()
            found[exchange_id] = {role: (content, metadata) for role, content, metadata in rows}
        return found
    finally:
        connection.close()


def test_sigkill_during_write_heavy_load_loses_nothing_acknowledged(proxies, fake_upstream, tmp_path):
    seed = int(os.environ.get("MEMPROXY_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"\ncrash seed {seed} (rerun with MEMPROXY_CRASH_SEED={seed})")
    proxy = proxies(fake_upstream.url, workdir=tmp_path / "crash")
    sessions = [unique(f"crash{n}") for n in range(40)]
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(number: int) -> None:
        local = random.Random(seed * 100 + number)
        count = 0
        while not stop.is_set():
            count += 1
            outcome = Outcome(
                session=local.choice(sessions),
                text=f"worker {number} item {count} token{number}x{count} " + "filler " * local.randint(0, 60),
                stream=local.random() < 0.5,
            )
            with lock:
                outcomes.append(outcome)
            try:
                send_chat(proxy.port, outcome, timeout=10)
            except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError):
                if stop.is_set():
                    return

    workers = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(12)]
    for thread in workers:
        thread.start()
    # Load until a first batch is acknowledged, then kill at a random moment.
    for _ in deadline_loop(60, "the first 200 acknowledged exchanges", 0.02):
        if len(proxy.stored_ids()) >= 200:
            break
    time.sleep(rng.uniform(0.0, 3.0))
    os.kill(proxy.child.pid, signal.SIGKILL)
    stop.set()
    proxy.child.proc.wait(10)
    for thread in workers:
        thread.join(20)
    proxy.child.stop()  # drains the log reader: every line written before the kill is in
    assert proxy.child.proc.returncode == -signal.SIGKILL

    acknowledged = proxy.stored_ids()
    must_survive = [o for o in outcomes if o.completed and o.request_id in acknowledged]
    print(f"{len(outcomes)} requests, {sum(o.completed for o in outcomes)} completed, {len(acknowledged)} acknowledged, "
          f"{len(must_survive)} both")
    assert len(must_survive) >= 200

    connection = sqlite3.connect(proxy.db)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # Every session's bookkeeping agrees with its rows (recall's in-memory index is built from them).
        assert connection.execute(
            "SELECT count(*) FROM sessions s WHERE memory_count != (SELECT count(*) FROM memories m WHERE m.session_id = s.session_id)"
        ).fetchone() == (0,)
    finally:
        connection.close()
    stored = exchanges_by_id(proxy.db, [acknowledged[o.request_id] for o in must_survive])
    for outcome in must_survive:
        exchange = stored[acknowledged[outcome.request_id]]
        assert exchange.get("user", (None,))[0] == outcome.text, f"lost: {outcome}"
        assert exchange.get("assistant", (None,))[0] == f"echo: {outcome.text}", f"lost reply: {outcome}"
        assert "incomplete" not in exchange["assistant"][1]

    # The server starts again at once on the crashed database and serves, memory included.
    started = time.monotonic()
    again = proxies(fake_upstream.url, workdir=tmp_path / "crash", db=proxy.db)
    assert http_request("GET", f"{again.url}/healthz")[0] == 200
    print(f"restart to first answer: {time.monotonic() - started:.2f}s")
    survivor = must_survive[0]
    question = f"what about {survivor.text.split()[4]}?"
    status, headers, _ = http_request(
        "POST",
        f"{again.url}/v1/chat/completions",
        json.dumps({"model": "m", "messages": [{"role": "user", "content": question}]}).encode(),
        {"Content-Type": "application/json", "X-Session-Id": survivor.session},
    )
    assert status == 200
    assert int(headers["x-memory-injected"]) >= 1
    again.wait_stored(headers["x-memproxy-request-id"])
    assert time.monotonic() - started < 15


def test_sigterm_during_load_finishes_and_stores_every_in_flight_exchange(proxies, fake_upstream):
    proxy = proxies(fake_upstream.url)
    outcomes = [
        Outcome(session=unique(f"term{n % 6}"), text=f"graceful {n} " + " ".join(f"w{k}" for k in range(25)),
                stream=n % 3 != 0)
        for n in range(24)
    ]
    # Streams are paced 60 ms per event, non-streamed answers trickle byte by byte: all take 1.5-2 s.
    pacing = [{"X-Fake-Delay-Ms": "60"} if o.stream else {"X-Fake-Byte-Delay-Ms": "4"} for o in outcomes]
    threads = [threading.Thread(target=send_chat, args=(proxy.port, o, h), daemon=True) for o, h in zip(outcomes, pacing)]
    for thread in threads:
        thread.start()
    # SIGTERM once every request is in flight (the fake upstream has seen them all).
    markers = {o.text.encode() for o in outcomes}
    for _ in deadline_loop(30, "all 24 requests to reach the upstream", 0.02):
        _, recent = fake_upstream.requests(last=200)
        if all(any(marker in r["body"] for r in recent) for marker in markers):
            break
    in_flight = sum(t.is_alive() for t in threads)
    proxy.child.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(60)
    code = proxy.child.proc.wait(60)
    assert in_flight == len(outcomes), f"only {in_flight} requests were still running at SIGTERM"
    assert code == 0, proxy.child.tail()
    assert [o.text for o in outcomes if not o.completed] == []
    proxy.child.stop()
    acknowledged = proxy.stored_ids()
    assert all(o.request_id in acknowledged for o in outcomes), "an in-flight exchange was not acknowledged"
    stored = exchanges_by_id(proxy.db, [acknowledged[o.request_id] for o in outcomes])
    for outcome in outcomes:
        exchange = stored[acknowledged[outcome.request_id]]
        assert exchange["user"][0] == outcome.text
        assert exchange["assistant"] == (f"echo: {outcome.text}", "{}")

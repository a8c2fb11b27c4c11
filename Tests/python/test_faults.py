"""Faults against the real binary: 1,000 client disconnects mid-stream (no leaked fds, threads or transfers), the
memory store's file removed, locked, or on a full disk (fail-open)."""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest

from conftest import deadline_loop, http, query_db, unique


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads line")


def metric(proxy, name: str) -> float:
    _, _, body = http("GET", f"{proxy.url}/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_idle(proxy) -> None:
    """Polls until no request is in flight and no upstream transfer is active."""
    for _ in deadline_loop(30, "in-flight requests and upstream transfers to drain", 0.05):
        if metric(proxy, "http_server_requests_in_flight") <= 1 and metric(proxy, "upstream_transfers_active") == 0:
            break


def chat_request(text: str, session: str | None, stream: bool, extra: dict[str, str] | None = None) -> bytes:
    body = json.dumps({"model": "gpt-test", "stream": stream, "messages": [{"role": "user", "content": text}]})
    headers = {"Host": "127.0.0.1", "Content-Type": "application/json", "Content-Length": str(len(body))}
    if session:
        headers["X-Session-Id"] = session
    headers.update(extra or {})
    head = "POST /v1/chat/completions HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body.encode()


def disconnect_mid_stream(port: int, session: str | None, index: int, reset: bool) -> None:
    """Starts a long stream, reads until the first content event has arrived, then goes away."""
    words = " ".join(f"word{n}" for n in range(80))
    request = chat_request(f"disconnect {index} {words}", session, True, {"X-Fake-Delay-Ms": "20"})
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(request)
        received = b""
        while b'"content":"echo: "' not in received:
            chunk = conn.recv(65536)
            assert chunk, f"connection closed before the stream started: {received[:300]!r}"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200"), received[:200]
        if reset:
            # RST instead of FIN: the abrupt way clients die.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def test_a_thousand_client_disconnects_mid_stream_leak_nothing(proxies, fake_upstream):
    proxy = proxies(fake_upstream.url)
    pid = proxy.child.pid
    session = unique("disconnects")

    def run(count: int, offset: int) -> None:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            futures = [
                pool.submit(disconnect_mid_stream, proxy.port, session if i % 2 == 0 else None, offset + i, i % 4 == 1)
                for i in range(count)
            ]
            for future in futures:
                future.result()

    # Warm up: thread pools, database connections and the connection cache reach their working size.
    run(100, 0)
    wait_idle(proxy)
    fds_before, threads_before = open_fds(pid), threads(pid)
    started = time.monotonic()
    run(1000, 100)
    wait_idle(proxy)
    elapsed = time.monotonic() - started
    fds_after, threads_after = open_fds(pid), threads(pid)
    print(f"\n1,000 disconnects in {elapsed:.1f}s: fds {fds_before} -> {fds_after}, "
          f"threads {threads_before} -> {threads_after}")
    # Every leaked transfer would hold an upstream socket (and a leaked client connection its own): 1,000 of them.
    assert fds_after <= fds_before + 10, f"fd leak: {fds_before} -> {fds_after}"
    assert threads_after <= threads_before + 4, f"thread leak: {threads_before} -> {threads_after}"
    assert metric(proxy, "upstream_transfers_active") == 0
    # The server is still healthy, and the cut-short exchanges with a session were stored as incomplete.
    assert http("GET", f"{proxy.url}/healthz")[0] == 200
    for _ in deadline_loop(30, "the 550 incomplete exchanges to be stored", 0.1):
        if len(proxy.logs("memory.exchange_stored")) >= 550:
            break
    rows = proxy.db_rows("SELECT metadata FROM memories WHERE session_id = ? AND role = 'assistant'", (session,))
    assert len(rows) == 550 and all('"incomplete":true' in m for (m,) in rows)


# MARK: - the memory store becomes unavailable


def chat(proxy, text: str, session: str, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    body = json.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": text}]}).encode()
    all_headers = {"Content-Type": "application/json", "X-Session-Id": session, **(headers or {})}
    status, response_headers, raw = http("POST", f"{proxy.url}/v1/chat/completions", body, all_headers)
    return status, response_headers, json.loads(raw)


def test_database_file_removed_while_serving(proxies, fake_upstream, tmp_path):
    proxy = proxies(fake_upstream.url)
    session = unique("removed")
    status, headers, _ = chat(proxy, "My boat is called Nautilus", session)
    assert status == 200
    proxy.wait_stored(headers["x-memproxy-request-id"])
    for suffix in ("", "-wal", "-shm"):
        pathlib.Path(f"{proxy.db}{suffix}").unlink()
    for n in range(20):
        status, headers, body = chat(proxy, f"What is my boat called? {n}", session)
        assert status == 200
        assert body["choices"][0]["message"]["content"] == f"echo: What is my boat called? {n}"
        assert headers.get("x-memory-error", "store_unavailable") == "store_unavailable"
    assert http("GET", f"{proxy.url}/healthz")[0] == 200
    assert proxy.child.stop() == 0, proxy.child.tail()
    # The next start creates a fresh database at the same path and serves at once.
    again = proxies(fake_upstream.url, db=proxy.db)
    status, headers, _ = chat(again, "hello again", session)
    assert status == 200 and headers["x-memory-injected"] == "0"
    again.wait_stored(headers["x-memproxy-request-id"])


def lock_out_readers(db: pathlib.Path) -> int:
    """Takes, from this process, the WAL read-mark locks every SQLite reader needs (bytes 123-127 of the -shm
    file), as a stuck backup tool or another writer's recovery would. Returns the fd; closing it unlocks.

    The lock is taken blocking: the proxy's own transactions hold a read mark only while they run (e.g. the
    writer's first idle-time pass, which begins right after the first exchange is acknowledged), so waiting for
    them is waiting for a lock SQLite is about to release, not a sleep."""
    fd = os.open(f"{db}-shm", os.O_RDWR)

    def give_up(signum, frame):
        raise TimeoutError("a reader of the proxy held a WAL read mark for 10 s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(10)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX, 5, 123)
    except BaseException:
        os.close(fd)
        raise
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return fd


@pytest.mark.parametrize("fail_open", [True, False])
def test_database_locked_by_another_process(proxies, fake_upstream, fail_open):
    env = {"MEMPROXY_MEMORY_RECALL_TIMEOUT_MS": "500"}
    if not fail_open:
        env["MEMPROXY_MEMORY_FAIL_OPEN"] = "false"
    proxy = proxies(fake_upstream.url, env=env)
    session = unique("locked")
    status, headers, _ = chat(proxy, "The vault code is 9031", session)
    assert status == 200
    proxy.wait_stored(headers["x-memproxy-request-id"])
    fd = lock_out_readers(proxy.db)
    try:
        started = time.monotonic()
        status, headers, body = chat(proxy, "What is the vault code?", session)
        elapsed = time.monotonic() - started
        if fail_open:
            assert status == 200, body
            assert body["choices"][0]["message"]["content"] == "echo: What is the vault code?"
            assert headers["x-memory-error"] == "store_unavailable"
            assert headers["x-memory-injected"] == "0"
        else:
            assert status == 503, body
            assert body["error"]["code"] == "memory_unavailable"
        # The log line is written before the response, but reaches our pipe reader asynchronously.
        proxy.child.wait_for_line(lambda line: '"memory.recall_failed"' in line, 10, "the memory.recall_failed log line")
        # memory.recall_timeout_ms bounds the wait (500 ms here, plus the upstream round trip).
        assert elapsed < 5, f"a locked store held the request for {elapsed:.1f}s"
        assert http("GET", f"{proxy.url}/healthz")[0] == 200
    finally:
        os.close(fd)
    # Once the lock is gone memory works again.
    status, headers, _ = chat(proxy, "What is the vault code now?", session)
    assert status == 200 and int(headers["x-memory-injected"]) >= 1


def test_a_current_session_is_recalled_from_memory_while_the_database_is_locked(proxies, fake_upstream):
    """Once a session's in-memory index is current (read from the database once, then extended by the writer), its
    recalls need no database read at all: a database locked by another process does not take its memory away."""
    proxy = proxies(fake_upstream.url, env={"MEMPROXY_MEMORY_RECALL_TIMEOUT_MS": "500"})
    session = unique("current")
    status, headers, _ = chat(proxy, "The vault code is 9031", session)
    assert status == 200
    proxy.wait_stored(headers["x-memproxy-request-id"])
    status, headers, _ = chat(proxy, "Please remember the vault code", session)
    assert status == 200 and int(headers["x-memory-injected"]) >= 1
    proxy.wait_stored(headers["x-memproxy-request-id"])
    fd = lock_out_readers(proxy.db)
    try:
        status, headers, body = chat(proxy, "What is the vault code?", session)
        assert status == 200, body
        assert "x-memory-error" not in headers, headers
        assert int(headers["x-memory-injected"]) >= 1
    finally:
        os.close(fd)


def test_disk_full(proxies, fake_upstream, tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")
    proxy = None
    try:
        proxy = proxies(fake_upstream.url, db=mount / "memproxy.db")
        session = unique("diskfull")
        status, headers, _ = chat(proxy, "remember the first word: apricot", session)
        proxy.wait_stored(headers["x-memproxy-request-id"])
        # Fill the disk to the last byte.
        filler = mount / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
        os.close(fd)
        for n in range(5):
            text = f"disk is full, storing must fail quietly {n} " + "x" * 20000
            status, headers, body = chat(proxy, text, session)
            assert status == 200
            assert body["choices"][0]["message"]["content"] == f"echo: {text}"
        for _ in deadline_loop(15, "the writer to report the failed batch"):
            if proxy.logs("memory batch failed") or proxy.logs("memory write failed"):
                break
        assert http("GET", f"{proxy.url}/healthz")[0] == 200
        # Space comes back: storing resumes, and what was stored before is intact.
        filler.unlink()
        status, headers, _ = chat(proxy, "the disk has room again: banana", session)
        assert status == 200
        proxy.wait_stored(headers["x-memproxy-request-id"])
        assert proxy.child.stop() == 0
        assert query_db(proxy.db, "PRAGMA integrity_check") == [("ok",)]
        contents = [c for _, c, _, _ in proxy.memories(session)]
        assert "remember the first word: apricot" in contents
        assert "the disk has room again: banana" in contents
    finally:
        if proxy is not None:
            proxy.child.stop()
        subprocess.run(["umount", "-l", str(mount)], check=False)

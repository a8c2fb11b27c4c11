"""Fixtures that run the built memproxy binary (and its fake upstream) as child processes on loopback.

Nothing is built here: the binary comes from MEMPROXY_BIN (default .build/debug/memproxy). Every process gets
port 0 and reports the port it bound, so tests never race other processes for a port.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.request
from typing import Callable, Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("MEMPROXY_BIN", ROOT / ".build" / "debug" / "memproxy")).resolve()
STARTUP_SECONDS = 30.0


def deadline_loop(seconds: float, what: str, interval: float = 0.01) -> Iterator[None]:
    """Yields until `seconds` have passed, then fails: `for _ in deadline_loop(...): if done: break`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        yield
        time.sleep(interval)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


class Child:
    """A child process whose stdout+stderr lines are collected by a reader thread."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: pathlib.Path, name: str):
        self.name = name
        self.args = args
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    def json_lines(self) -> list[dict]:
        out = []
        for line in self.lines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        end = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self._lines)
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"{self.name} exited ({self.proc.returncode}) before {what}:\n{self.tail()}")
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {what} from {self.name}:\n{self.tail()}")
                self._cond.wait(remaining)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.lines()[-n:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)
        return self.proc.returncode


def base_env() -> dict[str, str]:
    """The test's environment without any MEMPROXY_* or OPENAI_* settings that could leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MEMPROXY_", "OPENAI_"))}


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


class FakeUpstream:
    def __init__(self, child: Child, port: int):
        self.child = child
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def requests(self, target: str = "/v1/chat/completions", last: int = 50) -> tuple[int, list[dict]]:
        """How many requests with this target prefix the fake received, and the last `last` of them."""
        status, _, body = http("GET", f"{self.url}/v1/test/requests?target={target}&last={last}")
        assert status == 200, body
        data = json.loads(body)
        for request in data["requests"]:
            request["body"] = base64.b64decode(request.pop("body_base64"))
            request["headers"] = {h["name"].lower(): h["value"] for h in request["headers"]}
        return data["count"], data["requests"]

    def count(self, target: str) -> int:
        """How many requests with this target prefix the fake has received so far."""
        return self.requests(target, last=0)[0]

    def since(self, target: str, before: int) -> list[dict]:
        """The requests with this target prefix received after `count(target)` returned `before`, oldest first."""
        total, _ = self.requests(target, last=0)
        if total == before:
            return []
        _, recent = self.requests(target, last=total - before)
        return recent


def start_fake_upstream(tmp: pathlib.Path) -> FakeUpstream:
    # fake-upstream prints its port with a buffered print: pick a free port instead of parsing its output.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = Child([str(BIN), "fake-upstream", "--listen", f"127.0.0.1:{port}"], base_env(), tmp, "fake-upstream")
    fake = FakeUpstream(child, port)
    for _ in deadline_loop(STARTUP_SECONDS, "the fake upstream to answer"):
        assert child.proc.poll() is None, f"fake upstream exited:\n{child.tail()}"
        try:
            if http("GET", f"{fake.url}/v1/models", timeout=2)[0] == 200:
                break
        except OSError:
            pass
    return fake


class Proxy:
    def __init__(self, child: Child, port: int, db: pathlib.Path, workdir: pathlib.Path):
        self.child = child
        self.port = port
        self.db = db
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.url}/v1"

    def logs(self, msg: str | None = None) -> list[dict]:
        entries = self.child.json_lines()
        return [e for e in entries if msg is None or e.get("msg") == msg]

    def stored_ids(self) -> dict[str, str]:
        """request.id → exchange id, for every exchange the server acknowledged as committed."""
        return {e["request.id"]: e["memory.exchange_id"] for e in self.logs("memory.exchange_stored")}

    def wait_stored(self, request_id: str, timeout: float = 15.0) -> str:
        line = self.child.wait_for_line(
            lambda l: '"memory.exchange_stored"' in l and f'"request.id":"{request_id}"' in l,
            timeout,
            f"memory.exchange_stored for {request_id}",
        )
        return json.loads(line)["memory.exchange_id"]

    def db_rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        return query_db(self.db, sql, args)

    def memories(self, session: str) -> list[tuple[str, str, str, str]]:
        """(role, content, metadata, exchange_id) of a session's memories, oldest first."""
        return self.db_rows(
            "SELECT role, content, metadata, exchange_id FROM memories WHERE session_id = ? ORDER BY seq", (session,)
        )


def query_db(path: pathlib.Path, sql: str, args: tuple = ()) -> list[tuple]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


def start_proxy(workdir: pathlib.Path, upstream: str, env: dict[str, str] | None = None,
                db: pathlib.Path | None = None, name: str = "memproxy") -> Proxy:
    workdir.mkdir(parents=True, exist_ok=True)
    db = db or workdir / "memproxy.db"
    environment = base_env()
    environment["MEMPROXY_MEMORY_DATABASE"] = str(db)
    environment["MEMPROXY_LOG_FORMAT"] = "json"
    # The 250 ms default suits release builds; a loaded CI machine running the debug binary must not fail open.
    environment["MEMPROXY_MEMORY_RECALL_TIMEOUT_MS"] = "30000"
    environment.update(env or {})
    # cwd has no proxy.conf, so only the defaults, the environment and the flags apply.
    child = Child(
        [str(BIN), "serve", "--listen", "127.0.0.1:0", "--upstream", upstream], environment, workdir, name
    )
    line = child.wait_for_line(lambda l: "listening on http://" in l, STARTUP_SECONDS, "the listening line")
    port = int(re.search(r"listening on http://127\.0\.0\.1:(\d+)", line).group(1))
    return Proxy(child, port, db, workdir)


@pytest.fixture(scope="session")
def binary() -> pathlib.Path:
    if not BIN.exists():
        pytest.fail(f"memproxy binary not found at {BIN}: build it (swift build --product memproxy) or set MEMPROXY_BIN")
    return BIN


@pytest.fixture(scope="session")
def fake_upstream(binary, tmp_path_factory) -> Iterator[FakeUpstream]:
    fake = start_fake_upstream(tmp_path_factory.mktemp("fake"))
    yield fake
    fake.child.stop()


@pytest.fixture(scope="module")
def proxy(binary, fake_upstream, tmp_path_factory) -> Iterator[Proxy]:
    """One memproxy shared by a module's tests (each test uses its own session ids)."""
    instance = start_proxy(tmp_path_factory.mktemp("proxy"), fake_upstream.url)
    yield instance
    code = instance.child.stop()
    assert code == 0, f"memproxy exited {code} on SIGTERM:\n{instance.child.tail()}"


@pytest.fixture
def proxies(binary, tmp_path) -> Iterator[Callable[..., Proxy]]:
    """Starts extra memproxy instances with their own settings; stops them after the test."""
    started: list[Proxy] = []

    def start(upstream: str, env: dict[str, str] | None = None, db: pathlib.Path | None = None,
              workdir: pathlib.Path | None = None) -> Proxy:
        instance = start_proxy(workdir or tmp_path / f"proxy{len(started)}", upstream, env, db)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.child.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns()}"


def memory_block(text: str) -> str:
    """The one `<memory>` … `</memory>` block inside `text` (fails when there is none or more than one)."""
    assert text.count("<memory>") == 1 and text.count("</memory>") == 1, f"not exactly one memory block in {text!r}"
    start = text.index("<memory>")
    return text[start : text.index("</memory>") + len("</memory>")]


def block_lines(block: str) -> list[str]:
    """The memory lines of a block (`- [date] role: content`), without its header and footer."""
    return [line for line in block.split("\n") if line.startswith("- [")]


def json_members(body: bytes) -> dict[str, bytes]:
    """The raw bytes of each top-level member value of a JSON object, to compare fields byte for byte."""
    text = body.decode("utf-8")
    decoder = json.JSONDecoder()
    members: dict[str, bytes] = {}
    position = _skip_json_space(text, 0)
    assert text[position] == "{", "not a JSON object"
    position = _skip_json_space(text, position + 1)
    while text[position] != "}":
        key, position = decoder.raw_decode(text, position)
        position = _skip_json_space(text, position)
        assert text[position] == ":"
        start = _skip_json_space(text, position + 1)
        _, end = decoder.raw_decode(text, start)
        members[key] = text[start:end].encode("utf-8")
        position = _skip_json_space(text, end)
        if text[position] == ",":
            position = _skip_json_space(text, position + 1)
    return members


def _skip_json_space(text: str, position: int) -> int:
    while text[position] in " \t\r\n":
        position += 1
    return position


def parse_tool_call(line: str) -> tuple[str, object]:
    """`tool_call name(<arguments JSON>)`, as memproxy stores a tool call, split into the name and parsed arguments."""
    match = re.fullmatch(r"tool_call ([^(]+)\((.*)\)", line, re.DOTALL)
    assert match, f"not a stored tool call: {line!r}"
    return match.group(1), json.loads(match.group(2))

"""A minimal Chrome DevTools Protocol client for the dashboard's browser tests.

It launches headless Chromium with a throw-away profile on a DevTools port the browser picks itself (the port is read
from the `DevTools listening on ws://…` line Chromium prints on stderr), speaks CDP over one WebSocket with flattened
target sessions, and offers what the tests need: navigate and wait for the load event (with the document's response
status), evaluate JavaScript, wait for a DOM condition, set the viewport, take PNG screenshots, press keys and read
cookies. Every wait is on an event or a condition with a deadline; nothing sleeps a fixed time to synchronise.

    with Browser.launch() as browser:
        page = browser.new_page()
        response = page.navigate("http://127.0.0.1:8080/ui")
        assert response.status == 200
        page.screenshot(pathlib.Path("ui.png"))

The only third-party dependency is `websocket-client` (imported when a browser is launched).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

LAUNCH_SECONDS = 30.0
COMMAND_SECONDS = 30.0
NAVIGATION_SECONDS = 30.0

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """The browser to drive: $MEMPROXY_CHROMIUM, else the first of the usual names on PATH."""
    configured = os.environ.get("MEMPROXY_CHROMIUM")
    if configured:
        return shutil.which(configured) or (configured if os.access(configured, os.X_OK) else None)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class CDPError(Exception):
    """A CDP command answered with an error, or the browser went away."""


class JavaScriptError(Exception):
    """Runtime.evaluate threw (or rejected)."""


@dataclass
class Response:
    """The main document's response of a navigation (the final one when redirects were followed)."""

    status: int
    url: str
    headers: dict[str, str]
    mime_type: str
    redirects: list[tuple[int, str]] = field(default_factory=list)  # (status, url) of each redirect, in order


class Connection:
    """One WebSocket to the browser endpoint; a reader thread routes answers by id and keeps every event."""

    def __init__(self, url: str):
        import websocket  # websocket-client

        # Chromium refuses DevTools WebSockets whose Origin it does not allow; send none.
        self._ws = websocket.create_connection(url, timeout=COMMAND_SECONDS, suppress_origin=True, enable_multithread=True)
        self._ws.settimeout(None)
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._answers: dict[int, dict] = {}
        self._events: list[dict] = []  # every event, in arrival order; its index is its sequence number
        self._closed: str | None = None
        self._send_lock = threading.Lock()
        self._event_hooks: list[Callable[[dict], None]] = []
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        reason = "the DevTools connection closed"
        try:
            while True:
                raw = self._ws.recv()
                if not raw:
                    break
                message = json.loads(raw)
                with self._cond:
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self._events.append(message)
                    self._cond.notify_all()
                if "id" not in message:
                    for hook in list(self._event_hooks):
                        hook(message)
        except Exception as error:  # the socket closed under us (browser exit) or garbage arrived
            reason = f"the DevTools connection failed: {error!r}"
        with self._cond:
            self._closed = reason
            self._cond.notify_all()

    def on_event(self, hook: Callable[[dict], None]) -> None:
        """Calls `hook(event)` on the reader thread for every event (it must not wait for answers)."""
        self._event_hooks.append(hook)

    def post(self, method: str, params: dict | None = None, session_id: str | None = None) -> int:
        """Sends a command without waiting; returns its id."""
        command_id = next(self._ids)
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        with self._send_lock:
            if self._closed:
                raise CDPError(self._closed)
            self._ws.send(json.dumps(message))
        return command_id

    def send(self, method: str, params: dict | None = None, session_id: str | None = None,
             timeout: float = COMMAND_SECONDS) -> dict:
        command_id = self.post(method, params, session_id)
        end = time.monotonic() + timeout
        with self._cond:
            while command_id not in self._answers:
                if self._closed:
                    raise CDPError(f"{method}: {self._closed}")
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise CDPError(f"{method}: no answer within {timeout}s")
                self._cond.wait(remaining)
            answer = self._answers.pop(command_id)
        if "error" in answer:
            raise CDPError(f"{method}: {answer['error'].get('message')} {answer['error'].get('data', '')}".strip())
        return answer.get("result", {})

    def mark(self) -> int:
        """The sequence number the next event will get: pass it as `after` to wait for events from now on."""
        with self._cond:
            return len(self._events)

    def events(self, after: int = 0, method: str | None = None, session_id: str | None = None) -> list[dict]:
        with self._cond:
            selected = self._events[after:]
        return [
            e for e in selected
            if (method is None or e.get("method") == method) and (session_id is None or e.get("sessionId") == session_id)
        ]

    def wait_event(self, method: str, after: int, predicate: Callable[[dict], bool] = lambda params: True,
                   session_id: str | None = None, timeout: float = NAVIGATION_SECONDS) -> dict:
        """The first event `method` from sequence `after` on whose params satisfy `predicate`; fails at the deadline."""
        end = time.monotonic() + timeout
        position = after
        with self._cond:
            while True:
                for event in self._events[position:]:
                    if (event.get("method") == method and (session_id is None or event.get("sessionId") == session_id)
                            and predicate(event.get("params", {}))):
                        return event
                position = len(self._events)
                if self._closed:
                    raise CDPError(f"waiting for {method}: {self._closed}")
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise CDPError(f"no {method} event within {timeout}s")
                self._cond.wait(remaining)

    def close(self) -> None:
        try:
            self._ws.close()
        except Exception:
            pass
        self._reader.join(5)


KEYS = {
    # key: (code, windowsVirtualKeyCode, text)
    "Tab": ("Tab", 9, None),
    "Enter": ("Enter", 13, "\r"),
    "Escape": ("Escape", 27, None),
    " ": ("Space", 32, " "),
}


class Page:
    """One page target, attached with its own flattened session."""

    def __init__(self, browser: "Browser", target_id: str, session_id: str, context_id: str | None):
        self.browser = browser
        self.connection = browser.connection
        self.target_id = target_id
        self.session_id = session_id
        self.context_id = context_id
        self.viewport = (1280, 900)
        self.send("Page.enable")
        self.send("Network.enable")
        self.send("Runtime.enable")
        # Keyboard focus behaves as in a focused window even though nothing is on screen.
        self.send("Emulation.setFocusEmulationEnabled", {"enabled": True})
        self.send("Page.bringToFront")
        self.frame_id = self.send("Page.getFrameTree")["frameTree"]["frame"]["id"]

    # MARK: plumbing

    def send(self, method: str, params: dict | None = None, timeout: float = COMMAND_SECONDS) -> dict:
        return self.connection.send(method, params, self.session_id, timeout)

    def mark(self) -> int:
        return self.connection.mark()

    def events(self, method: str | None = None, after: int = 0) -> list[dict]:
        return [e.get("params", {}) for e in self.connection.events(after, method, self.session_id)]

    def wait_event(self, method: str, after: int, predicate: Callable[[dict], bool] = lambda params: True,
                   timeout: float = NAVIGATION_SECONDS) -> dict:
        return self.connection.wait_event(method, after, predicate, self.session_id, timeout)["params"]

    # MARK: navigation

    def navigate(self, url: str, timeout: float = NAVIGATION_SECONDS) -> Response:
        """Loads `url` in the page, waits for its load event and returns the document's (final) response."""
        return self.wait_navigation(lambda: self._start_navigation(url), timeout)

    def _start_navigation(self, url: str) -> None:
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigating to {url}: {result['errorText']}")

    def wait_navigation(self, action: Callable[[], Any], timeout: float = NAVIGATION_SECONDS) -> Response:
        """Runs `action` (which makes the main frame navigate: a form submit, a click, Page.navigate), waits for the
        new document's load event and returns its response."""
        after = self.mark()
        action()
        self.wait_event("Page.loadEventFired", after, timeout=timeout)
        return self.document_response(after)

    def document_response(self, after: int) -> Response:
        """The main frame's last document response since `after`, with the redirects that led to it."""
        responses = [
            p for p in self.events("Network.responseReceived", after)
            if p.get("type") == "Document" and p.get("frameId") == self.frame_id
        ]
        if not responses:
            raise CDPError("the navigation received no document response")
        final = responses[-1]
        redirects = [
            (p["redirectResponse"]["status"], p["redirectResponse"]["url"])
            for p in self.events("Network.requestWillBeSent", after)
            if p.get("requestId") == final["requestId"] and p.get("redirectResponse")
        ]
        response = final["response"]
        return Response(
            status=int(response["status"]),
            url=response["url"],
            headers={k.lower(): v for k, v in response.get("headers", {}).items()},
            mime_type=response.get("mimeType", ""),
            redirects=redirects,
        )

    def requested_urls(self, after: int = 0) -> list[str]:
        """Every URL the page requested since `after` (documents, styles, scripts, images, fetches, event streams)."""
        return [p["request"]["url"] for p in self.events("Network.requestWillBeSent", after)]

    # MARK: JavaScript

    def evaluate(self, expression: str, timeout: float = COMMAND_SECONDS) -> Any:
        """Evaluates `expression` in the page (awaiting a promise) and returns its value as JSON."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True, "userGesture": True},
            timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text")
            raise JavaScriptError(f"{description}\n  in: {expression[:300]}")
        return result.get("result", {}).get("value")

    def wait_for(self, condition: str, timeout: float = 15.0, what: str | None = None) -> Any:
        """Waits until the JavaScript expression `condition` is truthy, re-checked on every DOM mutation (and every
        100 ms for changes the DOM does not show); returns its value, fails at the deadline."""
        milliseconds = int(timeout * 1000)
        script = f"""new Promise((resolve, reject) => {{
            let observer = null, interval = null, timer = null;
            const finish = () => {{ if (observer) observer.disconnect(); clearInterval(interval); clearTimeout(timer); }};
            const check = () => {{
                let value;
                try {{ value = (() => ({condition}))(); }} catch (e) {{ value = undefined; }}
                if (value) {{ finish(); resolve(value); return true; }}
                return false;
            }};
            if (check()) return;
            observer = new MutationObserver(check);
            observer.observe(document, {{subtree: true, childList: true, characterData: true, attributes: true}});
            interval = setInterval(check, 100);
            timer = setTimeout(() => {{ finish(); reject(new Error("timed out")); }}, {milliseconds});
        }})"""
        try:
            return self.evaluate(script, timeout + 10)
        except JavaScriptError as error:
            if "timed out" in str(error):
                raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}") from None
            raise

    def exceptions(self, after: int = 0) -> list[str]:
        """Uncaught script errors in the page since `after`."""
        out = []
        for params in self.events("Runtime.exceptionThrown", after):
            details = params.get("exceptionDetails", {})
            out.append(details.get("exception", {}).get("description") or details.get("text", "?"))
        return out

    def dialogs(self, after: int = 0) -> list[dict]:
        """alert/confirm/prompt dialogs the page opened since `after` (each was dismissed at once)."""
        return self.events("Page.javascriptDialogOpening", after)

    # MARK: viewport and screenshots

    def set_viewport(self, width: int, height: int | None = None, mobile: bool | None = None) -> None:
        """Emulates a window `width` CSS pixels wide (a phone, honouring <meta name=viewport>, when under 600)."""
        height = height or (844 if width < 600 else 900)
        mobile = width < 600 if mobile is None else mobile
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
        self.viewport = (width, height)

    def set_color_scheme(self, scheme: str | None) -> None:
        """Emulates prefers-color-scheme `light` or `dark` (None: the default)."""
        features = [{"name": "prefers-color-scheme", "value": scheme}] if scheme else []
        self.send("Emulation.setEmulatedMedia", {"features": features})

    def screenshot(self, path: pathlib.Path, full_page: bool = True, max_height: int = 8000) -> pathlib.Path:
        """Writes a PNG of the page (the whole document, up to `max_height` px, when `full_page`)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            content = self.send("Page.getLayoutMetrics")["cssContentSize"]
            width = max(self.viewport[0], int(content["width"] + 0.999))
            height = min(max(self.viewport[1], int(content["height"] + 0.999)), max_height)
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        data = base64.b64decode(self.send("Page.captureScreenshot", params, timeout=60)["data"])
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            raise CDPError("Page.captureScreenshot did not return a PNG")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    # MARK: keyboard

    def press(self, key: str, shift: bool = False) -> None:
        """Presses and releases `key` ("Tab", "Enter", "Escape", " ") as the keyboard would."""
        code, key_code, text = KEYS[key]
        modifiers = 8 if shift else 0
        down: dict[str, Any] = {"type": "keyDown" if text else "rawKeyDown", "key": key, "code": code,
                                "windowsVirtualKeyCode": key_code, "nativeVirtualKeyCode": key_code,
                                "modifiers": modifiers}
        if text:
            down.update(text=text, unmodifiedText=text)
        self.send("Input.dispatchKeyEvent", down)
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": key_code,
                                             "nativeVirtualKeyCode": key_code, "modifiers": modifiers})

    def type_text(self, text: str) -> None:
        """Types `text` into the focused element (as an IME commit: input events, no key codes)."""
        self.send("Input.insertText", {"text": text})

    def active_element(self) -> dict:
        """{tag, id, name, type, text} of document.activeElement."""
        return self.evaluate("""(() => {
            const e = document.activeElement;
            if (!e) return null;
            return {tag: e.tagName.toLowerCase(), id: e.id || null, name: e.getAttribute('name'),
                    type: e.getAttribute('type'), text: (e.innerText || e.value || '').trim().slice(0, 80),
                    form: e.form ? (e.form.id || null) : null};
        })()""")

    # MARK: cookies

    def cookies(self, url: str | None = None) -> list[dict]:
        params = {"urls": [url]} if url else {}
        return self.send("Network.getCookies", params)["cookies"]

    def close(self) -> None:
        try:
            self.connection.send("Target.closeTarget", {"targetId": self.target_id})
            if self.context_id:
                self.connection.send("Target.disposeBrowserContext", {"browserContextId": self.context_id})
        except CDPError:
            pass


class Browser:
    """A headless Chromium with its own temporary profile; `close()` (or leaving the `with`) ends it and deletes the
    profile, whatever happened."""

    def __init__(self, process: subprocess.Popen, profile: pathlib.Path, connection: Connection, stderr: list[str]):
        self.process = process
        self.profile = profile
        self.connection = connection
        self._stderr = stderr
        self.pages: list[Page] = []
        connection.on_event(self._dismiss_dialogs)

    @classmethod
    def launch(cls, executable: str | None = None, extra_args: list[str] | None = None,
               timeout: float = LAUNCH_SECONDS) -> "Browser":
        executable = executable or find_chromium()
        if not executable:
            raise FileNotFoundError("no chromium on PATH (set MEMPROXY_CHROMIUM or install Debian's chromium)")
        profile = pathlib.Path(tempfile.mkdtemp(prefix="memproxy-chromium-"))
        args = [
            executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
            f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-sync", "--disable-component-update",
            "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
            *(extra_args or []), "about:blank",
        ]
        stderr_lines: list[str] = []
        found: dict[str, str] = {}
        cond = threading.Condition()
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True)

        def read_stderr() -> None:
            assert process.stderr is not None
            for raw in process.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with cond:
                    stderr_lines.append(line)
                    del stderr_lines[:-200]
                    match = re.search(r"DevTools listening on (ws://\S+)", line)
                    if match and "url" not in found:
                        found["url"] = match.group(1)
                    cond.notify_all()
            with cond:
                found.setdefault("eof", "")
                cond.notify_all()

        threading.Thread(target=read_stderr, name="chromium-stderr", daemon=True).start()
        end = time.monotonic() + timeout
        try:
            with cond:
                while "url" not in found:
                    if "eof" in found or process.poll() is not None:
                        raise CDPError(f"chromium exited ({process.poll()}) before DevTools listened:\n"
                                       + "\n".join(stderr_lines[-30:]))
                    remaining = end - time.monotonic()
                    if remaining <= 0:
                        raise CDPError(f"chromium printed no DevTools URL within {timeout}s:\n"
                                       + "\n".join(stderr_lines[-30:]))
                    cond.wait(remaining)
            connection = Connection(found["url"])
        except BaseException:
            _end_process(process)
            shutil.rmtree(profile, ignore_errors=True)
            raise
        return cls(process, profile, connection, stderr_lines)

    def _dismiss_dialogs(self, event: dict) -> None:
        # A dialog blocks the page's script (and every evaluate) until answered: dismiss it; tests see it in events.
        if event.get("method") == "Page.javascriptDialogOpening":
            self.connection.post("Page.handleJavaScriptDialog", {"accept": False}, event.get("sessionId"))

    def new_page(self, isolated: bool = False) -> Page:
        """A new tab; `isolated` gives it its own cookie jar and storage (an incognito-like browser context)."""
        context_id = None
        params: dict[str, Any] = {"url": "about:blank"}
        if isolated:
            context_id = self.connection.send("Target.createBrowserContext")["browserContextId"]
            params["browserContextId"] = context_id
        target_id = self.connection.send("Target.createTarget", params)["targetId"]
        session_id = self.connection.send("Target.attachToTarget", {"targetId": target_id, "flatten": True})["sessionId"]
        page = Page(self, target_id, session_id, context_id)
        self.pages.append(page)
        return page

    def version(self) -> dict:
        return self.connection.send("Browser.getVersion")

    def stderr_tail(self, n: int = 30) -> str:
        return "\n".join(self._stderr[-n:])

    def close(self) -> None:
        try:
            try:
                self.connection.send("Browser.close", timeout=10)
            except CDPError:
                pass
            self.connection.close()
        finally:
            _end_process(self.process, asked=True)
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _end_process(process: subprocess.Popen, grace: float = 10.0, asked: bool = False) -> None:
    """Ends the browser: waits `grace` for it to exit when it was `asked` to (Browser.close), else SIGTERM, then
    SIGKILL; then SIGKILL to whatever is left of its process group (renderer and zygote helpers)."""
    if process.poll() is None:
        waits = ([None] if asked else []) + [signal.SIGTERM, signal.SIGKILL]
        for sig in waits:
            if sig is not None:
                _signal_group(process, sig)
            try:
                process.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
    _signal_group(process, signal.SIGKILL)
    # Killed helpers vanish a moment later; wait for that (bounded) so the profile is not deleted under them.
    end = time.monotonic() + 5.0
    while _group_alive(process.pid) and time.monotonic() < end:
        time.sleep(0.02)


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process of group `pgid` is left (Linux /proc; elsewhere: no)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and fields[2] == str(pgid):
            return True
    return False


def _signal_group(process: subprocess.Popen, sig: int) -> bool:
    """Sends `sig` to the browser's process group (started with start_new_session, so its id is the browser's pid);
    False when no process of the group is left."""
    try:
        os.killpg(process.pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False

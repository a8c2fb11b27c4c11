"""The dashboard (issue 15) in a real browser: headless Chromium driven over the DevTools protocol (cdp.py).

A memproxy with `admin.api_key` set and the fake upstream are seeded through the proxy (chat completions with
X-Session-Id) and the memory API; the tests then log in through the form and check every page of the contract in
docs/dashboard.md: what is listed, that memory content is shown as text, that the recall preview is exactly the block
of POST …/recall, that deleting through the confirmation form removes a memory for good, that a POST without the CSRF
token is refused, that the live page receives injections over SSE, and that every page is usable at 390 px and
1280 px (no horizontal scrolling, a label on every control, keyboard focus, WCAG AA contrast). A screenshot of every
page at both widths is written to $MEMPROXY_UI_SCREENSHOTS (default: a temporary folder).

Skipped only when no chromium (or websocket-client) is installed and MEMPROXY_REQUIRE_BROWSER is not set; CI sets it.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Iterator

import pytest

import cdp
from conftest import deadline_loop, http, start_proxy, unique

REQUIRE_BROWSER = os.environ.get("MEMPROXY_REQUIRE_BROWSER", "") not in ("", "0")
CHROMIUM = cdp.find_chromium()
try:
    import websocket  # noqa: F401  (websocket-client, used by cdp.py)

    MISSING_WEBSOCKET = None
except ImportError as error:
    MISSING_WEBSOCKET = str(error)

if not REQUIRE_BROWSER and (CHROMIUM is None or MISSING_WEBSOCKET):
    pytest.skip(
        "browser tests need chromium on PATH and websocket-client "
        f"(chromium: {CHROMIUM or 'not found'}; websocket-client: {MISSING_WEBSOCKET or 'ok'}); "
        "set MEMPROXY_REQUIRE_BROWSER=1 to make this a failure",
        allow_module_level=True,
    )

ADMIN_KEY = "ui-admin-" + secrets.token_hex(12)
XSS = "<script>window.__pwned=1</script><b>bold</b>"
STATS = ("requests_with_memory", "memories_per_request", "tokens_per_request", "recall_p50_ms", "recall_p99_ms",
         "fail_open", "writer_backlog", "store_errors")
PARTS = ("content", "near", "far", "date", "type_weight", "temporal", "score")
NARROW, WIDE = 390, 1280


# MARK: - HTTP helpers


def enc(session: str) -> str:
    """A session id as a path segment, percent-encoded as in the memory API."""
    return urllib.parse.quote(session, safe="")


def api(proxy, method: str, path: str, body: dict | None = None, key: str = ADMIN_KEY) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {key}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    status, response_headers, raw = http(method, f"{proxy.url}/memory/v1{path}", data, headers)
    if response_headers.get("content-type", "").startswith("application/json") and raw:
        return status, json.loads(raw)
    return status, raw


def add_memory(proxy, session: str, content: str, type_: str = "semantic") -> dict:
    status, memory = api(proxy, "POST", f"/sessions/{enc(session)}/memories", {"content": content, "type": type_})
    assert status == 201, f"adding a memory through the API: {status} {memory}"
    return memory


def list_memories(proxy, session: str) -> list[dict]:
    status, body = api(proxy, "GET", f"/sessions/{enc(session)}/memories?limit=500")
    assert status == 200, body
    return body["data"]


def recall(proxy, session: str, query: str, explain: bool = False) -> dict:
    status, body = api(proxy, "POST", f"/sessions/{enc(session)}/recall", {"query": query, "explain": explain})
    assert status == 200, body
    return body


def chat(proxy, session: str, text: str) -> dict[str, str]:
    """One chat completion through the proxy; returns the response headers (lower-case)."""
    body = json.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": text}]}).encode()
    status, headers, raw = http("POST", f"{proxy.base_url}/chat/completions", body,
                                {"Content-Type": "application/json", "X-Session-Id": session})
    assert status == 200, raw[:500]
    return headers


def forwarded_body(fake_upstream) -> str:
    """The body of the last chat completion the fake upstream received."""
    _, [request] = fake_upstream.requests(last=1)
    return request["body"].decode("utf-8")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def raw_http(method: str, url: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Like conftest.http, but redirects are returned, not followed."""
    opener = urllib.request.build_opener(_NoRedirects)
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


# MARK: - fixtures


@dataclass
class Seed:
    alpha: str  # seeded through the proxy and the API
    beta: str  # an id that needs percent-encoding and escaping
    dog: dict  # a memory stored from a chat exchange
    units: dict  # procedural, never changed by any test
    xss: dict
    locker: dict  # deleted by test_deleting_a_memory_through_the_confirmation_form
    locker_query: str
    alpha_request: str  # a request id that had memory injected (alpha)
    beta_request: str
    memories: dict[str, list[dict]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def ui_proxy(binary, fake_upstream, tmp_path_factory):
    instance = start_proxy(tmp_path_factory.mktemp("ui-proxy"), fake_upstream.url,
                           {"MEMPROXY_ADMIN_API_KEY": ADMIN_KEY})
    yield instance
    instance.child.stop()


@pytest.fixture(scope="module")
def seed(ui_proxy, fake_upstream) -> Seed:
    alpha = unique("ui-alpha")
    beta = unique("ui beta/<i>&amp;")

    headers = chat(ui_proxy, alpha, "My dog is called Rex and he loves chasing tennis balls")
    ui_proxy.wait_stored(headers["x-memproxy-request-id"])
    units = add_memory(ui_proxy, alpha, "Always answer in metric units", "procedural")
    xss = add_memory(ui_proxy, alpha, XSS)
    locker_query = "Which locker is by the zebra mural?"
    locker = add_memory(ui_proxy, alpha, "My locker code is 4812, the locker by the zebra mural")
    headers = chat(ui_proxy, alpha, "What does my dog Rex love chasing?")
    assert int(headers["x-memory-injected"]) >= 1, f"seeding: recall injected nothing for alpha: {headers}"
    alpha_request = headers["x-memproxy-request-id"]
    ui_proxy.wait_stored(alpha_request)

    add_memory(ui_proxy, beta, "Beta goes sailing on the lake every weekend", "episodic")
    headers = chat(ui_proxy, beta, "Where does beta go sailing?")
    assert int(headers["x-memory-injected"]) >= 1, f"seeding: recall injected nothing for beta: {headers}"
    beta_request = headers["x-memproxy-request-id"]
    ui_proxy.wait_stored(beta_request)

    memories = {alpha: list_memories(ui_proxy, alpha), beta: list_memories(ui_proxy, beta)}
    dog = next(m for m in memories[alpha] if m["content"].startswith("My dog is called Rex") and m["role"] == "user")
    for session, request_id in ((alpha, alpha_request), (beta, beta_request)):
        # The injection record is written by the store's writer: wait until the API shows it.
        for _ in deadline_loop(15, f"the injection record of {request_id}", 0.05):
            status, body = api(ui_proxy, "GET", f"/sessions/{enc(session)}/injections?request_id={request_id}")
            if status == 200 and body["data"]:
                break
    return Seed(alpha, beta, dog, units, xss, locker, locker_query, alpha_request, beta_request, memories)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> pathlib.Path:
    folder = os.environ.get("MEMPROXY_UI_SCREENSHOTS")
    path = pathlib.Path(folder) if folder else tmp_path_factory.mktemp("ui-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[cdp.Browser]:
    if CHROMIUM is None or MISSING_WEBSOCKET:
        pytest.fail(f"MEMPROXY_REQUIRE_BROWSER is set but chromium ({CHROMIUM}) or websocket-client "
                    f"({MISSING_WEBSOCKET or 'ok'}) is missing")
    instance = cdp.Browser.launch(CHROMIUM)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def fresh_page(browser) -> Iterator[cdp.Page]:
    """A page with its own empty cookie jar (logged out)."""
    page = browser.new_page(isolated=True)
    yield page
    page.close()


def log_in(page: cdp.Page, proxy, key: str) -> cdp.Response:
    """Opens /ui/login, types `key` into #key with the keyboard and submits the form with its button."""
    response = page.navigate(f"{proxy.url}/ui/login")
    assert response.status == 200, f"GET /ui/login answered {response.status}"
    page.evaluate("document.getElementById('key').focus(), document.getElementById('key').value = ''")
    page.type_text(key)
    return page.wait_navigation(lambda: page.evaluate(click_submit("#login-form")))


@pytest.fixture(scope="module")
def page(browser, ui_proxy, seed) -> Iterator[cdp.Page]:
    """A logged-in page shared by the module's tests."""
    page = browser.new_page(isolated=True)
    response = log_in(page, ui_proxy, ADMIN_KEY)
    assert response.status == 200 and path_of(response.url) == "/ui", \
        f"logging in with the right key ended at {response.status} {response.url}"
    yield page
    page.close()


@pytest.fixture(autouse=True)
def default_viewport(request):
    """Every test starts at 1280 px in the default colour scheme."""
    if "page" in request.fixturenames:
        shared = request.getfixturevalue("page")
        shared.set_viewport(WIDE)
        shared.set_color_scheme(None)
    yield


# MARK: - page helpers


def path_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def click_submit(form: str) -> str:
    """JS clicking the submit button of the form matching `form` (requestSubmit() when it has none)."""
    return f"""(() => {{
        const form = document.querySelector({json.dumps(form)});
        if (!form) throw new Error('no form ' + {json.dumps(form)} + ' on ' + location.pathname);
        const button = form.querySelector('button[type=submit], button:not([type]), input[type=submit]');
        if (button) button.click(); else form.requestSubmit();
        return true;
    }})()"""


def fill(page: cdp.Page, form: str, values: dict[str, str]) -> None:
    """Sets the named fields of a form (inputs, textareas, selects) as typing would (input and change events)."""
    missing = page.evaluate(f"""(() => {{
        const form = document.querySelector({json.dumps(form)});
        if (!form) return ['form ' + {json.dumps(form)}];
        const missing = [];
        for (const [name, value] of Object.entries({json.dumps(values)})) {{
            const field = form.elements.namedItem(name);
            if (!field) {{ missing.push(name); continue; }}
            if (field.tagName === 'SELECT' && ![...field.options].some(o => o.value === value)) {{
                missing.push(name + '=' + value); continue;
            }}
            field.value = value;
            field.dispatchEvent(new Event('input', {{bubbles: true}}));
            field.dispatchEvent(new Event('change', {{bubbles: true}}));
        }}
        return missing;
    }})()""")
    assert not missing, f"{form} on {page.evaluate('location.pathname')} lacks fields: {missing}"


def submit(page: cdp.Page, form: str, values: dict[str, str] | None = None) -> cdp.Response:
    if values:
        fill(page, form, values)
    return page.wait_navigation(lambda: page.evaluate(click_submit(form)))


def open_page(page: cdp.Page, url: str, expected_status: int = 200) -> cdp.Response:
    response = page.navigate(url)
    assert response.status == expected_status, \
        f"GET {url} → {response.status} (expected {expected_status}); page text: {page_text(page)[:300]!r}"
    return response


def page_text(page: cdp.Page, selector: str = "body") -> str:
    return page.evaluate(f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''")


def rows(page: cdp.Page, table: str, attribute: str) -> list[str]:
    """The `attribute` of each row of `table`, in document order."""
    return page.evaluate(
        f"[...document.querySelectorAll({json.dumps(f'{table} tr[{attribute}]')})].map(r => r.getAttribute('{attribute}'))"
    )


def memory_cells(page: cdp.Page) -> dict[str, dict]:
    """memory id → {content (textContent of td.content), html children tags, text} of #memories' rows."""
    return page.evaluate("""Object.fromEntries([...document.querySelectorAll('#memories tr[data-memory-id]')].map(r => {
        const cell = r.querySelector('td.content');
        return [r.getAttribute('data-memory-id'), {
            content: cell ? cell.textContent : null,
            elements: cell ? [...cell.querySelectorAll('*')].map(e => e.tagName.toLowerCase()) : [],
            text: r.textContent,
        }];
    }))""")


def csrf_of(page: cdp.Page, form: str) -> str:
    value = page.evaluate(f"(document.querySelector({json.dumps(form + ' input[type=hidden][name=csrf]')}) || {{}}).value")
    assert value, f"{form} has no hidden csrf input"
    return value


def form_post(page: cdp.Page, action: str, fields: dict[str, str]) -> dict:
    """POSTs urlencoded `fields` to `action` with fetch() from the page (its cookies, no redirect following)."""
    return page.evaluate(f"""fetch({json.dumps(action)}, {{
            method: 'POST', credentials: 'same-origin', redirect: 'manual',
            headers: {{'Content-Type': 'application/x-www-form-urlencoded'}},
            body: new URLSearchParams({json.dumps(fields)}).toString(),
        }}).then(async r => ({{status: r.status, type: r.type, text: await r.text()}}))""")


def fetch_document(page: cdp.Page, url: str) -> dict:
    """GET with fetch() from the page, following redirects; status, final URL and the #content text of the answer."""
    return page.evaluate(f"""fetch({json.dumps(url)}, {{credentials: 'same-origin'}}).then(async r => {{
        const text = await r.text();
        const doc = new DOMParser().parseFromString(text, 'text/html');
        const content = doc.getElementById('content');
        return {{status: r.status, url: r.url, text, content: content ? content.textContent : null}};
    }})""")


def numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))]


# MARK: - access


def test_every_page_redirects_to_the_login_form_without_a_session(fresh_page, ui_proxy, seed):
    for path in ("/ui", "/ui/sessions", f"/ui/sessions/{enc(seed.alpha)}", "/ui/injections",
                 f"/ui/injections/{seed.alpha_request}", "/ui/live"):
        response = fresh_page.navigate(ui_proxy.url + path)
        assert response.redirects and response.redirects[0][0] == 303, \
            f"GET {path} without a session: expected a 303 to /ui/login, got {response.status} {response.redirects}"
        assert path_of(response.url) == "/ui/login" and response.status == 200, (path, response.status, response.url)
    for path in ("/ui/live/events", f"/ui/sessions/{enc(seed.alpha)}/export"):
        status, headers, _ = raw_http("GET", ui_proxy.url + path)
        assert status == 303 and path_of(headers.get("location", "")) == "/ui/login", (path, status, headers)
    # The memory API's key as a bearer token is no session cookie for the dashboard.
    status, _, _ = raw_http("GET", ui_proxy.url + "/ui/sessions", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert status == 303


def test_the_login_form_rejects_a_wrong_key_and_accepts_the_right_one(fresh_page, ui_proxy, seed):
    page = fresh_page
    response = log_in(page, ui_proxy, "not-" + ADMIN_KEY)
    assert response.status == 401, f"a wrong key: expected 401, got {response.status}"
    assert path_of(page.evaluate("location.href")) == "/ui/login"
    error = page.evaluate("""(() => { const e = document.querySelector('p.error');
        return e ? {text: e.textContent, role: e.getAttribute('role')} : null; })()""")
    assert error is not None, "no p.error after a wrong key"
    assert "wrong key" in error["text"].lower() and error["role"] == "alert", error
    assert page.evaluate("!!document.querySelector('#login-form #key')"), "the login form is not shown again"
    assert not [c for c in page.cookies(ui_proxy.url + "/ui") if c["name"] == "mp_ui"], "a wrong key got a cookie"

    response = log_in(page, ui_proxy, ADMIN_KEY)
    assert response.redirects and response.redirects[0][0] == 303, f"the right key: expected a 303, got {response}"
    assert response.status == 200 and path_of(response.url) == "/ui", (response.status, response.url)
    [cookie] = [c for c in page.cookies(ui_proxy.url + "/ui") if c["name"] == "mp_ui"]
    assert cookie["httpOnly"] and cookie.get("sameSite") == "Strict" and cookie["path"] == "/ui", cookie
    assert page.evaluate("document.cookie.includes('mp_ui')") is False, "the session cookie is readable by scripts"

    # Logging out (the #logout form, with its csrf) ends the session.
    csrf_of(page, "#logout")
    response = submit(page, "#logout")
    assert response.status == 200, response
    assert path_of(page.navigate(ui_proxy.url + "/ui/sessions").url) == "/ui/login", "still logged in after logout"


def test_the_keyboard_reaches_the_login_form_and_logs_in(fresh_page, ui_proxy, seed):
    page = fresh_page
    open_page(page, f"{ui_proxy.url}/ui/login")
    seen = []
    reached_key = reached_button = False
    for _ in range(40):
        page.press("Tab")
        active = page.active_element()
        seen.append(active)
        if active and active["id"] == "key":
            reached_key = True
        elif reached_key and active and active["form"] == "login-form" and (
                active["tag"] == "button" or active["type"] == "submit"):
            reached_button = True
            break
    assert reached_key and reached_button, f"Tab did not reach #key then the login button; focus went: {seen}"
    # Back to the key field, type it, Enter: logged in without the mouse.
    page.press("Tab", shift=True)
    assert page.active_element()["id"] == "key"
    page.type_text(ADMIN_KEY)
    response = page.wait_navigation(lambda: page.press("Enter"))
    assert response.status == 200 and path_of(response.url) == "/ui", (response.status, response.url)


def test_without_an_admin_key_loopback_clients_need_no_login(browser, proxies, fake_upstream):
    proxy = proxies(fake_upstream.url)
    page = browser.new_page(isolated=True)
    try:
        response = page.navigate(f"{proxy.url}/ui/sessions")
        assert response.status == 200 and path_of(response.url) == "/ui/sessions" and not response.redirects, \
            (response.status, response.url, response.redirects)
        assert page.evaluate("!!document.querySelector('#sessions')")
    finally:
        page.close()


# MARK: - pages and their content


def test_overview_shows_every_figure_and_a_chart(page, ui_proxy, seed):
    open_page(page, f"{ui_proxy.url}/ui")
    assert page.evaluate("!!document.querySelector('main#content section#overview')"), "no main#content section#overview"
    figures = page.evaluate("""Object.fromEntries(%s.map(name => [name,
        [...document.querySelectorAll(`#overview [data-stat="${name}"]`)].map(e => e.textContent.trim())]))""" % json.dumps(STATS))
    missing = [name for name, texts in figures.items() if len(texts) < 2]
    assert not missing, f"figures without both 'since start' and 'last hour' ([data-stat] x2): {missing}; found {figures}"
    for text in figures["requests_with_memory"]:
        assert numbers(text) and numbers(text)[0] >= 1, f"requests_with_memory should count the seeded requests: {figures}"
    assert page.evaluate("document.querySelectorAll('#overview svg.chart').length") >= 1, "no inline svg.chart"
    nav = page.evaluate("[...document.querySelectorAll('nav#nav a')].map(a => a.getAttribute('href'))")
    for href in ("/ui", "/ui/sessions", "/ui/injections", "/ui/live"):
        assert href in nav, f"nav#nav lacks a link to {href}: {nav}"


def test_sessions_page_lists_the_seeded_sessions_and_searches_by_prefix(page, ui_proxy, seed):
    open_page(page, f"{ui_proxy.url}/ui/sessions")
    listed = rows(page, "#sessions", "data-session")
    assert seed.alpha in listed and seed.beta in listed, f"seeded sessions missing from #sessions: {listed}"
    links = page.evaluate("""Object.fromEntries([...document.querySelectorAll('#sessions tr[data-session]')].map(r =>
        [r.getAttribute('data-session'), [...r.querySelectorAll('a')].map(a => a.getAttribute('href'))]))""")
    for session in (seed.alpha, seed.beta):
        prefix = "/ui/sessions/"
        assert any(h and h.startswith(prefix) and "/" not in h[len(prefix):] and "?" not in h
                   and urllib.parse.unquote(h[len(prefix):]) == session for h in links[session]), \
            f"no link to the session page of {session!r} (its id percent-encoded): {links[session]}"
    # The id with markup characters is shown as text.
    beta_row = page.evaluate(f"""(() => {{ const r = [...document.querySelectorAll('#sessions tr[data-session]')]
        .find(r => r.getAttribute('data-session') === {json.dumps(seed.beta)});
        return {{text: r.textContent, italics: r.querySelectorAll('i').length}}; }})()""")
    assert seed.beta in beta_row["text"] and beta_row["italics"] == 0, beta_row
    # The semantic/episodic/procedural counts of alpha appear in its row.
    cells = page.evaluate(f"""[...[...document.querySelectorAll('#sessions tr[data-session]')]
        .find(r => r.getAttribute('data-session') === {json.dumps(seed.alpha)}).querySelectorAll('td, th')]
        .map(c => c.textContent.trim())""")
    shown = [n for cell in cells if cell != seed.alpha for n in numbers(cell)]
    counts = {}
    for memory in list_memories(ui_proxy, seed.alpha):
        counts[memory["type"]] = counts.get(memory["type"], 0) + 1
    for type_, count in counts.items():
        assert count in shown, f"alpha's row does not show its {count} {type_} memories: cells {cells}"

    response = submit(page, "#session-search", {"prefix": seed.beta[:14]})
    assert response.status == 200
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(response.url).query).get("prefix") == [seed.beta[:14]], response.url
    listed = rows(page, "#sessions", "data-session")
    assert seed.beta in listed and seed.alpha not in listed, f"prefix {seed.beta[:14]!r} listed {listed}"


def test_session_page_lists_its_memories_newest_first_as_text(page, ui_proxy, seed):
    after = page.mark()
    open_page(page, f"{ui_proxy.url}/ui/sessions/{enc(seed.alpha)}")
    expected = list_memories(ui_proxy, seed.alpha)
    assert rows(page, "#memories", "data-memory-id") == [m["id"] for m in expected], \
        "#memories rows are not the session's memories, newest first"
    cells = memory_cells(page)
    for memory in expected:
        assert cells[memory["id"]]["content"].strip() == memory["content"].strip(), (memory, cells[memory["id"]])
        assert memory["type"] in cells[memory["id"]]["text"], f"the row of {memory['id']} does not show its type"

    xss = cells[seed.xss["id"]]
    assert XSS in xss["content"], f"the <script> memory is not shown as text: {xss}"
    assert "b" not in xss["elements"] and "script" not in xss["elements"], f"markup rendered inside td.content: {xss}"
    assert page.evaluate("typeof window.__pwned") == "undefined", "the memory's <script> ran"
    assert not page.dialogs(after) and not page.exceptions(after), (page.dialogs(after), page.exceptions(after))

    open_page(page, f"{ui_proxy.url}/ui/sessions/{enc(seed.alpha)}?type=procedural")
    procedural = [m["id"] for m in expected if m["type"] == "procedural"]
    assert rows(page, "#memories", "data-memory-id") == procedural, "the type filter"

    # The session id that needs percent-encoding.
    open_page(page, f"{ui_proxy.url}/ui/sessions/{enc(seed.beta)}")
    assert rows(page, "#memories", "data-memory-id") == [m["id"] for m in list_memories(ui_proxy, seed.beta)]


def test_export_link_gives_the_memory_api_export(page, ui_proxy, seed):
    open_page(page, f"{ui_proxy.url}/ui/sessions/{enc(seed.alpha)}")
    href = page.evaluate("(document.querySelector('a#export') || {}).href")
    assert href and path_of(href) == f"/ui/sessions/{enc(seed.alpha)}/export", href
    fetched = fetch_document(page, href)
    status, expected = api(ui_proxy, "GET", f"/sessions/{enc(seed.alpha)}/export")
    assert status == 200 and fetched["status"] == 200
    assert fetched["text"] == expected.decode("utf-8"), "the export link's JSON lines differ from the API's export"


def test_recall_preview_shows_exactly_the_block_recall_returns(page, ui_proxy, seed):
    # Procedural memories are always recalled, so "nothing" is asked of beta, which has none.
    for session, query in ((seed.alpha, "What does my dog Rex love chasing?"), (seed.alpha, "bold script pwned window"),
                           (seed.beta, "xylophone quantum")):
        open_page(page, f"{ui_proxy.url}/ui/sessions/{enc(session)}")
        after = page.mark()
        response = submit(page, "#recall-preview", {"query": query})
        assert response.status == 200 and path_of(response.url) == f"/ui/sessions/{enc(session)}/preview", \
            (response.status, response.url)
        expected = recall(ui_proxy, session, query, explain=True)
        if query.startswith("bold script"):
            assert seed.xss["id"] in [m["id"] for m in expected["data"]], "this query should recall the <script> memory"
        shown = page.evaluate("(document.querySelector('pre#preview-block') || {}).textContent")
        assert shown is not None, "no pre#preview-block"
        assert shown == expected["context"], f"preview for {query!r}:\n{shown!r}\n!= recall context\n{expected['context']!r}"
        assert page.evaluate("document.querySelectorAll('pre#preview-block *').length") == 0
        assert page.evaluate("typeof window.__pwned") == "undefined" and not page.dialogs(after)
        assert rows(page, "#preview-memories", "data-memory-id") == [m["id"] for m in expected["data"]], \
            f"#preview-memories rows for {query!r}"
        parts = page.evaluate("""[...document.querySelectorAll('#preview-memories tr[data-memory-id]')].map(r =>
            Object.fromEntries([...r.querySelectorAll('[data-part]')].map(c => [c.getAttribute('data-part'), c.textContent])))""")
        for memory, shown_parts in zip(expected["data"], parts):
            missing = [p for p in PARTS if p not in shown_parts]
            assert not missing, f"memory {memory['id']}: no [data-part] cells for {missing}"
            value = numbers(shown_parts["score"])
            assert value and abs(value[0] - memory["score"]) <= 0.005 + 0.01 * abs(memory["score"]), \
                f"score shown {shown_parts['score']!r}, recall says {memory['score']}"
    assert expected["context"] == "" and shown == "", "the last query was meant to recall nothing"


def test_injections_pages_show_what_the_model_was_shown(page, ui_proxy, seed):
    open_page(page, f"{ui_proxy.url}/ui/injections")
    listed = rows(page, "#injections", "data-request-id")
    assert seed.alpha_request in listed and seed.beta_request in listed, listed
    assert listed.index(seed.beta_request) < listed.index(seed.alpha_request), "not newest first"
    link = page.evaluate(f"""[...document.querySelectorAll('#injections tr[data-request-id="{seed.alpha_request}"] a')]
        .map(a => a.getAttribute('href'))""")
    assert f"/ui/injections/{seed.alpha_request}" in link, link

    response = submit(page, "#injection-filter", {"session": seed.beta})
    assert response.status == 200
    listed = rows(page, "#injections", "data-request-id")
    assert seed.beta_request in listed and seed.alpha_request not in listed, f"filtered by session: {listed}"

    status, body = api(ui_proxy, "GET", f"/sessions/{enc(seed.alpha)}/injections?request_id={seed.alpha_request}")
    [record] = body["data"]
    open_page(page, f"{ui_proxy.url}/ui/injections/{seed.alpha_request}")
    fields = page.evaluate("""Object.fromEntries([...document.querySelectorAll('#injection [data-field]')]
        .map(e => [e.getAttribute('data-field'), e.textContent.trim()]))""")
    for name in ("model", "api", "tokens", "recall_ms", "session"):
        assert name in fields, f"#injection lacks [data-field={name}]: {fields}"
    assert record["model"] in fields["model"] and record["api"] in fields["api"], fields
    assert seed.alpha in fields["session"] and record["tokens"] in numbers(fields["tokens"]), (fields, record)
    assert page.evaluate("(document.querySelector('pre#injected-block') || {}).textContent") == record["block"]
    assert rows(page, "#injected-memories", "data-memory-id") == record["memory_ids"]
    hrefs = page.evaluate("[...document.querySelectorAll('#injected-memories tr[data-memory-id] a')].map(a => a.getAttribute('href'))")
    assert any(h.startswith(f"/ui/sessions/{enc(seed.alpha)}") for h in hrefs), f"no link to the session page: {hrefs}"
    assert "replayed now" in page_text(page, "#replayed-now").lower(), "#replayed-now is not labelled 'replayed now'"


# MARK: - changing things


def test_add_and_edit_a_memory_through_the_forms(page, ui_proxy, seed):
    session_path = f"/ui/sessions/{enc(seed.alpha)}"
    open_page(page, ui_proxy.url + session_path)
    content = f"Added from the dashboard <u>{unique('form')}</u>"
    response = submit(page, "#add-memory", {"content": content, "type": "procedural"})
    assert response.status == 200 and path_of(response.url) == session_path, (response.status, response.url)
    [added] = [m for m in list_memories(ui_proxy, seed.alpha) if m["content"] == content]
    assert added["type"] == "procedural"
    assert memory_cells(page)[added["id"]]["content"].strip() == content

    link = page.evaluate(f"""(document.querySelector('#memories tr[data-memory-id="{added["id"]}"] a.edit-memory') || {{}}).href""")
    assert link and path_of(link) == f"{session_path}/memories/{added['id']}/edit", link
    open_page(page, link)
    assert page.evaluate("document.querySelector('#edit-memory textarea[name=content]').value") == content
    csrf_of(page, "#edit-memory")
    edited = content.replace("Added", "Edited")
    response = submit(page, "#edit-memory", {"content": edited, "type": "semantic"})
    assert response.status == 200, response
    status, memory = api(ui_proxy, "GET", f"/sessions/{enc(seed.alpha)}/memories/{added['id']}")
    assert status == 200 and memory["content"] == edited and memory["type"] == "semantic", memory


def test_deleting_a_memory_through_the_confirmation_form(page, ui_proxy, fake_upstream, seed):
    memory_id = seed.locker["id"]
    headers = chat(ui_proxy, seed.alpha, seed.locker_query)
    assert int(headers["x-memory-injected"]) >= 1 and "4812" in forwarded_body(fake_upstream), \
        "before deletion the locker memory should be injected for this query"

    session_path = f"/ui/sessions/{enc(seed.alpha)}"
    open_page(page, ui_proxy.url + session_path)
    link = page.evaluate(f"""(document.querySelector('#memories tr[data-memory-id="{memory_id}"] a.delete-memory') || {{}}).href""")
    assert link and path_of(link) == f"{session_path}/memories/{memory_id}/delete", link
    open_page(page, link)
    action = page.evaluate("(document.querySelector('form#confirm-delete') || {}).getAttribute?.('action')")
    assert action == f"{session_path}/memories/{memory_id}/delete", action
    assert page.evaluate("(document.querySelector('form#confirm-delete').getAttribute('method') || '').toLowerCase()") == "post"
    csrf_of(page, "#confirm-delete")
    assert api(ui_proxy, "GET", f"/sessions/{enc(seed.alpha)}/memories/{memory_id}")[0] == 200, \
        "the confirmation page (a GET) deleted the memory"

    response = submit(page, "#confirm-delete")
    assert response.redirects and response.redirects[-1][0] == 303, response
    assert response.status == 200 and path_of(response.url) == session_path, (response.status, response.url)
    assert memory_id not in rows(page, "#memories", "data-memory-id")
    assert api(ui_proxy, "GET", f"/sessions/{enc(seed.alpha)}/memories/{memory_id}")[0] == 404

    headers = chat(ui_proxy, seed.alpha, seed.locker_query)
    assert "4812" not in forwarded_body(fake_upstream), "the deleted memory was injected again"
    assert memory_id not in [m["id"] for m in recall(ui_proxy, seed.alpha, seed.locker_query)["data"]]


def test_a_post_without_the_csrf_token_is_refused(page, ui_proxy, seed):
    session_path = f"/ui/sessions/{enc(seed.alpha)}"
    open_page(page, ui_proxy.url + session_path)
    token = csrf_of(page, "#add-memory")
    action = page.evaluate("document.querySelector('#add-memory').getAttribute('action')")
    before = len(list_memories(ui_proxy, seed.alpha))
    for fields in ({"content": "no csrf here", "type": "semantic"},
                   {"content": "wrong csrf here", "type": "semantic", "csrf": "x" + token}):
        answer = form_post(page, action, fields)
        assert answer["status"] == 403, f"POST {action} with {sorted(fields)}: expected 403, got {answer['status']}"
        assert "CSRF" in answer["text"], "the 403 page does not say CSRF"
    target = seed.units["id"]
    answer = form_post(page, f"{session_path}/memories/{target}/delete", {})
    assert answer["status"] == 403, f"a delete without csrf: {answer['status']}"
    assert api(ui_proxy, "GET", f"/sessions/{enc(seed.alpha)}/memories/{target}")[0] == 200
    assert len(list_memories(ui_proxy, seed.alpha)) == before, "a refused POST changed the session"

    # The same POST with the form's token goes through: the 403s above were the token's doing.
    content = f"with csrf {unique('ok')}"
    answer = form_post(page, action, {"content": content, "type": "semantic", "csrf": token})
    assert answer["status"] in (0, 200, 303), answer  # 0: an opaque redirect (fetch with redirect: 'manual')
    assert content in [m["content"] for m in list_memories(ui_proxy, seed.alpha)]

    # Without the session cookie at all: no change either.
    status, _, _ = raw_http("POST", ui_proxy.url + action,
                            urllib.parse.urlencode({"content": "no cookie", "type": "semantic", "csrf": token}).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"})
    assert status in (303, 401, 403), status
    assert "no cookie" not in [m["content"] for m in list_memories(ui_proxy, seed.alpha)]


def test_the_live_page_receives_new_injections_over_sse(page, ui_proxy, seed):
    after = page.mark()
    open_page(page, f"{ui_proxy.url}/ui/live")
    stream = page.wait_event(
        "Network.responseReceived", after,
        lambda p: p.get("type") == "EventSource" and path_of(p["response"]["url"]) == "/ui/live/events", timeout=15)
    assert stream["response"]["status"] == 200 and stream["response"]["mimeType"] == "text/event-stream", stream["response"]
    assert page.evaluate("(document.querySelector('button#pause') || {}).getAttribute?.('aria-pressed')") == "false"

    headers = chat(ui_proxy, seed.alpha, "Tell me again what my dog Rex loves chasing")
    request_id = headers["x-memproxy-request-id"]
    assert int(headers["x-memory-injected"]) >= 1
    message = page.wait_event("Network.eventSourceMessageReceived", after,
                              lambda p: p.get("eventName") == "injection" and request_id in p.get("data", ""), timeout=15)
    data = json.loads(message["data"])
    for name in ("request_id", "session_id", "api", "model", "memory_ids", "tokens", "recall_ms", "created_at"):
        assert name in data, f"the SSE injection event lacks {name}: {data}"
    assert data["session_id"] == seed.alpha and data["request_id"] == request_id
    page.wait_for(f"document.querySelector('ul#live').textContent.includes({json.dumps(request_id)})", 15,
                  f"{request_id} in ul#live")

    # Paused: aria-pressed says so and new injections are not added.
    page.evaluate("document.querySelector('button#pause').click()")
    assert page.evaluate("document.querySelector('button#pause').getAttribute('aria-pressed')") == "true"
    mark = page.mark()
    headers = chat(ui_proxy, seed.alpha, "And what is my dog Rex called?")
    paused_id = headers["x-memproxy-request-id"]
    page.wait_event("Network.eventSourceMessageReceived", mark, lambda p: paused_id in p.get("data", ""), timeout=15)
    page.evaluate("new Promise(r => setTimeout(r, 0))")  # let the page's handler for that message run
    assert paused_id not in page_text(page, "ul#live"), "an injection was added while paused"
    page.evaluate("document.querySelector('button#pause').click()")
    assert page.evaluate("document.querySelector('button#pause').getAttribute('aria-pressed')") == "false"


# MARK: - every page at 1280 and 390 px


PAGES = ("login", "overview", "sessions", "session", "session-encoded-id", "edit", "delete-confirm", "preview",
         "injections", "injection", "live")


def page_path(name: str, seed: Seed) -> str:
    alpha = f"/ui/sessions/{enc(seed.alpha)}"
    return {
        "login": "/ui/login",
        "overview": "/ui",
        "sessions": "/ui/sessions",
        "session": alpha,
        "session-encoded-id": f"/ui/sessions/{enc(seed.beta)}",
        "edit": f"{alpha}/memories/{seed.units['id']}/edit",
        "delete-confirm": f"{alpha}/memories/{seed.units['id']}/delete",
        "preview": f"{alpha}/preview?query={urllib.parse.quote('What does my dog Rex love chasing?')}",
        "injections": "/ui/injections",
        "injection": f"/ui/injections/{seed.alpha_request}",
        "live": "/ui/live",
    }[name]


UNLABELLED_JS = """[...document.querySelectorAll('input, select, textarea, button')].filter(e => {
    if (e.type === 'hidden') return false;
    const aria = (e.getAttribute('aria-label') || '').trim();
    const labelledby = (e.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean)
        .map(id => document.getElementById(id)).filter(Boolean).map(l => l.textContent.trim()).join('');
    if (aria || labelledby) return false;
    if (e.tagName === 'BUTTON' || ['submit', 'button', 'reset'].includes(e.type))
        return !((e.textContent || '').trim() || (e.value || '').trim() || (e.title || '').trim());
    if (e.id && document.querySelector(`label[for="${CSS.escape(e.id)}"]`)) return false;
    if (e.closest('label')) return false;
    return true;
}).map(e => e.outerHTML.slice(0, 120))"""

CONTRAST_JS = """(() => {
    const canvas = document.createElement('canvas'); canvas.width = canvas.height = 1;
    const ctx = canvas.getContext('2d', {willReadFrequently: true});
    const rgba = c => { ctx.clearRect(0, 0, 1, 1); ctx.fillStyle = '#000'; ctx.fillStyle = c; ctx.fillRect(0, 0, 1, 1);
        const d = ctx.getImageData(0, 0, 1, 1).data; return [d[0], d[1], d[2], d[3] / 255]; };
    const over = (top, bottom) => [0, 1, 2].map(i => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
    const background = el => {
        const chain = []; for (let e = el; e && e.nodeType === 1; e = e.parentElement) chain.push(e);
        let color = [255, 255, 255, 1];
        for (const e of chain.reverse()) {
            const c = rgba(getComputedStyle(e).backgroundColor);
            if (c[3] > 0) color = over(c, color);
        }
        return color;
    };
    const lum = c => { const v = c.slice(0, 3).map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
        return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
    const ratio = (a, b) => { const [l1, l2] = [lum(a), lum(b)].sort((x, y) => y - x); return (l1 + 0.05) / (l2 + 0.05); };
    const failures = []; let checked = 0;
    const elements = [document.body, ...document.body.querySelectorAll('*')];
    for (const e of elements) {
        if (['SCRIPT', 'STYLE', 'svg', 'SVG', 'TITLE', 'NOSCRIPT', 'OPTION'].includes(e.tagName)) continue;
        if (e.closest('svg')) continue;
        const ownText = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
        const isLink = e.tagName === 'A' && e.textContent.trim();
        if (!ownText && !isLink) continue;
        if (!e.getClientRects().length) continue;
        const style = getComputedStyle(e);
        if (style.visibility === 'hidden' || parseFloat(style.opacity) === 0) continue;
        if (e.disabled) continue;
        const bg = background(e);
        const fg = over(rgba(style.color), bg);
        const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight) >= 700;
        const needed = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
        const r = ratio(fg, bg); checked++;
        if (r < needed) failures.push(`${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\\s+/).join('.') : ''} "${e.textContent.trim().slice(0, 30)}": ${style.color} on rgb(${bg.slice(0, 3).map(Math.round)}) = ${r.toFixed(2)} < ${needed}`);
    }
    return {checked, failures: [...new Set(failures)].slice(0, 20)};
})()"""


@pytest.mark.parametrize("name", PAGES)
def test_page_is_usable_at_1280_and_390_px(name, browser, page, ui_proxy, seed, screenshots):
    # The login page is looked at logged out.
    target = browser.new_page(isolated=True) if name == "login" else page
    try:
        url = ui_proxy.url + page_path(name, seed)
        problems: list[str] = []
        for width in (WIDE, NARROW):
            target.set_viewport(width)
            after = target.mark()
            response = open_page(target, url)
            assert path_of(response.url) == path_of(url), f"{name}: ended at {response.url}"
            target.screenshot(screenshots / f"{name}-{width}.png")
            if width == NARROW:
                scroll = target.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth]")
                if max(scroll) > NARROW:
                    viewport = target.evaluate("(document.querySelector('meta[name=viewport]') || {}).content || null")
                    problems.append(f"scrolls horizontally at {NARROW} px: scrollWidth {scroll} "
                                    f"(meta viewport: {viewport!r})")
            unlabelled = target.evaluate(UNLABELLED_JS)
            if unlabelled:
                problems.append(f"controls without a label at {width} px: {unlabelled}")
            foreign = [u for u in target.requested_urls(after)
                       if not (u.startswith(ui_proxy.url + "/") or u.startswith(("data:", "blob:", "about:")))]
            if foreign:
                problems.append(f"requests outside memproxy: {foreign}")
            if target.exceptions(after):
                problems.append(f"script errors: {target.exceptions(after)}")
            if target.dialogs(after):
                problems.append(f"dialogs opened: {target.dialogs(after)}")
        if not target.evaluate("!!document.querySelector('main#content')"):
            problems.append("no main#content")
        if name != "login" and not target.evaluate("!!document.querySelector('nav#nav')"):
            problems.append("no nav#nav")
        target.set_viewport(WIDE)
        for scheme in ("light", "dark"):
            target.set_color_scheme(scheme)
            contrast = target.evaluate(CONTRAST_JS)
            if contrast["checked"] == 0:
                problems.append(f"{scheme}: no visible text to check")
            if contrast["failures"]:
                problems.append(f"contrast below WCAG AA ({scheme}): {contrast['failures']}")
        target.set_color_scheme(None)
        assert not problems, f"{name} ({page_path(name, seed)}):\n  " + "\n  ".join(problems)
    finally:
        if target is not page:
            target.close()

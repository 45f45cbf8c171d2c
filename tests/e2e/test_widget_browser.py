"""The widget in a real browser: Debian's Chromium driven by Playwright (never a
downloaded browser), the service on http://127.0.0.1:<port> under gunicorn, and a host
page on another origin (http://localhost:<port>) embedding polls with the script tag.

Chromium comes from `apt-get install -y chromium` and axe-core from npm (tests/run.sh
installs both); without them these tests skip, or fail with POLLBOX_REQUIRE_SERVICES=1.
Screenshots go to POLLBOX_SCREENSHOTS (default /tmp/pollbox-screenshots).
"""

# The fixtures imported from tests/e2e/browser.py are used as parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

import http.server
import json
import re
import threading
import time

import httpx
import pytest

from tests.conftest import SEED_POLL
from tests.e2e.browser import (
    EXPECT_TIMEOUT_MS,
    SCREENSHOTS,
    axe_source,  # noqa: F401 (a fixture)
    browser,  # noqa: F401 (a fixture)
    e2e_database_url,  # noqa: F401 (a fixture)
    run_axe,
)

pytestmark = [pytest.mark.gunicorn, pytest.mark.browser]

SSE_DEADLINE_MS = 1000
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
# Run in every frame before its scripts: no key may come from Math.random.
FORBID_MATH_RANDOM = 'Math.random = () => { throw new Error("Math.random was called"); };'
# What a context that is not secure lacks (crypto.getRandomValues stays).
WITHOUT_RANDOM_UUID = "delete Crypto.prototype.randomUUID;"
INITIAL_FRAME_HEIGHT = "360px"
POLL_FALLBACK_DEADLINE_MS = 15_000  # the widget polls every 10 s



class HostSite:
    """Pages of "somebody else's site", served on http://localhost:<port>."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(self, name: str, body: str) -> str:
        self.pages[f"/{name}"] = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<link rel="icon" href="data:,">'
            f"<title>Host page {name}</title></head><body><main>"
            f"<h1>An article on somebody else's site</h1>{body}</main></body></html>"
        )
        return f"http://localhost:{self.port}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host_site():
    site = HostSite()
    yield site
    site.close()


@pytest.fixture
def service(gunicorn_server, e2e_database_url, clean_redis, owner_key):
    # With gunicorn's access log (production runs without it) to see which paths were asked.
    server = gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis, workers=2,
                             args=("--access-logfile", "-"))

    def make_poll(**fields) -> dict:
        response = httpx.post(f"{server.base_url}/api/v1/polls",
                              json={**SEED_POLL, "duplicate_check": "none", **fields},
                              headers={"Authorization": f"Bearer {owner_key}"}, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()

    server.make_poll = make_poll
    return server


def script_tag(service, poll: dict, **data: str) -> str:
    extra = "".join(f' data-{name}="{value}"' for name, value in data.items())
    return (f'<script async src="{service.base_url}/embed.js" '
            f'data-poll="{poll["id"]}"{extra}></script>')


def collect_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def widget_frames(page, count: int):
    page.wait_for_function(
        f"document.querySelectorAll('iframe[data-pollbox]').length === {count}",
        timeout=EXPECT_TIMEOUT_MS)
    frames = []
    for index in range(count):
        handle = page.locator("iframe[data-pollbox]").nth(index).element_handle()
        frame = None
        deadline = time.monotonic() + EXPECT_TIMEOUT_MS / 1000
        while frame is None and time.monotonic() < deadline:
            frame = handle.content_frame()
            if frame is None or not frame.url.startswith("http"):
                frame = None
                time.sleep(0.05)
        frame.wait_for_selector("#pb-question", timeout=EXPECT_TIMEOUT_MS)
        frames.append(frame)
    return frames


def wait_resized(page, index: int) -> None:
    """The host's iframe takes the height its widget reports."""
    page.wait_for_function(
        "([index, initial]) => document.querySelectorAll('iframe[data-pollbox]')[index]"
        ".style.height !== initial", arg=[index, INITIAL_FRAME_HEIGHT],
        timeout=EXPECT_TIMEOUT_MS)


def frame_fits(page, frame, index: int) -> None:
    deadline = time.monotonic() + 5
    while True:
        content = frame.evaluate(
            "Math.ceil(document.documentElement.getBoundingClientRect().height)")
        outer = page.evaluate(
            "i => document.querySelectorAll('iframe[data-pollbox]')[i].getBoundingClientRect()"
            ".height", index)
        if abs(outer - content) <= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert abs(outer - content) <= 2, (outer, content)


def total_is(frame, n: int, timeout_ms: int = EXPECT_TIMEOUT_MS) -> float:
    """Wait until the widget shows "Total votes: n"; return how long it took (ms)."""
    started = time.monotonic()
    frame.wait_for_function(
        "n => (document.getElementById('pb-total') || {}).textContent === 'Total votes: ' + n"
        " && !document.getElementById('pb-results').hidden", arg=n, timeout=timeout_ms)
    return (time.monotonic() - started) * 1000



def test_embedded_polls_vote_by_mouse_and_keyboard_and_stay_in_step(
    browser, service, host_site, record_property
):
    poll = service.make_poll()
    url = host_site.page("two.html", (
        f"<p>First embed:</p>{script_tag(service, poll, theme='light')}"
        f"<p>Second embed of the same poll:</p>{script_tag(service, poll, theme='light')}"
    ))
    context = browser.new_context(viewport={"width": 720, "height": 1400})
    page = context.new_page()
    errors = collect_errors(page)
    page.goto(url)
    first, second = widget_frames(page, 2)
    for index in (0, 1):
        wait_resized(page, index)
    titles = page.eval_on_selector_all("iframe[data-pollbox]", "fs => fs.map(f => f.title)")
    assert titles == [f"Poll: {poll['question']}"] * 2
    assert all(f.startswith(service.base_url) for f in (first.url, second.url))
    assert "origin=http%3A%2F%2Flocalhost" in first.url

    # Mouse: pick an option, click Vote; the results replace the form in place.
    first.get_by_label("Yes, in the past").click()
    first.get_by_role("button", name="Vote").click()
    total_is(first, 1)
    assert first.locator("#pb-status").inner_text() == "Thank you for voting."
    assert not first.locator("#pb-form").is_visible()
    frame_fits(page, first, 0)

    # Keyboard only: into the radio group, arrow to an option, Tab to Vote, Enter.
    second.locator("input[name=choice]").first.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert second.locator("input[name=choice]").nth(2).is_checked()
    page.keyboard.press("Tab")
    focused = second.evaluate(
        "() => { const e = document.activeElement; return [e.id, e.matches(':focus-visible'),"
        " getComputedStyle(e).outlineStyle]; }")
    assert focused == ["pb-submit", True, "solid"]
    page.keyboard.press("Enter")
    total_is(second, 2)
    # The first embed follows through its stream.
    assert total_is(first, 2, timeout_ms=SSE_DEADLINE_MS) < SSE_DEADLINE_MS

    # A vote from another visitor reaches both embeds within a second.
    started = time.monotonic()
    response = httpx.post(f"{service.base_url}/api/v1/polls/{poll['id']}/votes",
                          json={"choices": [poll["options"][0]["id"]]})
    assert response.status_code == 201
    total_is(first, 3, timeout_ms=SSE_DEADLINE_MS)
    total_is(second, 3, timeout_ms=SSE_DEADLINE_MS)
    latency_ms = (time.monotonic() - started) * 1000
    record_property("browser_sse_latency_ms", latency_ms)
    print(f"\nbrowser: both embeds showed the new vote {latency_ms:.0f} ms after it was cast")
    assert first.locator(".pb-bar-value").first.inner_text() == "33.33% (1 vote)"
    frame_fits(page, second, 1)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "two-embeds-light.png"), full_page=True)
    assert errors == []  # no CSP violation, no script error
    context.close()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_widget_has_no_serious_accessibility_violations_before_and_after_voting(
    browser, service, host_site, axe_source, theme
):
    poll = service.make_poll(allow_other=True, allow_comment=True)
    url = host_site.page(f"{theme}.html", script_tag(service, poll, theme=theme))
    # axe is injected as a script: only this context lets it past the widget's policy.
    context = browser.new_context(viewport={"width": 560, "height": 1000}, bypass_csp=True,
                                  color_scheme=theme)
    page = context.new_page()
    page.goto(url)
    (frame,) = widget_frames(page, 1)
    assert frame.evaluate("document.documentElement.dataset.theme") == theme
    assert run_axe(frame, axe_source) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"widget-{theme}-form.png"), full_page=True)
    frame.get_by_role("button", name="Vote").click()  # nothing chosen: the inline error
    assert frame.locator("#pb-error").inner_text() == "Please choose an option."
    assert run_axe(frame, axe_source) == []
    frame.get_by_label("Yes, currently").check()
    frame.get_by_label("Comment (optional)").fill("<b>not bold</b>")
    frame.get_by_role("button", name="Vote").click()
    total_is(frame, 1)
    wait_resized(page, 0)
    assert run_axe(frame, axe_source) == []
    page.screenshot(path=str(SCREENSHOTS / f"widget-{theme}-results.png"), full_page=True)
    context.close()


def test_without_event_source_the_widget_polls_the_tallies(browser, service, host_site):
    poll = service.make_poll()
    url = host_site.page("polling.html", script_tag(service, poll))
    context = browser.new_context()
    context.add_init_script("delete window.EventSource;")  # runs in the iframe too
    page = context.new_page()
    errors = collect_errors(page)
    page.goto(url)
    (frame,) = widget_frames(page, 1)
    assert frame.evaluate("typeof window.EventSource") == "undefined"
    frame.get_by_label("No, never").click()
    frame.get_by_role("button", name="Vote").click()
    total_is(frame, 1)
    response = httpx.post(f"{service.base_url}/api/v1/polls/{poll['id']}/votes",
                          json={"choices": [poll["options"][0]["id"]]})
    assert response.status_code == 201
    total_is(frame, 2, timeout_ms=POLL_FALLBACK_DEADLINE_MS)
    assert not [line for line in service.access_log() if "/tallies/stream" in line]
    assert errors == []
    context.close()


@pytest.mark.parametrize("without", ["", WITHOUT_RANDOM_UUID],
                         ids=["random-uuid", "get-random-values"])
def test_the_widgets_idempotency_key_is_a_random_uuid(browser, service, host_site, without):
    poll = service.make_poll()
    url = host_site.page("keys.html", script_tag(service, poll))
    context = browser.new_context()
    context.add_init_script(FORBID_MATH_RANDOM + without)  # runs in the iframe too
    keys: list[str] = []
    context.on("request", lambda request: request.method == "POST" and keys.append(
        request.headers.get("idempotency-key")))
    page = context.new_page()
    errors = collect_errors(page)
    page.goto(url)
    (frame,) = widget_frames(page, 1)
    assert frame.evaluate("typeof crypto.randomUUID") == ("undefined" if without else "function")
    frame.get_by_label("No, never").click()
    frame.get_by_role("button", name="Vote").click()
    total_is(frame, 1)
    [key] = keys
    assert UUID4.fullmatch(key), key
    assert errors == []
    context.close()


@pytest.mark.parametrize("code", ["vote_pending", "idempotency_key_in_use"])
def test_a_vote_answered_not_yet_is_sent_again_with_the_same_key(browser, service,
                                                                  host_site, code):
    poll = service.make_poll()
    url = host_site.page(f"pending-{code}.html", script_tag(service, poll))
    context = browser.new_context()
    keys: list[str] = []
    context.on("request", lambda request: request.method == "POST" and keys.append(
        request.headers.get("idempotency-key")))
    answered = []

    def first_not_yet(route):
        if answered:  # the retry goes to the service
            route.continue_()
            return
        answered.append(code)
        route.fulfill(status=409, headers={"Retry-After": "1"},
                      content_type="application/problem+json",
                      body=json.dumps({"type": "about:blank", "title": "Conflict",
                                       "status": 409, "code": code, "detail": "Not yet."}))

    context.route("**/votes", first_not_yet)
    page = context.new_page()
    errors = collect_errors(page)
    page.goto(url)
    (frame,) = widget_frames(page, 1)
    frame.get_by_label("No, never").click()
    frame.get_by_role("button", name="Vote").click()
    total_is(frame, 1)
    assert len(keys) == 2 and keys[0] == keys[1] and UUID4.fullmatch(keys[0])
    assert frame.locator("#pb-error").inner_text() == ""
    counted = httpx.get(f"{service.base_url}/api/v1/polls/{poll['id']}/tallies").json()
    assert counted["total_votes"] == 1
    # The browser reports the 409 itself; the widget adds nothing to it.
    assert [error for error in errors if "status of 409" not in error] == []
    context.close()


def test_widget_votes_with_javascript_disabled(browser, service, host_site):
    poll = service.make_poll(kind="multiple", max_choices=2)
    assert service.base_url in poll["embed"]["iframe"]
    url = host_site.page("nojs.html", poll["embed"]["iframe"])
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(url)
    frame = page.frame_locator("iframe")
    frame.get_by_label("Yes, currently").click()
    frame.get_by_label("No, never").click()
    frame.get_by_role("button", name="Vote").click()
    frame.locator("#pb-total").wait_for(timeout=EXPECT_TIMEOUT_MS)
    assert frame.locator("#pb-total").inner_text() == "Total votes: 1"
    assert frame.locator("#pb-status").inner_text() == "Thank you for voting."
    counted = httpx.get(f"{service.base_url}/api/v1/polls/{poll['id']}/tallies").json()
    assert [o["votes"] for o in counted["options"]] == [1, 0, 1]
    context.close()


def test_widget_refuses_to_be_framed_outside_the_allowed_origins(browser, service, host_site):
    poll = service.make_poll(allowed_origins=["https://www.psyweb.example"])
    url = host_site.page("foreign.html", script_tag(service, poll))
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("iframe[data-pollbox]")
    time.sleep(1)
    frame = page.locator("iframe[data-pollbox]").element_handle().content_frame()
    # Blocked by frame-ancestors: the frame never gets the widget's document.
    assert frame is None or not re.search(r"#pb-question", frame.content())
    context.close()

"""The widget on a poll that asks for a proof of work: with JavaScript, it solves the
challenge in the background with ALTCHA's vendored worker, under the widget's own
Content-Security-Policy (Chromium); without, the form says plainly that it needs
JavaScript."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.e2e.browser import EXPECT_TIMEOUT_MS, SCREENSHOTS, browser  # noqa: F401
from tests.e2e.test_widget_browser import axe_source, run_axe  # noqa: F401
from tests.widgets.helpers import csrf_token

STATIC = Path(__file__).parents[2] / "service" / "widgets" / "static"
NEEDS_SCRIPT = "This poll needs JavaScript to vote"


def tallies(client, poll: dict) -> dict:
    return client.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()


def test_the_vendored_worker_is_altchas_file_as_noted():
    noted = (STATIC / "altcha" / "VENDORED.txt").read_text()
    checksum = re.search(r"sha256:\s+([0-9a-f]{64})", noted).group(1)
    assert hashlib.sha256((STATIC / "altcha" / "sha.js").read_bytes()).hexdigest() == checksum
    assert "MIT" in (STATIC / "altcha" / "LICENSE.txt").read_text()
    assert re.search(r"altcha \(npm\) \d+\.\d+\.\d+", noted)


def test_without_javascript_the_form_says_it_needs_it_and_a_vote_is_told_why(
    app, client, make_poll
):
    poll = make_poll(challenge="pow")
    visitor = app.test_client()
    page = visitor.get(f"/polls/{poll['id']}/widget").get_data(as_text=True)
    assert re.search(r"<noscript><p[^>]*>" + NEEDS_SCRIPT, page)
    assert "pow.js" in page

    answer = visitor.post(f"/polls/{poll['id']}/widget", data={
        "choice": str(poll["options"][0]["id"]), "csrf_token": csrf_token(page)})

    assert answer.status_code == 303
    assert "error=challenge_required" in answer.headers["Location"]
    shown = visitor.get(answer.headers["Location"]).get_data(as_text=True)
    assert re.search(r'role="alert">' + NEEDS_SCRIPT, shown)
    assert tallies(client, poll)["total_votes"] == 0


def test_a_poll_without_a_challenge_loads_no_proof_of_work(app, make_poll):
    page = app.test_client().get(f"/polls/{make_poll()['id']}/widget").get_data(as_text=True)
    assert "pow.js" not in page
    assert "<noscript>" not in page


def _vote_in_widget(browser, served, poll: dict, *, keyboard: bool, name: str) -> None:  # noqa: F811
    page = browser.new_page()  # the widget's own CSP: no bypass
    errors: list[str] = []  # script errors, CSP and Trusted Types violations
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error"
            and "Failed to load resource" not in message.text else None)  # the favicon
    try:
        page.goto(f"{served}/polls/{poll['id']}/widget")
        if keyboard:
            page.locator('input[name="choice"]').first.focus()
            page.keyboard.press("ArrowDown")  # the second option
            page.keyboard.press("Tab")
            page.keyboard.press("Enter")
        else:
            page.get_by_label(poll["options"][0]["label"]).click()
            page.get_by_role("button", name="Vote").click()
        page.wait_for_selector("#pb-total", timeout=EXPECT_TIMEOUT_MS)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"widget-pow-{name}.png"), full_page=True)
    finally:
        page.close()
    assert errors == []


@pytest.mark.browser
def test_with_javascript_the_widget_solves_and_votes_by_mouse_and_keyboard(
        browser, served, app, client, make_poll):  # noqa: F811 (the fixture)
    # Both visitors come from 127.0.0.1: told apart by their cookies.
    poll = make_poll(challenge="pow", duplicate_check="cookie")

    _vote_in_widget(browser, served, poll, keyboard=False, name="mouse")
    _vote_in_widget(browser, served, poll, keyboard=True, name="keyboard")

    counted = {o["id"]: o["votes"] for o in tallies(client, poll)["options"]}
    assert counted[poll["options"][0]["id"]] == 1
    assert counted[poll["options"][1]["id"]] == 1


@pytest.mark.browser
def test_a_widget_made_before_an_auto_poll_switched_on_solves_when_told(
        browser, served, app, client, make_poll, auth):  # noqa: F811 (the fixture)
    poll = make_poll(challenge="auto")
    page = browser.new_page()
    try:
        page.goto(f"{served}/polls/{poll['id']}/widget")
        # Switched on (as an attack would) after the page was made.
        client.patch(f"/api/v1/polls/{poll['id']}", json={"challenge": "pow"}, headers=auth)
        page.get_by_label(poll["options"][2]["label"]).click()
        page.get_by_role("button", name="Vote").click()
        page.wait_for_selector("#pb-total", timeout=EXPECT_TIMEOUT_MS)
    finally:
        page.close()
    assert tallies(client, poll)["total_votes"] == 1


@pytest.mark.browser
def test_the_pow_widget_is_accessible(browser, served, make_poll, axe_source):  # noqa: F811
    poll = make_poll(challenge="pow")
    context = browser.new_context(bypass_csp=True)  # to inject axe
    try:
        page = context.new_page()
        page.goto(f"{served}/polls/{poll['id']}/widget")
        assert run_axe(page, axe_source) == []
    finally:
        context.close()

"""With JavaScript on, a visitor votes, clicks "Change my vote", picks another option and
the tally moves; after a reload the widget still offers the change to that browser only
(Debian's Chromium through Playwright, axe-core; the app served in this process on each
stack). Screenshots go to POLLBOX_SCREENSHOTS (default /tmp/pollbox-screenshots)."""

from __future__ import annotations

import pytest

from tests.e2e.browser import (
    EXPECT_TIMEOUT_MS,
    SCREENSHOTS,
    axe_source,  # noqa: F401 (a fixture)
    browser,  # noqa: F401 (a fixture)
    run_axe,
)

pytestmark = pytest.mark.browser




def status_is(page, text: str) -> None:
    page.wait_for_function("text => document.getElementById('pb-status').textContent === text",
                           arg=text, timeout=EXPECT_TIMEOUT_MS)


def shown_votes(page, option_id: int) -> str:
    return page.locator(f'#pb-bars li[data-option="{option_id}"] .pb-bar-value').inner_text()


def api_votes(client, poll: dict) -> dict[int, int]:
    tallies = client.get(f"/api/v1/polls/{poll['id']}/tallies").get_json()
    return {option["id"]: option["votes"] for option in tallies["options"]}


def test_a_visitor_changes_their_vote_in_the_widget(browser, served, client, make_poll,  # noqa: F811
                                                    axe_source):  # noqa: F811 (the fixtures)
    poll = make_poll(allow_change=True)
    yes, past, no = (option["id"] for option in poll["options"])
    url = f"{served}/polls/{poll['id']}/widget"
    # axe is injected as a script: only this context lets it past the widget's policy.
    context = browser.new_context(viewport={"width": 560, "height": 900}, bypass_csp=True)
    page = context.new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(url)
        page.get_by_label("Yes, currently").check()
        page.get_by_role("button", name="Vote").click()
        status_is(page, "Thank you for voting.")
        assert shown_votes(page, yes) == "100% (1 vote)"
        change = page.get_by_role("button", name="Change my vote")
        assert change.is_visible()
        assert run_axe(page, axe_source) == []

        change.click()
        assert page.locator("#pb-form").is_visible()
        page.get_by_label("No, never").check()
        assert run_axe(page, axe_source) == []
        page.locator("#pb-submit").click()
        status_is(page, "Your vote has been changed.")
        assert shown_votes(page, no) == "100% (1 vote)"
        assert shown_votes(page, yes) == "0% (0 votes)"
        assert api_votes(client, poll) == {yes: 0, past: 0, no: 1}
        assert run_axe(page, axe_source) == []
        page.screenshot(path=str(SCREENSHOTS / "widget-vote-changed.png"), full_page=True)

        # Another load: the server offers the change to this browser (its cookie), and the
        # script changes the vote with the receipt it kept.
        page.goto(url)
        page.get_by_role("link", name="Change my vote").click()
        page.get_by_label("Yes, in the past").check()
        assert run_axe(page, axe_source) == []
        page.screenshot(path=str(SCREENSHOTS / "widget-change-form.png"), full_page=True)
        page.get_by_role("button", name="Change my vote").click()
        status_is(page, "Your vote has been changed.")
        assert api_votes(client, poll) == {yes: 0, past: 1, no: 0}
    finally:
        context.close()

    # A second visitor on the same address: told the address voted, offered no change.
    stranger = browser.new_context()
    try:
        other = stranger.new_page()
        other.goto(url)
        assert other.locator("#pb-status").inner_text() == "You have already voted in this poll."
        assert other.get_by_text("Change my vote").count() == 0
        other.goto(f"{url}?change=1")
        assert other.locator("#pb-form").count() == 0
    finally:
        stranger.close()
    assert api_votes(client, poll) == {yes: 0, past: 1, no: 0}

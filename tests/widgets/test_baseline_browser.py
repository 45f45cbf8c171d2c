"""With JavaScript on, the widget shows the baseline's note from the live tallies'
`baseline` field, and follows it when the owner sets or removes it (Debian's Chromium
through Playwright; the app served in this process on each stack)."""

from __future__ import annotations

import pytest

from tests.e2e.browser import EXPECT_TIMEOUT_MS, browser  # noqa: F401 (a fixture)

pytestmark = pytest.mark.browser


def note_is(page, text: str | None) -> None:
    """Wait until the note under the total says `text` (None: hidden)."""
    page.wait_for_function(
        "text => { const note = document.getElementById('pb-baseline');"
        " return text === null ? note.hidden : !note.hidden && note.textContent === text; }",
        arg=text, timeout=EXPECT_TIMEOUT_MS)


def test_the_widget_script_shows_and_follows_the_baseline(browser, served, client, auth,  # noqa: F811
                                                          make_poll):
    poll = make_poll()
    baseline_url = f"/api/v1/polls/{poll['id']}/baseline"
    page = browser.new_page()
    try:
        page.goto(f"{served}/polls/{poll['id']}/widget?view=results")
        note_is(page, None)
        page.wait_for_function("document.getElementById('pb-total').textContent"
                               " === 'Total votes: 0'", timeout=EXPECT_TIMEOUT_MS)

        first = str(poll["options"][0]["id"])
        assert client.put(baseline_url, headers=auth, json={
            "total_votes": 3978, "options": {first: 3978}, "source": "PsyWeb",
            "as_of": "2026-11-30T00:00:00Z"}).status_code == 200

        note_is(page, "includes 3,978 votes before Nov 30, 2026")
        assert page.text_content("#pb-total") == "Total votes: 3,978"

        assert client.delete(baseline_url, headers=auth).status_code == 204
        note_is(page, None)
        assert page.text_content("#pb-total") == "Total votes: 0"
    finally:
        page.close()
